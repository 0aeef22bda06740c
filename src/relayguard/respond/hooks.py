"""Site hooks: programs run when an account is locked or unlocked, e.g. BlueMind's
`["bm-cli", "user", "logout", "{user}"]` from the seeds (close the sessions of a hijacked
account), or a script that resets a password or opens a ticket.

Each hook is an argv template from the configuration. Placeholders are replaced inside their own
argument — `{user}` (the login as Postfix logs it), `{local}` and `{domain}` (its parts around
`@`), `{reason}`, `{event}` (lock or unlock) — and the program runs without a shell, with a
timeout (its process group is killed when it expires). The same values are in the environment
as RELAYGUARD_USER, RELAYGUARD_REASON and RELAYGUARD_EVENT. Output is logged and kept (truncated)
in the audit trail, one entry per hook (`relayguard history`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..sanitize import one_line
from ..state.store import StateError, Store
from .common import CommandResult, RespondError, check_template, expand, log, run_argv

PLACEHOLDERS = ("user", "local", "domain", "reason", "event")


def check_hooks(hooks: Any, what: str = "[respond] hooks") -> list[list[str]]:
    """Validate a list of argv templates from the configuration."""
    if hooks is None:
        return []
    if not isinstance(hooks, list | tuple):
        raise RespondError(f"{what}: a list of argv lists is needed, e.g. "
                           '[["bm-cli", "user", "logout", "{user}"]]')
    return [check_template(h, PLACEHOLDERS, f"{what}[{i}]") for i, h in enumerate(hooks)]


def run_hooks(hooks: Sequence[Sequence[str]], user: str, event: str, *, reason: str = "",
              timeout: float = 30.0, store: Store | None = None,
              source: str = "cli") -> list[CommandResult]:
    """Run each hook for `user`, in order; a failing hook does not stop the others. Never
    raises for a hook's failure: the results say what happened."""
    local, _, domain = user.partition("@")
    values = {"user": user, "local": local, "domain": domain, "reason": one_line(reason),
              "event": event}
    env = {"RELAYGUARD_USER": user, "RELAYGUARD_REASON": one_line(reason),
           "RELAYGUARD_EVENT": event}
    results = []
    for template in hooks:
        argv = expand(template, values)
        r = run_argv(argv, timeout, env=env)
        level = 20 if r.ok else 30  # INFO / WARNING
        log.log(level, "hook %s for %s: %s%s", argv, event, r.summary(),
                ("\n" + r.output.rstrip()) if r.output.strip() else "")
        if store is not None:
            try:
                store.record("hook", selector={"user": user, "event": event, "source": source},
                             status="ok" if r.ok else "failed",
                             detail=one_line(r.summary() + (" — " + r.output if r.output.strip()
                                                            else ""), 1000),
                             command=argv)
            except StateError as exc:
                log.warning("%s", exc)
        results.append(r)
    return results
