"""Log line → typed Event. `LineParser` keeps the per-source state (year inference) and counts."""

from __future__ import annotations

from .event import FIREWALL, OTHER, Event, iso
from .postfix import POSTFIX_SERVICES, parse_firewall, parse_postfix
from .syslog import Clock, read_header

__all__ = ["Event", "LineParser", "iso"]


class LineParser:
    """Parses lines of one source. Lines it cannot read are counted, never raised."""

    def __init__(self, year: int | None = None, reference: float | None = None,
                 keep_other: bool = True) -> None:
        self.clock = Clock(year, reference)
        self.keep_other = keep_other
        self.other = 0  # lines of other programs skipped because keep_other is False
        self._seen = self.clock.seen  # stamp → epoch seconds, filled by the slow path
        self._names: dict[str, tuple[str, str, int | None, int, str]] = {}
        self.lines = 0
        self.unparsed = 0

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
            ts: float | None = self._seen.get(line[:15])
            if ts is None and line[15:16] in (" ", ".") and "A" <= line[:1] <= "Z":
                ts = self.clock.stamp(line[:15])
            colon = -1
            start = end = 0
            if ts is not None:
                # `Mmm dd hh:mm:ss[.ffffff] host tag: message`
                start = 16 if line[15:16] == " " else line.find(" ", 15) + 1
                end = line.find(" ", start) if start > 0 else -1
                colon = line.find(": ", end) if end > 0 else -1
            if ts is not None and colon > 0:
                host = line[start:end]
                tag = line[end + 1:colon]
                message = line[colon + 2:]
            else:
                head = read_header(line, self.clock)
                if head is None:
                    self.unparsed += 1
                    return None
                ts, host, message = head.ts, head.host, head.message
                tag = head.name if head.pid is None else f"{head.name}[{head.pid}]"
            info = self._names.get(tag)
            if info is None:
                info = self._names[tag] = _name_info(tag)
                if len(self._names) > 10_000:
                    self._names.clear()
            name, service, pid, kind, instance = info
            if kind <= 0:
                if kind < 0:
                    self.unparsed += 1
                    return None
                if not self.keep_other:  # dovecot, cron…: read, but of no use to the caller
                    self.other += 1
                    return None
            if kind == 1:
                ev, qid, fields = parse_postfix(message)
            elif kind == 2:
                parsed = parse_firewall(message)
                ev, qid, fields = parsed if parsed else (OTHER, None, {"text": message})
            else:
                ev, qid, fields = OTHER, None, {"text": message}
            return Event(ts, host, name, service, pid, qid, ev, fields, line, instance)
        except Exception:  # noqa: BLE001 — a parser bug on one hostile line must not stop the run
            self.unparsed += 1
            return None


def _name_info(tag: str) -> tuple[str, str, int | None, int, str]:
    """`postfix/submission/smtpd[123]` → (name, service, pid, 1 Postfix | 2 kernel | 0 other,
    -1 not a syslog tag at all)."""
    if " " in tag or not tag:
        return tag, tag, None, -1, tag
    b = tag.find("[")
    if b >= 0 and tag.endswith("]"):
        name, pid_text = tag[:b], tag[b + 1:-1]
        pid = int(pid_text) if pid_text.isdigit() else None
    else:
        name, pid = tag, None
    slash = name.rfind("/")
    service = name[slash + 1:] if slash >= 0 else name
    instance = name.split("/", 1)[0]
    if service in POSTFIX_SERVICES and (slash >= 0 or name.startswith("post")):
        return name, service, pid, 1, instance
    return name, service, pid, 2 if name == "kernel" else 0, instance


def is_firewall(event: Event) -> bool:
    return event.event == FIREWALL
