"""The sliding window `watch` runs the detectors of `analyze` on.

`Aggregates` only ever adds (no subtraction), so the window is a set of staggered aggregates:
a new one starts at every step boundary (of log time) and every event goes to all of them; the
oldest, which started between `window` and `window` + one step ago, is the one the detectors
read. Dropping it when its successor is old enough slides the window by one step. The step is
10 minutes (the detectors' burst bucket), or a sixth of the window for windows over an hour:
each event goes to 7 aggregates at most. Same code as `analyze`, at that cost.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from ..aggregate import BUCKET, EVENT_KINDS, Aggregates
from ..correlate import Message
from ..parse import Event

MAX_STEPS = 6


class Windows:
    def __init__(self, new: Callable[[], Aggregates], window: float, bucket: int = BUCKET) -> None:
        self.new = new  # Pipeline.new_aggregates: trusted networks and geo as in `analyze`
        # A whole number of detector buckets, so that burst buckets are never cut in two.
        self.bucket = bucket * max(1, math.ceil(window / bucket / MAX_STEPS))
        self.count = max(1, math.ceil(window / self.bucket))
        # (step index, aggregates, log time of its first event: where its period starts)
        self._aggs: deque[tuple[int, Aggregates, float]] = deque()
        self.end: float | None = None  # newest log time seen

    def _advance(self, ts: float) -> None:
        if self.end is None or ts > self.end:
            self.end = ts
        b = int(ts // self.bucket)
        if not self._aggs or b > self._aggs[-1][0]:
            self._aggs.append((b, self.new(), ts))
            while self._aggs and self._aggs[0][0] < b - self.count:
                self._aggs.popleft()

    def event(self, ev: Event) -> None:
        # Every event moves the window (its period starts at the first line, as in `analyze`);
        # only those the aggregates count are handed to them.
        self._advance(ev.ts)
        if ev.event in EVENT_KINDS:
            for _, agg, _ in self._aggs:
                agg.event(ev)

    def message(self, m: Message) -> None:
        self._advance(m.first_seen)
        oldest = self._aggs[0][1]
        for _, agg, first in self._aggs:
            # A message that began before an aggregate's start belongs to the older ones only
            # (it may complete much later: deferred mail).
            if m.first_seen >= first or agg is oldest:
                agg.message(m)

    def queue_depth(self, depth: int, ts: float | None) -> None:
        """Messages queued at once at `ts`: counted by the aggregates whose period holds it."""
        for _, agg, first in self._aggs:
            if ts is None or ts >= first:
                agg.queue_depth(depth, ts)

    def current(self) -> Aggregates:
        """The aggregates of the last `window` (to 10 minutes more) of log time."""
        if not self._aggs:
            return self.new()
        _, agg, first = self._aggs[0]
        agg.start = first
        agg.end = self.end
        return agg
