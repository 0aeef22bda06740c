"""Rate counters of the policy server: sliding windows of sub-buckets, in memory or in Redis.

Window semantics (the same in every store, and documented in docs/policy.md):

- A window of W seconds is cut into sub-buckets of b = max(1, W // 20) seconds, aligned on the
  Unix epoch (bucket index ⌊t / b⌋), and a counter remembers the last n = ⌈W / b⌉ of them.
- The usage at time t is the sum of the n sub-buckets ending with the one that holds t. An event
  at time s, in sub-bucket j = ⌊s/b⌋, is counted until time (j+n)·b: it is forgotten between
  (n−1)·b and n·b seconds after it happened — 57–60 s for W = 1m, 57–60 min for 1h,
  22.8–24 h for 1d, W−1 to W s for windows under 20 s (1-second sub-buckets).
- A check asks "does `need` more still fit under `limit`?" (usage + need ≤ limit) and, when
  every blocking check of a request fits, adds `add` to its counter. All-or-nothing: a message
  refused by its per-minute limit is not counted against its per-day limit, and nothing refused
  is counted at all (a client hammering a closed door does not extend its own penalty).
- Every check that does not fit adds 1 to a companion "over" counter (same window), which
  `policy report` shows as requests over the limit.

Stores: `MemoryCounters` (one process; nothing on disk), `SqliteCounters` (memory plus a
periodic flush to the `counters` table of the state database, in a background thread, so a
request never waits for the disk and counts survive a restart), and `RedisCounters` (a fleet:
one Lua script per request, atomic across servers, time taken from the Redis server so the
machines' clocks need not agree).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("relayguard.policy")

BUCKETS_PER_WINDOW = 20
OVER_PREFIX = "over-"

__all__ = ["BUCKETS_PER_WINDOW", "Check", "CounterStore", "MemoryCounters", "Outcome",
           "SqliteCounters", "bucket_count", "bucket_width", "counter_name", "over_name",
           "parse_counter_name", "read_sqlite_usage", "usage_from_buckets"]


def bucket_width(window: int) -> int:
    """Seconds per sub-bucket of a `window`-second counter."""
    return max(1, window // BUCKETS_PER_WINDOW)


def bucket_count(window: int) -> int:
    """How many sub-buckets a `window`-second counter sums."""
    return math.ceil(window / bucket_width(window))


def counter_name(kind: str, value: str, metric: str, window: int) -> str:
    """`sasl_username:alice|messages|60`: what the counter measures, for whom, over what window.

    Values may hold `|` or `:` (an e-mail local part can), so `parse_counter_name` splits the
    kind at the first `:` and the metric and window at the last two `|`.
    """
    return f"{kind}:{value}|{metric}|{window}"


def over_name(counter: str) -> str:
    """The companion counter of requests that did not fit under the limit."""
    head, metric, window = counter.rsplit("|", 2)
    return f"{head}|{OVER_PREFIX}{metric}|{window}"


def parse_counter_name(name: str) -> tuple[str, str, str, int] | None:
    """(kind, value, metric, window) or None when `name` is not a counter name."""
    try:
        head, metric, window = name.rsplit("|", 2)
        kind, sep, value = head.partition(":")
        if not sep:
            return None
        return kind, value, metric, int(window)
    except ValueError:
        return None


@dataclass(slots=True)
class Check:
    """One limit applied to one request."""

    counter: str   # counter_name(...)
    window: int    # seconds
    limit: int     # most allowed within the window
    need: int      # how much must still fit (0: only look)
    add: int       # how much to count when the request is allowed
    blocking: bool  # True: not fitting refuses the request (and stops all counting)
    width: int = 0  # sub-bucket seconds: bucket_width(window), precomputed by the caller…
    buckets: int = 0  # …and bucket_count(window); 0: computed here

    def __post_init__(self) -> None:
        if not self.width:
            self.width = bucket_width(self.window)
            self.buckets = bucket_count(self.window)


@dataclass(slots=True)
class Outcome:
    allowed: bool         # no blocking check overflowed (so the adds were applied)
    usages: list[int]     # each check's usage before this request


class CounterStore(Protocol):
    #: True: use `apply_async` (network round trip); False: `apply` answers at once.
    is_async: bool

    def apply(self, checks: Sequence[Check], now: float) -> Outcome: ...
    async def apply_async(self, checks: Sequence[Check]) -> Outcome: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class _Window:
    """The live sub-buckets of one counter: a deque of [index, count] and their total."""

    __slots__ = ("buckets", "total", "window")

    def __init__(self, window: int) -> None:
        self.buckets: deque[list[int]] = deque()
        self.total = 0
        self.window = window

    def current(self, now: float) -> int:
        """Usage at `now` (drops the sub-buckets that left the window)."""
        width = bucket_width(self.window)
        return self.usage(int(now // width) - bucket_count(self.window) + 1)

    def usage(self, oldest: int) -> int:
        buckets = self.buckets
        while buckets and buckets[0][0] < oldest:
            self.total -= buckets.popleft()[1]
        return self.total

    def add(self, index: int, n: int) -> int:
        buckets = self.buckets
        if buckets and buckets[-1][0] == index:
            buckets[-1][1] += n
        elif buckets and buckets[-1][0] > index:  # clock stepped back: keep it in the newest
            buckets[-1][1] += n
            index = buckets[-1][0]
        else:
            buckets.append([index, n])
        self.total += n
        return buckets[-1][1]


class MemoryCounters:
    """Counters of one process, in memory. Not thread-safe: the event loop owns it."""

    is_async = False

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        # (counter, bucket index) -> count, changed since the last flush; SqliteCounters
        # writes them, the plain memory store just drops them.
        self._dirty: dict[tuple[str, int], int] = {}
        self._sweep: list[str] = []

    def apply(self, checks: Sequence[Check], now: float) -> Outcome:
        windows = self._windows
        usages = []
        allowed = True
        for c in checks:
            w = windows.get(c.counter)
            if w is None:
                w = windows[c.counter] = _Window(c.window)
            usage = w.usage(int(now // c.width) - c.buckets + 1)
            usages.append(usage)
            if c.need and usage + c.need > c.limit:
                if c.blocking:
                    allowed = False
                self._add(over_name(c.counter), c.window, now, 1)
        if allowed:
            dirty = self._dirty
            for c in checks:
                if c.add:
                    w = windows[c.counter]
                    index = int(now // c.width)
                    count = w.add(index, c.add)
                    dirty[(c.counter, w.buckets[-1][0])] = count
        return Outcome(allowed, usages)

    async def apply_async(self, checks: Sequence[Check]) -> Outcome:
        return self.apply(checks, time.time())

    def _add(self, counter: str, window: int, now: float, n: int) -> None:
        w = self._windows.get(counter)
        if w is None:
            w = self._windows[counter] = _Window(window)
        index = int(now // bucket_width(window))
        w.usage(index - bucket_count(window) + 1)
        count = w.add(index, n)
        self._dirty[(counter, w.buckets[-1][0])] = count

    def usage(self, counter: str, now: float | None = None) -> int:
        """Current usage of one counter (0 when unknown)."""
        w = self._windows.get(counter)
        if w is None:
            return 0
        return w.current(time.time() if now is None else now)

    def snapshot(self, now: float | None = None) -> dict[str, int]:
        """Every counter with a non-zero usage."""
        now = time.time() if now is None else now
        out = {}
        for name, w in list(self._windows.items()):
            u = w.current(now)
            if u:
                out[name] = u
        return out

    def sweep(self, now: float, budget: float = 0.0005) -> int:
        """Forget counters whose window is empty, for at most `budget` seconds; how many.

        Called every housekeeping tick; works through the keys in slices so that no call holds
        the event loop for long (p99 latency), whatever the number of senders seen.
        """
        if not self._sweep:
            self._sweep = list(self._windows)
        dropped = 0
        deadline = time.perf_counter() + budget
        windows = self._windows
        sweep = self._sweep
        while sweep:
            for _ in range(200):
                if not sweep:
                    break
                name = sweep.pop()
                w = windows.get(name)
                if w is not None and w.current(now) == 0:
                    del windows[name]
                    dropped += 1
            if time.perf_counter() > deadline:
                break
        return dropped

    def take_dirty(self) -> dict[tuple[str, int], int]:
        dirty, self._dirty = self._dirty, {}
        return dirty

    def load(self, rows: Iterable[tuple[str, int, int]], now: float) -> int:
        """Restore (counter, bucket start in seconds, count) rows; stale ones are skipped."""
        n = 0
        for counter, start, count in sorted(rows, key=lambda r: r[1]):
            parsed = parse_counter_name(counter)
            if parsed is None or count <= 0:
                continue
            window = parsed[3]
            width = bucket_width(window)
            index = int(start) // width
            if index < int(now // width) - bucket_count(window) + 1:
                continue
            w = self._windows.get(counter)
            if w is None:
                w = self._windows[counter] = _Window(window)
            w.add(index, int(count))
            n += 1
        return n

    def flush(self) -> None:
        self._dirty.clear()

    def close(self) -> None:
        self._dirty.clear()


class SqliteCounters(MemoryCounters):
    """Memory counters persisted to the state database's `counters` table.

    The request path only touches memory. `flush()` (called every `flush_interval` by the
    server, and at exit) hands the changed buckets to one background thread, which owns its own
    SQLite connection (sqlite3 connections belong to the thread that made them) and writes them
    in one transaction, then deletes buckets older than the longest window. `close()` flushes
    and waits. A failed write is logged and retried at the next flush.
    """

    def __init__(self, path: str | Path, max_window: int = 86400) -> None:
        super().__init__()
        from .store import Store  # opening also creates and migrates the database

        self.path = Path(path)
        self.max_window = max_window
        self._lock = threading.Lock()  # one write at a time
        self._thread: threading.Thread | None = None
        self._db: Any = None
        self._retry: dict[tuple[str, int], int] = {}  # buckets a failed write still owes
        store = Store(self.path)
        try:
            rows = store.db.execute("SELECT key, bucket, count FROM counters").fetchall()
        finally:
            store.close()
        self.load(((r[0], r[1], r[2]) for r in rows), time.time())

    def flush(self) -> None:
        """Start writing what changed, in the background; returns at once."""
        dirty = self.take_dirty()
        if not dirty:
            return
        t = threading.Thread(target=self._write, args=(dirty,), name="relayguard-counters",
                             daemon=True)
        self._thread = t
        t.start()

    def _write(self, dirty: dict[tuple[str, int], int]) -> None:
        with self._lock:
            pending, self._retry = self._retry, {}
            pending.update(dirty)  # the newer count of a bucket wins
            rows = []
            for (counter, index), count in pending.items():
                parsed = parse_counter_name(counter)
                if parsed is not None:
                    rows.append((counter, index * bucket_width(parsed[3]), count))
            try:
                if self._db is None:
                    self._db = sqlite3.connect(str(self.path), timeout=10, isolation_level=None,
                                               check_same_thread=False)
                    self._db.execute("PRAGMA busy_timeout = 10000")
                    # Counters are worth a flush interval at most: no fsync per transaction.
                    self._db.execute("PRAGMA synchronous = NORMAL")
                db = self._db
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.executemany("INSERT INTO counters (key, bucket, count) VALUES (?, ?, ?)"
                                   " ON CONFLICT(key, bucket) DO UPDATE SET count=excluded.count",
                                   rows)
                    cutoff = int(time.time()) - self.max_window - bucket_width(self.max_window)
                    db.execute("DELETE FROM counters WHERE bucket < ?", (cutoff,))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                log.warning("counters: cannot write %d buckets to %s (%s); retrying later",
                            len(rows), self.path, exc)
                self._retry = pending

    def close(self) -> None:
        dirty = self.take_dirty()
        t = self._thread
        if t is not None:
            t.join(timeout=30)
        if dirty:
            self._write(dirty)
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None


def usage_from_buckets(window: int, buckets: Iterable[tuple[int, int]], now: float) -> int:
    """Usage of a counter from (bucket start seconds, count) pairs, as the live store sees it."""
    width = bucket_width(window)
    oldest = int(now // width) - bucket_count(window) + 1
    return sum(c for start, c in buckets if int(start) // width >= oldest)


def read_sqlite_usage(db: sqlite3.Connection, now: float | None = None) -> dict[str, int]:
    """Counter name -> current usage, from the `counters` table (what the server last flushed)."""
    now = time.time() if now is None else now
    per: dict[str, list[tuple[int, int]]] = {}
    for key, bucket, count in db.execute("SELECT key, bucket, count FROM counters"):
        per.setdefault(key, []).append((bucket, count))
    out = {}
    for key, buckets in per.items():
        parsed = parse_counter_name(key)
        if parsed is None:
            continue
        u = usage_from_buckets(parsed[3], buckets, now)
        if u:
            out[key] = u
    return out
