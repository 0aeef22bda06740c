"""The fail2ban-like brute-force counter of `watch`, which cannot wait for the detectors (the
sliding window they run on is pipeline.windows)."""

from __future__ import annotations

from collections import deque


class BruteForce:
    """`max_failures` failed logins from one address within `window` seconds (log time): ban.
    Each address keeps the times of its recent failures; they are saved with the checkpoint so
    that a restart neither forgets nor double-counts them."""

    def __init__(self, max_failures: int, window: float) -> None:
        self.max_failures = max(1, max_failures)
        self.window = window
        self.failures: dict[str, deque[float]] = {}
        self.dirty: set[str] = set()  # addresses changed since the last checkpoint

    def load(self, stored: dict[str, list[float]]) -> None:
        for ip, stamps in stored.items():
            self.failures[ip] = deque(sorted(stamps))

    def failure(self, ip: str, ts: float) -> int:
        """Record one failure; the failures of `ip` within the window (this one included)."""
        dq = self.failures.get(ip)
        if dq is None:
            dq = self.failures[ip] = deque()
        dq.append(ts)
        lo = ts - self.window
        while dq and dq[0] <= lo:
            dq.popleft()
        self.dirty.add(ip)
        return len(dq)

    def reached(self, n: int) -> bool:
        return n >= self.max_failures

    def reset(self, ip: str) -> None:
        """After a ban the count starts over (as fail2ban): a new ban needs new failures."""
        if ip in self.failures:
            self.failures[ip].clear()
            self.dirty.add(ip)

    def prune(self, now: float) -> None:
        lo = now - self.window
        for ip in list(self.failures):
            dq = self.failures[ip]
            while dq and dq[0] <= lo:
                dq.popleft()
            if not dq:
                del self.failures[ip]
                self.dirty.add(ip)

    def take_dirty(self) -> dict[str, list[float]]:
        """What to save: the current failures of the addresses changed since last time."""
        out = {ip: list(self.failures.get(ip, ())) for ip in self.dirty}
        self.dirty = set()
        return out
