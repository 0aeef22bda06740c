"""`queue summary`: a qshape-like picture of the queue, built in one streaming pass.

Counts per queue, per sender, per sender domain and per recipient domain, each spread over
qshape's age buckets (minutes: 5, 10, 20, 40, 80, 160, 320, 640, 1280, older); with origins
(queue files or logs), also per SASL login and client IP. A message counts once per distinct
recipient domain (so a domain's row says how many queued messages wait for it); the recipient
count is given alongside.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from .postqueue import QueuedMessage, domain_of

AGE_BUCKETS_MIN = (5, 10, 20, 40, 80, 160, 320, 640, 1280)
BUCKET_LABELS = (*(str(b) for b in AGE_BUCKETS_MIN), f"{AGE_BUCKETS_MIN[-1]}+")


def bucket(age_seconds: float) -> int:
    minutes = age_seconds / 60
    for i, limit in enumerate(AGE_BUCKETS_MIN):
        if minutes < limit:
            return i
    return len(AGE_BUCKETS_MIN)


class Shape:
    """Counts per key and age bucket."""

    def __init__(self) -> None:
        self.rows: dict[str, list[int]] = defaultdict(lambda: [0] * len(BUCKET_LABELS))
        self.totals: Counter[str] = Counter()
        self.recipients: Counter[str] = Counter()

    def add(self, key: str, b: int, recipients: int = 0) -> None:
        self.rows[key][b] += 1
        self.totals[key] += 1
        self.recipients[key] += recipients

    def top(self, n: int | None) -> list[dict[str, Any]]:
        keys = sorted(self.totals, key=lambda k: (-self.totals[k], k))
        if n:
            keys = keys[:n]
        return [{"key": k, "messages": self.totals[k], "recipients": self.recipients[k],
                 "by_age": list(self.rows[k])} for k in keys]


class QueueSummary:
    def __init__(self, now: float, top: int = 10) -> None:
        self.now = now
        self.n_top = top
        self.messages = 0
        self.recipients = 0
        self.size = 0
        self.oldest: float | None = None
        self.queues = Shape()
        self.senders = Shape()
        self.sender_domains = Shape()
        self.recipient_domains = Shape()
        self.sasl_users = Shape()
        self.client_ips = Shape()
        self.with_origin = False
        self.origin_unknown = 0
        self.by_age = [0] * len(BUCKET_LABELS)

    def add(self, m: QueuedMessage) -> None:
        b = bucket(m.age(self.now))
        n = len(m.recipients)
        self.messages += 1
        self.recipients += n
        self.size += m.size
        self.by_age[b] += 1
        if self.oldest is None or m.arrival_time < self.oldest:
            self.oldest = m.arrival_time
        self.queues.add(m.queue_name, b, n)
        self.senders.add(m.sender or "<>", b, n)
        self.sender_domains.add(m.sender_domain or "<>", b, n)
        per_domain = Counter(domain_of(r.address) or "(local)" for r in m.recipients)
        for d, k in per_domain.items():
            self.recipient_domains.add(d, b, k)
        if m.origin_source is not None:
            self.with_origin = True
            if m.sasl_username:
                self.sasl_users.add(m.sasl_username, b, n)
            if m.client_address:
                self.client_ips.add(m.client_address, b, n)
            if m.origin_source == "unknown":
                self.origin_unknown += 1

    def to_dict(self) -> dict[str, Any]:
        top = self.n_top
        d: dict[str, Any] = {
            "schema": "relayguard.queue-summary/1",
            "messages": self.messages, "recipients": self.recipients, "bytes": self.size,
            "oldest_arrival": int(self.oldest) if self.oldest is not None else None,
            "age_buckets_minutes": list(BUCKET_LABELS),
            "by_age": list(self.by_age),
            "queues": self.queues.top(None),
            "senders": self.senders.top(top),
            "sender_domains": self.sender_domains.top(top),
            "recipient_domains": self.recipient_domains.top(top),
        }
        if self.with_origin:
            d["sasl_users"] = self.sasl_users.top(top)
            d["client_ips"] = self.client_ips.top(top)
            d["origin_unknown"] = self.origin_unknown
        return d
