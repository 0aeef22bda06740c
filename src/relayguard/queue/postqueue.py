"""Reading the Postfix queue: `postqueue -j` (Postfix >= 3.1), with a fallback parser of the
classic `postqueue -p` / `mailq` listing for older versions, and `postcat -e` envelopes (the
SASL login and client address a message was received with).

Everything streams: a queue of 100,000 messages is read one message at a time.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..timefmt import iso
from .tools import PostfixTools, QueueError, stderr_text, valid_queue_id

# What showq prints instead of the null sender (`empty_address_recipient`, default
# MAILER-DAEMON). A real sender is always fully qualified in the queue, so a bare
# MAILER-DAEMON can only mean `<>`.
NULL_SENDER_NAMES = {"mailer-daemon"}


@dataclass(slots=True)
class Recipient:
    address: str
    delay_reason: str | None = None


@dataclass(slots=True)
class QueuedMessage:
    """One message as `postqueue` lists it. `sender` is in Postfix's external (quoted) form,
    "" for the null sender; `recipients` are the ones not yet delivered."""

    queue_id: str
    queue_name: str
    arrival_time: float
    size: int
    sender: str
    recipients: list[Recipient] = field(default_factory=list)
    forced_expire: bool = False
    # Filled in by selection when the origin is needed: from the queue file or the logs.
    sasl_username: str | None = None
    client_address: str | None = None
    origin_source: str | None = None  # "queue" (postcat) or "log"

    def age(self, now: float) -> float:
        return max(0.0, now - self.arrival_time)

    @property
    def sender_domain(self) -> str:
        return domain_of(self.sender)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "queue_id": self.queue_id, "queue_name": self.queue_name,
            "arrival_time": int(self.arrival_time),
            "arrival": iso(self.arrival_time),
            "message_size": self.size, "sender": self.sender,
            "forced_expire": self.forced_expire,
            "recipients": [{"address": r.address, "delay_reason": r.delay_reason}
                           for r in self.recipients],
        }
        if self.origin_source is not None:
            d["sasl_username"] = self.sasl_username
            d["client_address"] = self.client_address
            d["origin_source"] = self.origin_source
        return d


# ---------------------------------------------------------------------------- addresses

def split_address(addr: str) -> tuple[str, str]:
    """(local part, domain); the domain is what follows the last `@` (a quoted local part may
    itself contain `@`)."""
    local, at, domain = addr.rpartition("@")
    if not at:
        return addr, ""
    return local, domain


def domain_of(addr: str) -> str:
    return split_address(addr)[1].lower().rstrip(".")


def unquote_address(addr: str) -> str:
    """Postfix's internal form of an external address: `"x;y z"@d` → `x;y z@d`."""
    local, domain = split_address(addr)
    if len(local) >= 2 and local[0] == '"' and local[-1] == '"':
        inner = local[1:-1]
        out = []
        i = 0
        while i < len(inner):
            c = inner[i]
            if c == "\\" and i + 1 < len(inner):
                i += 1
                c = inner[i]
            out.append(c)
            i += 1
        local = "".join(out)
    return f"{local}@{domain}" if domain or "@" in addr else local


_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")


def quote_address(addr: str) -> str:
    """External form of an internal address (quote the local part when RFC 5322 needs it), as
    Postfix's quote_822_local does; used when only postcat's internal form is known."""
    local, domain = split_address(addr)
    if not domain and "@" not in addr:
        return addr
    needs = (not local or not _ATEXT.fullmatch(local) or local.startswith(".")
             or local.endswith(".") or ".." in local)
    if needs:
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{local}@{domain}"


def normalize_sender(sender: str) -> str:
    """Null sender spellings (`<>`, "", MAILER-DAEMON) → ""; `<a@b>` → `a@b`."""
    s = sender.strip()
    if s.startswith("<") and s.endswith(">"):
        s = s[1:-1]
    if s.lower() in NULL_SENDER_NAMES:
        return ""
    return s


