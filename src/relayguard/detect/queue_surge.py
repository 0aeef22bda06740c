"""The queue grew past the threshold (messages in the queue at once, as seen in the log, or as
`watch` polled it)."""

from __future__ import annotations

from typing import Any

from ..aggregate import Aggregates
from .finding import Finding, clamp, cmd


def detect(agg: Aggregates, cfg: dict[str, Any]) -> list[Finding]:
    threshold = cfg["detect"]["queue_surge"]["threshold"]
    peak = agg.peak_queue
    if threshold <= 0 or peak < threshold:
        return []
    return [surge(peak, agg.peak_queue_ts, threshold)]


def surge(peak: int, ts: float | None, threshold: int) -> Finding:
    """The finding for `peak` messages queued at once at `ts` (`peak` ≥ `threshold` > 0)."""
    score = 45 + min(40, int(20 * (peak / threshold - 1)))
    f = Finding("queue_surge", "queue", clamp(score),
                f"Up to {peak} messages were in the queue at once (threshold {threshold}).",
                ts, ts)
    f.evidence = {"peak": peak, "threshold": threshold}
    f.action(cmd("relayguard", "queue", "summary"), "who the queued mail belongs to")
    return f
