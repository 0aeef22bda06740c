"""Poll the Postfix queue (`postqueue -j`, through the queue package) and say when it crosses
the threshold — once per surge, with hysteresis, and once when it is back to normal.

`postqueue -j` on a queue of 40,000 messages takes seconds: polling runs in its own thread and
hands its counts to the main loop, which never waits for it (brute-force bans stay fast).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from ..queue import PostfixTools, QueueError, read_queue

log = logging.getLogger("relayguard.watch")


@dataclass
class QueueSample:
    ts: float
    total: int = 0
    queues: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def sample_queue(tools: PostfixTools) -> QueueSample:
    s = QueueSample(time.time())
    try:
        for m in read_queue(tools):
            s.total += 1
            s.queues[m.queue_name] = s.queues.get(m.queue_name, 0) + 1
    except QueueError as exc:
        s.error = str(exc)
    return s


class Hysteresis:
    """Over at `threshold` or more; back to normal only below `threshold * recover` — a queue
    hovering around the threshold gives one alert, not one per poll."""

    def __init__(self, threshold: int, recover: float = 0.8) -> None:
        self.threshold = threshold
        self.recover_below = threshold * recover
        self.over = False
        self.peak = 0

    def update(self, total: int) -> str | None:
        """"surge" when it goes over, "recovered" when it comes back, else None."""
        if not self.over:
            if total >= self.threshold:
                self.over = True
                self.peak = total
                return "surge"
            return None
        self.peak = max(self.peak, total)
        if total < self.recover_below:
            self.over = False
            return "recovered"
        return None


class QueuePoller:
    """Samples the queue every `interval` seconds in a thread; `latest()` takes the newest
    sample not yet taken."""

    def __init__(self, tools: PostfixTools, interval: float) -> None:
        self.tools = tools
        self.interval = interval
        self._latest: QueueSample | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relayguard-queue", daemon=True)

    def start(self) -> QueuePoller:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            s = sample_queue(self.tools)
            if s.error:
                log.warning("queue poll: %s", s.error)
            with self._lock:
                self._latest = s
            self._wake.wait(self.interval)
            self._wake.clear()

    def poll_now(self) -> None:
        """Sample at once (tests, `--once`)."""
        self._wake.set()

    def latest(self) -> QueueSample | None:
        with self._lock:
            s, self._latest = self._latest, None
        return s

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(30)
