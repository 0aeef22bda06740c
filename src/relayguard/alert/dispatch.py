"""Alerts: when one is worth sending (dedupe), and how many may go (rate limit); what they say
is `alert.model`."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from ..detect.finding import SEVERITY_RANK
from ..sanitize import one_line
from .channels import Channel, EmailChannel, WebhookChannel
from .model import Alert

if TYPE_CHECKING:
    from .metrics import Metrics

log = logging.getLogger("relayguard.alert")

RANK = {**SEVERITY_RANK, "info": -1}  # info: notices (recovery), below every finding


class Deduper:
    """One incident, one alert: a key alerts when new, when its severity rises, or again after
    `cooldown` seconds if it is still seen."""

    def __init__(self, cooldown: float) -> None:
        self.cooldown = cooldown
        self._seen: dict[str, tuple[int, float]] = {}  # key → (rank alerted, when)

    def check(self, key: str, severity: str, now: float | None = None) -> str | None:
        """"new", "escalated", "reminder" (and remember it), or None: nothing to say."""
        now = time.time() if now is None else now
        rank = RANK.get(severity, 0)
        prev = self._seen.get(key)
        if prev is None:
            reason = "new"
        elif rank > prev[0]:
            reason = "escalated"
        elif now - prev[1] >= self.cooldown:
            reason = "reminder"
        else:
            return None
        self._seen[key] = (max(rank, prev[0]) if prev and reason == "reminder" else rank, now)
        return reason

    def forget(self, key: str) -> None:
        """The incident is over: the next time `key` is seen it is new."""
        self._seen.pop(key, None)

    def forget_older(self, before: float) -> None:
        """Keys not alerted since `before` start over (memory stays flat)."""
        for k in [k for k, (_, t) in self._seen.items() if t < before]:
            del self._seen[k]


class RateLimit:
    """A token bucket: `burst` alerts at once, refilled at `per_hour`."""

    def __init__(self, per_hour: float, burst: int) -> None:
        self.rate = per_hour / 3600.0
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        if self.rate <= 0:
            return True  # 0: unlimited
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Dispatcher:
    """Sends alerts through its channels from one worker thread. Every alert is logged; the
    channels get it unless below `min_severity` or over the rate limit (then the next alert
    that goes out says how many were held back)."""

    def __init__(self, channels: list[Channel], min_severity: str = "high",
                 per_hour: float = 30, burst: int = 10, metrics: Metrics | None = None,
                 retries: int = 1, retry_delay: float = 2.0) -> None:
        self.channels = channels
        self.min_rank = RANK.get(min_severity, RANK["high"])
        self.limit = RateLimit(per_hour, burst)
        self.metrics = metrics
        self.retries = retries
        self.retry_delay = retry_delay
        self.suppressed = 0
        self._lock = threading.Lock()  # `suppressed` is counted by submit, reset by the worker
        self.sent: list[Alert] = []  # the last alerts handed to channels (for `--once` output)
        self._queue: queue.Queue[Alert | None] = queue.Queue(1000)
        self._thread: threading.Thread | None = None

    def submit(self, alert: Alert, always: bool = False) -> bool:
        """Queue an alert for the channels; False when it was held back. Below `min_severity`
        only notices (severity "info") and `always` alerts go out (the admin asked for them:
        a queue threshold, ban notifications)."""
        # one_line: a log-borne title must not forge lines in our own log either.
        log.warning("alert %s [%s] %s", alert.severity.upper(), alert.reason,
                    one_line(alert.title, 300))
        notice = alert.severity == "info" or always
        if not notice and RANK.get(alert.severity, 0) < self.min_rank:
            return False
        if not self.channels:
            return False
        if not self.limit.take():
            self._held_back()
            return False
        with self._lock:
            held, self.suppressed = self.suppressed, 0
        if held:  # said by the first alert that goes out after them
            alert.note = (f"{held} other alert(s) were held back by the rate limit "
                          "([alert] max_per_hour); see the daemon's log.")
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self._held_back()
            return False
        self._ensure_thread()
        return True

    def _held_back(self) -> None:
        with self._lock:
            self.suppressed += 1
        self._count("all", "suppressed")

    def _count(self, channel: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.alerts.labels(channel, outcome).inc()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="relayguard-alerts",
                                            daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                self._queue.task_done()
                return
            for ch in self.channels:
                self._deliver(ch, alert, alert.note)
            self.sent.append(alert)
            del self.sent[:-100]
            self._queue.task_done()

    def _deliver(self, ch: Channel, alert: Alert, note: str) -> None:
        for attempt in range(self.retries + 1):
            try:
                ch.send(alert, note)
                self._count(ch.name, "sent")
                return
            except Exception as exc:  # noqa: BLE001 — a channel's failure must not stop the others
                if attempt < self.retries:
                    time.sleep(self.retry_delay)
                    continue
                log.error("alert via %s failed: %s", ch.name, exc)
                self._count(ch.name, "failed")

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued alert has been tried; False on timeout."""
        deadline = time.monotonic() + timeout
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                done.wait(left)
        return True

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)


def from_config(cfg: dict[str, Any], metrics: Metrics | None = None) -> Dispatcher:
    """The `[alert]` section → a Dispatcher (no channel configured: alerts are only logged)."""
    a = cfg.get("alert") or {}
    channels: list[Channel] = []
    email = a.get("email") or {}
    if email.get("host") and email.get("to"):
        channels.append(EmailChannel.from_config(email))
    hook = a.get("webhook") or {}
    if hook.get("url"):
        channels.append(WebhookChannel.from_config(hook))
    return Dispatcher(channels, str(a.get("min_severity", "high")),
                      float(a.get("max_per_hour", 30)), int(a.get("burst", 10)), metrics)
