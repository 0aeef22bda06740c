"""The one loop every command shares: sources → parse → correlate.

`Feed` is the step for one line (time window, events, correlation, periodic sweep); `run()`
drives it over files for the batch commands, and `watch` drives the same step over the lines its
followers hand it, so both count every line alike.

Kept small and typed: it is compiled with mypyc together with the parser (see setup.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ..correlate import Correlator, Message
from ..inputs import InputSummary
from ..parse import Event, LineParser
from ..sources import files

QUEUE_IDLE = 6 * 3600  # a queued message is logged at least every maximal_backoff_time (4000 s)
SWEEP_EVERY = 0x3FFF  # queue-ID events between sweeps of idle messages (a power of two minus 1)


class Feed:
    """The per-line step: events inside [since, until] go to `on_event` (those of `kinds`, all
    when None) and to the correlator, whose messages go to `on_message` as they complete."""

    def __init__(self, on_event: Callable[[Event], None] | None = None,
                 on_message: Callable[[Message], None] | None = None,
                 since: float | None = None, until: float | None = None,
                 kinds: frozenset[str] | None = None,
                 admit: Callable[[Event], bool] | None = None) -> None:
        self.on_event = on_event
        self.on_message = on_message
        self.kinds = kinds
        self.correlator = Correlator(max_idle=QUEUE_IDLE, admit=admit)
        self.since: float = since if since is not None else float("-inf")
        self.until: float = until if until is not None else float("inf")
        self.start: float | None = None  # log time of the first event inside the window
        self.end: float | None = None  # … and of the last
        self.outside = 0  # events outside it (--since/--until, or watch's ignore_older)
        self._queued = 0

    def line(self, parse: Callable[[str], Event | None], line: str) -> None:
        ev = parse(line)
        if ev is not None:
            self.event(ev)

    def event(self, ev: Event) -> None:
        ts = ev.ts
        if not self.since <= ts <= self.until:
            self.outside += 1
            return
        if self.start is None:
            self.start = ts
        self.end = ts
        on_event = self.on_event
        if on_event is not None and (self.kinds is None or ev.event in self.kinds):
            on_event(ev)
        on_message = self.on_message
        if on_message is not None and ev.queue_id is not None:
            corr = self.correlator
            m = corr.feed(ev)
            if m is not None:
                on_message(m)
            self._queued += 1
            if self._queued & SWEEP_EVERY == 0:
                for m in corr.sweep(ts):
                    on_message(m)

    def flush(self) -> None:
        """End of input: the messages still open go to `on_message`, oldest first."""
        if self.on_message is not None:
            for m in self.correlator.flush():
                self.on_message(m)


class Run:
    """What a pass over the sources saw, besides the events and messages it handed out."""

    def __init__(self, feed: Feed, paths: list[str] | None = None,
                 since: float | None = None, until: float | None = None) -> None:
        self.paths: list[str] = list(paths or [])
        self.since = since
        self.until = until
        self.parsers: list[LineParser] = []
        self.feed = feed

    @property
    def correlator(self) -> Correlator:
        return self.feed.correlator

    @property
    def start(self) -> float | None:
        return self.feed.start

    @property
    def end(self) -> float | None:
        return self.feed.end

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
    feed = Feed(on_event, on_message, since, until, kinds, admit)
    result = Run(feed, paths, since, until)
    for path in files.order_by_time(paths):
        parser = LineParser(year=year, reference=files.mtime(path), lean=lean, since=since,
                            until=until)
        result.parsers.append(parser)
        parse = parser.parse
        lines: Iterable[str] = files.open_lines(path)
        if on_bytes is not None:
            lines = _counted(lines, on_bytes)
        for line in lines:
            ev = parse(line)
            if ev is not None:
                feed.event(ev)  # a native call when compiled (a bound method in a local is not)
    feed.flush()
    return result


def _counted(lines: Iterable[str], on_bytes: Callable[[int], None]) -> Iterator[str]:
    for line in lines:
        on_bytes(len(line))
        yield line
