"""Log line → typed Event. `LineParser` keeps the per-source state (year inference) and counts."""

from __future__ import annotations

from .event import FIREWALL, OTHER, Event, iso
from .postfix import POSTFIX_SERVICES, parse_firewall, parse_postfix
from .syslog import Clock, read_header

__all__ = ["Event", "LineParser", "iso"]


class LineParser:
    """Parses lines of one source. Lines it cannot read are counted, never raised."""

    def __init__(self, year: int | None = None, reference: float | None = None) -> None:
        self.clock = Clock(year, reference)
        self.lines = 0
        self.unparsed = 0

    def parse_bytes(self, raw: bytes) -> Event | None:
        self.lines += 1
        # Binary and non-UTF-8 lines are damage (or an attack on grep): count and skip.
        if b"\0" in raw:
            self.unparsed += 1
            return None
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.unparsed += 1
            return None
        return self._parse(line.rstrip("\r\n"))

    def parse(self, line: str) -> Event | None:
        self.lines += 1
        if "\0" in line:
            self.unparsed += 1
            return None
        return self._parse(line.rstrip("\r\n"))

    def _parse(self, line: str) -> Event | None:
        try:
            head = read_header(line, self.clock)
            if head is None:
                self.unparsed += 1
                return None
            name = head.name
            slash = name.rfind("/")
            service = name[slash + 1:] if slash >= 0 else name
            if service in POSTFIX_SERVICES and (slash >= 0 or name.startswith("post")):
                ev, qid, fields = parse_postfix(head.message)
            elif name == "kernel":
                parsed = parse_firewall(head.message)
                ev, qid, fields = parsed if parsed else (OTHER, None, {"text": head.message})
            else:
                ev, qid, fields = OTHER, None, {"text": head.message}
            return Event(head.ts, head.host, name, service, head.pid, qid, ev, fields, line)
        except Exception:  # noqa: BLE001 — a parser bug on one hostile line must not stop the run
            self.unparsed += 1
            return None


def is_firewall(event: Event) -> bool:
    return event.event == FIREWALL
