"""The one loop every batch command shares: sources → parse → correlate.

Kept small and typed: it is compiled with mypyc together with the parser (see setup.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from .correlate import Correlator, Message
from .inputs import InputSummary
from .parse import Event, LineParser
from .sources import files

QUEUE_IDLE = 6 * 3600  # a queued message is logged at least every maximal_backoff_time (4000 s)


class Run:
    """What a pass over the sources saw, besides the events and messages it handed out."""

    def __init__(self, admit: Callable[[Event], bool] | None = None, paths: list[str] | None = None,
                 since: float | None = None, until: float | None = None) -> None:
        self.paths: list[str] = list(paths or [])
        self.since = since
        self.until = until
        self.parsers: list[LineParser] = []
        self.correlator = Correlator(max_idle=QUEUE_IDLE, admit=admit)
        self.start: float | None = None
        self.end: float | None = None

    @property
    def lines(self) -> int:
        return sum(p.lines for p in self.parsers)

    @property
    def unparsed(self) -> int:
        return sum(p.unparsed for p in self.parsers)

    def summary(self) -> InputSummary:
        """What the input was made of, from the parsers' counters (see inputs.InputSummary)."""
        ps = self.parsers
        first = min((p.first for p in ps), default=float("inf"))
        last = max((p.last for p in ps), default=float("-inf"))
        return InputSummary(
            sources=self.paths, lines=self.lines, unparsed=self.unparsed,
            postfix=sum(p.postfix for p in ps), firewall=sum(p.firewall for p in ps),
            before=sum(p.before for p in ps), after=sum(p.after for p in ps),
            first=first if first != float("inf") else None,
            last=last if last != float("-inf") else None,
            since=self.since, until=self.until)


def run(paths: list[str], year: int | None = None,
        on_event: Callable[[Event], None] | None = None,
        on_message: Callable[[Message], None] | None = None,
        since: float | None = None, until: float | None = None,
        on_bytes: Callable[[int], None] | None = None,
        kinds: frozenset[str] | None = None, lean: bool = False,
        admit: Callable[[Event], bool] | None = None) -> Run:
    """Read every source (oldest first), parse, and correlate. Events of `kinds` (all when None)
    go to `on_event`; messages go to `on_message` as they complete, those still open at the end
    last. `lean` skips lines no detector uses (see LineParser); `admit` chooses which events may
    open a message record (see Correlator). Raises files.InputError."""
    result = Run(admit, paths, since, until)
    corr = result.correlator
    windowed = since is not None or until is not None
    lo = since if since is not None else float("-inf")
    hi = until if until is not None else float("inf")
    first: float | None = None
    last: float | None = None
    for path in files.order_by_time(paths):
        parser = LineParser(year=year, reference=files.mtime(path), lean=lean, since=since, until=until)
        result.parsers.append(parser)
        parse = parser.parse
        lines: Iterable[str] = files.open_lines(path)
        if on_bytes is not None:
            lines = _counted(lines, on_bytes)
        n = 0
        for line in lines:
            ev = parse(line)
            if ev is None:
                continue
            ts = ev.ts
            if windowed and not lo <= ts <= hi:
                continue
            if first is None:
                first = ts
            last = ts
            if on_event is not None and (kinds is None or ev.event in kinds):
                on_event(ev)
            if on_message is not None and ev.queue_id is not None:
                m = corr.feed(ev)
                if m is not None:
                    on_message(m)
                n += 1
                if n & 0x3FFF == 0:
                    for m in corr.sweep(ts):
                        on_message(m)
    if on_message is not None:
        for m in corr.flush():
            on_message(m)
    result.start = first
    result.end = last
    return result


def _counted(lines: Iterable[str], on_bytes: Callable[[int], None]) -> Iterator[str]:
    for line in lines:
        on_bytes(len(line))
        yield line
