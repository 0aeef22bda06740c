"""`postsuper` actions on lists of queue IDs: hold, release, requeue, delete.

The IDs go to postsuper on standard input (`postsuper -h -`), one per line, after validation —
never on a command line built as a string, never through a shell. postsuper reports each message
it acted on (`ID: placed on hold`) on stderr; IDs it did not report had already left the queue
(delivered, bounced, deleted by someone else) and are returned as `gone`, not as errors.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .tools import PostfixTools, QueueError, valid_queue_id


@dataclass(frozen=True)
class Action:
    name: str
    flag: str
    done_text: str  # what postsuper prints after "ID: "
    verb: str       # for people: "hold 12 messages"
    past: str       # "held"


ACTIONS: dict[str, Action] = {
    "hold": Action("hold", "-h", "placed on hold", "hold", "held"),
    "release": Action("release", "-H", "released from hold", "release", "released"),
    "requeue": Action("requeue", "-r", "requeued", "requeue", "requeued"),
    "delete": Action("delete", "-d", "removed", "delete", "deleted"),
}

_DONE = re.compile(r"^postsuper: ([0-9A-Za-z]+): (.+?)\s*$")


@dataclass
class ActResult:
    action: str
    done: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def postsuper(tools: PostfixTools, action: str, ids: Iterable[str],
              queue: str | None = None) -> ActResult:
    """Apply `action` to `ids` with one postsuper run. `queue` restricts postsuper to one queue
    directory (e.g. delete only from `hold`, where a message was frozen for its backup).
    Raises QueueError when an ID is malformed or postsuper fails as a whole."""
    act = ACTIONS[action]
    wanted = list(dict.fromkeys(ids))  # keep order, drop duplicates
    bad = [q for q in wanted if not valid_queue_id(q)]
    if bad:
        raise QueueError(f"refusing malformed queue ID {bad[0]!r}")
    result = ActResult(action)
    if not wanted:
        return result
    args = [act.flag, "-"]
    if queue is not None:
        args.append(queue)
    r = tools.run("postsuper", *args, stdin=("\n".join(wanted) + "\n").encode("ascii"))
    text = r.stderr + r.stdout
    done: set[str] = set()
    fatal = []
    for line in text.splitlines():
        m = _DONE.match(line)
        if m and m.group(2) == act.done_text:
            done.add(m.group(1))
        elif "fatal:" in line:
            fatal.append(line)
        elif "warning:" in line:
            result.warnings.append(line.removeprefix("postsuper: "))
    if r.returncode != 0 and not done:
        raise QueueError(f"postsuper {act.flag} failed: "
                         f"{(fatal or text.strip().splitlines() or ['exit ' + str(r.returncode)])[-1]}")
    result.done = [q for q in wanted if q in done]
    result.gone = [q for q in wanted if q not in done]
    if action == "requeue" and result.done:
        wake_pickup(tools)
    return result


def wake_pickup(tools: PostfixTools) -> None:
    """Requeued mail waits in `maildrop` until pickup's next poll (up to a minute): wake it now.
    Best effort — pickup will get there anyway."""
    with contextlib.suppress(QueueError):
        tools.run("postkick", "public", "pickup", "W", timeout=10)