# ------------------------------------------------------------------------ postqueue -j

def _num(value: Any, default: float = 0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def parse_json_record(obj: Any) -> QueuedMessage:
    """One `postqueue -j` object. Unknown members are ignored (the format grows); both
    `forced_expire` and `force_expired` are accepted (Postfix's documentation and code
    have disagreed). Raises ValueError when the record is unusable."""
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    qid = obj.get("queue_id")
    if not isinstance(qid, str) or not qid:
        raise ValueError("no queue_id")
    qid = qid.rstrip("*!#")
    queue = obj.get("queue_name")
    sender = obj.get("sender", "")
    rcpts_raw = obj.get("recipients") or []
    if not isinstance(rcpts_raw, list):
        raise ValueError("recipients is not a list")
    rcpts = []
    for r in rcpts_raw:
        if isinstance(r, dict) and isinstance(r.get("address"), str):
            reason = r.get("delay_reason")
            rcpts.append(Recipient(r["address"], reason if isinstance(reason, str) else None))
        elif isinstance(r, str):
            rcpts.append(Recipient(r))
    forced = obj.get("forced_expire", obj.get("force_expired", False))
    return QueuedMessage(
        queue_id=qid,
        queue_name=queue if isinstance(queue, str) and queue else "unknown",
        arrival_time=_num(obj.get("arrival_time")),
        size=int(_num(obj.get("message_size"))),
        sender=normalize_sender(sender if isinstance(sender, str) else ""),
        recipients=rcpts,
        forced_expire=bool(forced),
    )


def parse_json_lines(lines: Iterable[str | bytes], errors: list[str] | None = None
                     ) -> Iterator[QueuedMessage]:
    """`postqueue -j` output: one JSON object per line. Lines that do not parse are skipped and
    described in `errors` (when given) — one damaged record must not hide the rest."""
    for n, line in enumerate(lines, 1):
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        line = line.strip()
        if not line:
            continue
        try:
            yield parse_json_record(json.loads(line))
        except (ValueError, TypeError) as exc:
            if errors is not None:
                errors.append(f"postqueue -j line {n}: {exc}")


# ------------------------------------------------------------------------ postqueue -p

_MAILQ_HEAD = re.compile(
    r"^(?P<id>[0-9A-Za-z]+)(?P<mark>[*!#]?)\s+(?P<size>\d+)\s+"
    r"(?P<date>[A-Z][a-z]{2}\s+[A-Z][a-z]{2}\s+\d{1,2}\s+\d{1,2}:\d{2}:\d{2})\s+(?P<sender>.*)$")
_MARKS = {"*": "active", "!": "hold"}


def _mailq_time(text: str, now: float) -> float:
    """`Wed Nov 25 02:25:59` (local time, no year): the latest such moment not in the future
    (a day of slack for clock skew)."""
    text = " ".join(text.split())
    year = time.localtime(now).tm_year
    for y in (year, year - 1):
        try:
            st = time.strptime(f"{text} {y}", "%a %b %d %H:%M:%S %Y")
        except ValueError:
            # The weekday does not fit this year: try without it.
            try:
                st = time.strptime(f"{text.split(' ', 1)[1]} {y}", "%b %d %H:%M:%S %Y")
            except (ValueError, IndexError):
                return now
        ts = time.mktime(st)
        if ts <= now + 86400:
            return ts
    return ts


def parse_mailq(text: str, now: float | None = None) -> Iterator[QueuedMessage]:
    """The classic listing (`postqueue -p`, `mailq`). Blocks are separated by blank lines; the
    first line has ID (+ `*` active, `!` hold, `#` forced to expire), size, arrival, sender;
    then `(delay reason)` lines — possibly wrapped — and one recipient per line. A block
    without a marker is `deferred` when it has a delay reason, else `incoming`."""
    now = time.time() if now is None else now
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.strip():
            block.append(line.rstrip("\n"))
            continue
        if block:
            msg = _mailq_block(block, now)
            block = []
            if msg is not None:
                yield msg


def _mailq_block(block: list[str], now: float) -> QueuedMessage | None:
    # Lines before the message's own first line: the "-Queue ID-" title (no blank line after
    # it); blocks with no such line: "-- N Kbytes in M Requests.", "Mail queue is empty".
    for i, line in enumerate(block):
        m = _MAILQ_HEAD.match(line)
        if m is not None:
            block = block[i:]
            break
    else:
        return None
    mark = m.group("mark")
    recipients: list[Recipient] = []
    reason: list[str] = []
    depth = 0  # unbalanced "(" of a delay reason spanning several lines
    current: str | None = None
    for line in block[1:]:
        s = line.strip()
        if depth > 0 or s.startswith("("):
            reason.append(s)
            depth += s.count("(") - s.count(")")
            if depth <= 0:
                current = " ".join(reason)[1:-1] if reason[0].startswith("(") else " ".join(reason)
                reason, depth = [], 0
            continue
        recipients.append(Recipient(s, current))
    queue = _MARKS.get(mark) or ("deferred" if current is not None else "incoming")
    return QueuedMessage(
        queue_id=m.group("id"), queue_name=queue,
        arrival_time=_mailq_time(m.group("date"), now), size=int(m.group("size")),
        sender=normalize_sender(m.group("sender")), recipients=recipients,
        forced_expire=mark == "#",
    )


# --------------------------------------------------------------------------- reader

_NO_JSON = ("invalid option", "illegal option", "usage:")


def read_queue(tools: PostfixTools, errors: list[str] | None = None,
               fmt: str = "auto") -> Iterator[QueuedMessage]:
    """Stream the queue of `tools`' instance, each message once. showq walks the queue
    directories while qmgr moves files between them, so a busy queue can list a message twice
    (seen in active, then in deferred): later sightings of an ID are dropped."""
    seen: set[str] = set()
    for m in _read_queue(tools, errors, fmt):
        if m.queue_id not in seen:
            seen.add(m.queue_id)
            yield m


def _read_queue(tools: PostfixTools, errors: list[str] | None = None,
                fmt: str = "auto") -> Iterator[QueuedMessage]:
    """`postqueue -j`, or `-p` when `fmt` says so or `-j` is not supported (Postfix < 3.1).
    Raises QueueError when postqueue fails."""
    if fmt in ("auto", "json"):
        proc = tools.popen("postqueue", "-j")
        assert proc.stdout is not None and proc.stderr is not None
        seen = 0
        try:
            for msg in parse_json_lines(proc.stdout, errors):
                seen += 1
                yield msg
        finally:
            proc.stdout.close()
            err = proc.stderr.read().decode("utf-8", "replace")
            proc.stderr.close()
            rc = proc.wait()
        if rc == 0:
            return
        if fmt == "auto" and seen == 0 and any(s in err.lower() for s in _NO_JSON):
            fmt = "mailq"
        else:
            raise QueueError(f"postqueue -j failed: {_last_line(err, rc)}")
    r = tools.run("postqueue", "-p")
    if r.returncode != 0:
        raise QueueError(f"postqueue -p failed: {stderr_text(r)}")
    yield from parse_mailq(r.stdout)


def _last_line(err: str, rc: int) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    fatal = [ln for ln in lines if "fatal:" in ln]
    return (fatal or lines or [f"exit status {rc}"])[-1]


# ---------------------------------------------------------------------------- postcat -e

@dataclass(slots=True)
class Envelope:
    """The envelope records of one queue file, as `postcat -e` shows them (internal forms)."""

    queue_id: str
    queue_name: str
    sender: str | None = None  # "" for the null sender
    arrival_time: float | None = None
    recipients: list[str] = field(default_factory=list)        # still to be delivered
    done_recipients: list[str] = field(default_factory=list)   # already delivered
    original_recipients: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)   # named_attribute: k=v

    @property
    def sasl_username(self) -> str | None:
        return self.attributes.get("sasl_username") or None

    @property
    def client_address(self) -> str | None:
        return self.attributes.get("client_address") or self.attributes.get(
            "log_client_address") or None


