"""Log line → typed Event. `LineParser` keeps the per-source state (year inference) and counts."""

from __future__ import annotations

from .event import (
    BOUNCE_NOTICE,
    CONNECT,
    DISCONNECT,
    LOST_CONNECTION,
    MESSAGE_ID,
    OTHER,
    Event,
)
from .postfix import POSTFIX_SERVICES, parse_firewall, parse_postfix
from .syslog import Clock, read_header

__all__ = ["Event", "LineParser"]

# Postfix events no detector reads: `lean` parsing drops them before building an Event.
LEAN_SKIP = frozenset((OTHER, CONNECT, DISCONNECT, LOST_CONNECTION, BOUNCE_NOTICE))


class LineParser:
    """Parses lines of one source. Lines it cannot read are counted, never raised."""

    def __init__(self, year: int | None = None, reference: float | None = None,
                 lean: bool = False, since: float | None = None, until: float | None = None) -> None:
        self.clock = Clock(year, reference)
        # lean: skip, uncounted as damage, the lines no detector uses (other programs' lines,
        # connect/disconnect): `analyze` is faster, `parse` (not lean) still shows everything.
        self.lean = lean
        self.skipped = 0
        self._seen = self.clock.seen  # stamp → epoch seconds, filled by the slow path
        self._names: dict[str, tuple[str, int, str]] = {}
        self.lines = 0
        self.unparsed = 0
        # What was understood (see inputs.InputSummary): Postfix and firewall lines, counted
        # before `lean` drops any; how many fall outside [since, until]; their time range.
        self.postfix = 0
        self.firewall = 0
        self.before = 0
        self.after = 0
        self.first = float("inf")
        self.last = float("-inf")
        self._lo = since if since is not None else float("-inf")
        self._hi = until if until is not None else float("inf")

    def parse_bytes(self, raw: bytes) -> Event | None:
        """A raw line: binary and non-UTF-8 lines are damage (or an attack on grep): counted."""
        if b"\0" in raw:
            self.lines += 1
            self.unparsed += 1
            return None
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.lines += 1
            self.unparsed += 1
            return None
        return self.parse(line)

    def parse(self, line: str) -> Event | None:
        """A line as read in text mode with errors="surrogateescape" (see sources.files).

        This is the hot loop of every command: the classic syslog header is read inline with
        a per-second stamp cache; other formats take `syslog.read_header`.
        """
        self.lines += 1
        if "\0" in line:
            self.unparsed += 1
            return None
        if not line.isascii():  # O(1) in CPython: only non-ASCII lines pay for the check
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:  # undecodable bytes, smuggled in as surrogates
                self.unparsed += 1
                return None
        if line[-1:] == "\n":
            line = line[:-1]
            if line[-1:] == "\r":
                line = line[:-1]
        try:
            stamp = line[:15]
            ts: float | None = self._seen.get(stamp)
            if ts is None and line[15:16] in (" ", ".") and "A" <= line[:1] <= "Z":
                ts = self.clock.stamp(stamp)
            colon = -1
            start = end = 0
            if ts is not None:
                # `Mmm dd hh:mm:ss[.ffffff] host tag[pid]: message`, read with finds and as few
                # slices as possible: on lines that are skipped, nothing else is copied.
                start = 16 if line[15:16] == " " else line.find(" ", 15) + 1
                end = line.find(" ", start) if start > 0 else -1
                colon = line.find(": ", end) if end > 0 else -1
            if ts is None or colon < 0:
                return self._slow(line)
            b = line.find("[", end, colon)
            name = line[end + 1:b] if b > 0 else line[end + 1:colon]
            info = self._info(name)
            kind = info[1]
            mstart = colon + 2
            if kind == 1:
                self.postfix += 1
                self._when(ts)
            if self.lean and (kind == 0 or (kind == 1 and (
                    line[mstart:mstart + 13] == "connect from "
                    or line[mstart:mstart + 16] == "disconnect from "))):
                self.skipped += 1
                return None
            pid = line[b + 1:colon - 1] if b > 0 and not self.lean else None
            return self._event(ts, line[start:end], name, pid, line[mstart:], line, info)
        except Exception:  # noqa: BLE001 — a parser bug on one hostile line must not stop the run
            self.unparsed += 1
            return None

    def _slow(self, line: str) -> Event | None:
        """RFC 3339 and journald records, and classic lines the fast path could not split."""
        head = read_header(line, self.clock)
        if head is None:
            self.unparsed += 1
            return None
        info = self._info(head.name)
        if info[1] == 1:
            self.postfix += 1
            self._when(head.ts)
        if self.lean and info[1] == 0:
            self.skipped += 1
            return None
        pid = str(head.pid) if head.pid is not None else None
        return self._event(head.ts, head.host, head.name, pid, head.message, line, info)

    def _when(self, ts: float) -> None:
        """Count one understood line against the time window and the range of the input."""
        if ts < self._lo:
            self.before += 1
        elif ts > self._hi:
            self.after += 1
        if ts < self.first:
            self.first = ts
        if ts > self.last:
            self.last = ts

    def _info(self, name: str) -> tuple[str, int, str]:
        info = self._names.get(name)
        if info is None:
            if len(self._names) > 10_000:
                self._names.clear()
            info = self._names[name] = _name_info(name)
        return info

    def _event(self, ts: float, host: str, name: str, pid: str | None, message: str, line: str,
               info: tuple[str, int, str]) -> Event | None:
        service, kind, instance = info
        if kind == 1:
            ev, qid, fields = parse_postfix(message)
            # Lean: drop what no detector reads; of Message-IDs only their absence matters.
            if self.lean and (ev in LEAN_SKIP or (ev == MESSAGE_ID and fields.get("message_id"))):
                self.skipped += 1
                return None
        elif kind == 2:
            parsed = parse_firewall(message)
            if parsed:
                self.firewall += 1
                self._when(ts)
            ev, qid, fields = parsed if parsed else (OTHER, None, {"text": message})
        elif kind == 0:
            ev, qid, fields = OTHER, None, {"text": message}
        else:
            self.unparsed += 1
            return None
        return Event(ts, host, name, service, pid, qid, ev, fields, line, instance)


def _name_info(name: str) -> tuple[str, int, str]:
    """`postfix/submission/smtpd` → (service, 1 Postfix | 2 kernel | 0 other | -1 not a syslog
    tag at all, instance)."""
    if " " in name or not name:
        return name, -1, name
    slash = name.rfind("/")
    service = name[slash + 1:] if slash >= 0 else name
    instance = name.split("/", 1)[0]
    if service in POSTFIX_SERVICES and (slash >= 0 or name.startswith("post")):
        return service, 1, instance
    return service, 2 if name == "kernel" else 0, instance
