"""The assembly every command shares: trusted networks, aggregates (with geo), detectors.

`analyze`, `show` and `watch` all build a `Pipeline`; they differ only in what they read and
what they do with the findings, so the same log gives the same findings everywhere. Not compiled:
the geo reader (maxminddb) is imported here, never by the compiled loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..aggregate import EVENT_KINDS, Aggregates
from ..correlate import Correlator, Message
from ..detect import Finding
from ..detect import run as run_detectors
from ..parse import Event
from ..postfix.mynetworks import resolve_trusted
from .run import Feed, Run, run
from .windows import Windows


class Pipeline:
    """Build with the complete configuration; `read()` logs (batch) or `feed()` lines (watch),
    then `detect()`. `GeoError` when a configured [geo] database is unusable, PostfixError when
    the Postfix instance `config_dir` names cannot be read."""

    def __init__(self, cfg: dict[str, Any], trusted: list[str] | None = None,
                 config_dir: str | None = None) -> None:
        from ..enrich.geo import GeoDB

        self.cfg = cfg
        # The one place trusted networks are decided (`config_dir`: whose mynetworks).
        self.networks = resolve_trusted(cfg, trusted, config_dir)
        self.trusted = self.networks.networks
        self.geo = GeoDB.open(cfg)  # None without databases
        self.aggregates = self.new_aggregates()
        self.windows: Windows | None = None

    def new_aggregates(self) -> Aggregates:
        agg = Aggregates(self.networks.contains)
        agg.geo = self.geo
        return agg

    def slide(self, window: float) -> Windows:
        """Aggregate over a sliding window of `window` seconds of log time instead (watch)."""
        self.windows = Windows(self.new_aggregates, window)
        return self.windows

    def event(self, ev: Event) -> None:
        (self.windows or self.aggregates).event(ev)

    def message(self, m: Message) -> None:
        (self.windows or self.aggregates).message(m)

    def read(self, paths: list[str], year: int | None = None, since: float | None = None,
             until: float | None = None, on_bytes: Callable[[int], None] | None = None,
             on_event: Callable[[Event], None] | None = None,
             on_message: Callable[[Message], None] | None = None,
             admit: Callable[[Event], bool] | None = None) -> Run:
        """Read the logs into the aggregates (or through `on_event`/`on_message`, which then
        choose what reaches them). Raises sources.InputError."""
        agg = self.aggregates
        seen = run(paths, year, on_event or agg.event, on_message or agg.message, since, until,
                   on_bytes, kinds=EVENT_KINDS, lean=True, admit=admit)
        agg.start, agg.end = seen.start, seen.end
        self.queue_depth(seen.correlator)
        return seen

    def feed(self, on_event: Callable[[Event], None],
             on_message: Callable[[Message], None]) -> Feed:
        """The per-line step for a follower: every event to `on_event` (which passes it on to
        `event()`), completed messages to `on_message`."""
        return Feed(on_event, on_message)

    def queue_depth(self, corr: Correlator) -> None:
        """The most messages the log showed queued at once, since the last call."""
        sink = self.windows or self.aggregates
        sink.queue_depth(corr.peak_open, corr.peak_open_ts)
        # The next call reports the peak after this one (watch asks at every detector run).
        corr.peak_open = len(corr.open)
        if self.windows is not None:
            corr.peak_open_ts = self.windows.end

    def current(self) -> Aggregates:
        """The aggregates the detectors read: everything read, or the current window."""
        return self.windows.current() if self.windows is not None else self.aggregates

    def detect(self) -> list[Finding]:
        """All findings worth reporting, worst first."""
        return run_detectors(self.current(), self.cfg)

    def targeted_users(self) -> list[dict[str, Any]]:
        """Usernames that failed from many addresses (a distributed attack on one account)."""
        from ..detect.auth_bruteforce import targeted_users

        return targeted_users(self.current(), self.cfg)