_ENV_HEAD = re.compile(r"^\*\*\* ENVELOPE RECORDS (?P<path>\S+) \*\*\*$")


def _postcat_time(text: str) -> float | None:
    try:
        return time.mktime(time.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y"))
    except ValueError:
        return None


def parse_postcat_envelopes(text: str) -> dict[str, Envelope]:
    """Envelopes from `postcat -e -q ID...` output, by queue ID. Record lines all start with a
    record name, so a `***` line can only be postcat's own section marker; message content is
    not requested (-e), so it cannot forge one."""
    found: dict[str, Envelope] = {}
    env: Envelope | None = None
    for line in text.splitlines():
        if line.startswith("*** "):
            m = _ENV_HEAD.match(line)
            if m:
                parts = m.group("path").split("/")
                env = Envelope(queue_id=parts[-1], queue_name=parts[0] if len(parts) > 1 else "")
                found[env.queue_id] = env
            elif line.startswith("*** MESSAGE FILE END"):
                env = None
            # Records after HEADER EXTRACTED (recipients taken from headers by `sendmail -t`)
            # belong to the same message.
            continue
        if env is None:
            continue
        name, sep, value = line.partition(": ")
        if not sep:
            if line.endswith(":"):  # "sender:" with an empty value: the null sender
                name, value = line[:-1], ""
            else:
                continue
        if name == "sender":
            env.sender = value
        elif name == "recipient":
            env.recipients.append(value)
        elif name == "done_recipient":
            env.done_recipients.append(value)
        elif name == "original_recipient":
            env.original_recipients.append(value)
        elif name == "message_arrival_time":
            env.arrival_time = _postcat_time(value)
        elif name == "named_attribute":
            k, _, v = value.partition("=")
            env.attributes[k] = v
    return found


_MISSING = re.compile(r"open queue file (\S+?): No such file or directory")


def read_envelopes(tools: PostfixTools, ids: Iterable[str], batch: int = 200
                   ) -> tuple[dict[str, Envelope], set[str]]:
    """Envelopes of many queue files with one postcat per `batch` IDs; IDs whose file is gone
    (delivered or deleted meanwhile) come back in the second set. postcat stops at the first
    missing file, so the rest of that batch is read again."""
    pending = [q for q in ids if valid_queue_id(q)]
    found: dict[str, Envelope] = {}
    missing: set[str] = set()
    while pending:
        chunk, pending = pending[:batch], pending[batch:]
        while chunk:
            r = tools.run("postcat", "-e", "-q", *chunk)
            got = parse_postcat_envelopes(r.stdout)
            found.update(got)
            if r.returncode == 0:
                break
            err = r.stderr
            if "Permission denied" in err or "superuser" in err:
                # Queue files are readable by root (and postfix) only: say so, instead of
                # reporting every message as gone.
                raise QueueError(f"postcat cannot read the queue files: {_last_line(err, 1)} "
                                 "(run as root)")
            m = _MISSING.search(err)
            if m and m.group(1) in chunk:
                bad = m.group(1)
                missing.add(bad)
                chunk = [q for q in chunk[chunk.index(bad) + 1:] if q not in found]
                continue
            # A failure that names no file: read what is left one by one.
            for q in chunk:
                if q in found:
                    continue
                single = tools.run("postcat", "-e", "-q", q)
                got = parse_postcat_envelopes(single.stdout)
                if single.returncode == 0 and q in got:
                    found[q] = got[q]
                else:
                    missing.add(q)
            break
    return found, missing
