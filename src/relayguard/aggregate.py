"""Per-entity statistics, built in one pass from events and completed messages.

Detectors read only these: memory grows with the number of accounts, client addresses and
time buckets, never with the length of the log.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from .correlate import Message
from .parse.event import (
    AUTH_ERROR,
    AUTH_FAILURE,
    CLIENT,
    DELIVERY,
    FIREWALL,
    REJECT,
    REMOTE_REPLY,
    Event,
)
from .parse.replies import blocklist_named

BUCKET = 600  # seconds: the unit of the per-culprit timelines
PER_HOUR = 3600 // BUCKET
MAX_KEYS = 5000  # distinct senders / recipient domains kept per entity
EXAMPLES = 3
LOCAL_SERVICES = frozenset(("local", "virtual", "lmtp", "pipe", "error", "discard", "retry"))


def network_of(ip: str) -> str:
    """The /16 (IPv4) or /32 (IPv6) an address belongs to: a cheap 'how many networks'."""
    if ":" in ip:
        parts = ip.split(":")
        return ":".join(parts[:2]) + "::/32"
    parts = ip.split(".")
    return ".".join(parts[:2]) + ".0.0/16" if len(parts) == 4 else ip


def domain_of(address: str | None) -> str:
    if not address:
        return ""
    at = address.rfind("@")
    return address[at + 1:].lower() if at >= 0 else ""


def _add(counter: dict[str, int], key: str, n: int = 1) -> None:
    if key in counter or len(counter) < MAX_KEYS:
        counter[key] = counter.get(key, 0) + n


class SenderStats:
    """What one sending entity (a SASL account, or an unauthenticated client address) did."""

    __slots__ = ("messages", "recipients", "sent", "deferred", "bounced", "outbound",
                 "no_message_id", "ips", "names", "senders", "rcpt_domains", "buckets", "failed",
                 "first", "last", "examples", "outbound_domains")

    def __init__(self) -> None:
        self.messages = 0
        self.recipients = 0
        self.sent = 0
        self.deferred = 0
        self.bounced = 0
        self.failed = 0  # messages with any recipient deferred, bounced or expired
        self.outbound = 0  # messages delivered (or tried) to a remote MTA: relayed
        self.no_message_id = 0
        self.ips: dict[str, int] = {}
        self.names: dict[str, int] = {}
        self.senders: dict[str, int] = {}
        self.rcpt_domains: dict[str, int] = {}
        self.outbound_domains: dict[str, int] = {}
        self.buckets: dict[int, int] = {}
        self.first: float | None = None
        self.last: float | None = None
        self.examples: list[str] = []

    def add(self, m: Message, domains: list[str]) -> None:
        """Account one message; `domains` are its recipients' domains, in recipient order."""
        self.messages += 1
        ts = m.first_seen
        if self.first is None or ts < self.first:
            self.first = ts
        if self.last is None or m.last_seen > self.last:
            self.last = m.last_seen
        b = int(ts // BUCKET)
        self.buckets[b] = self.buckets.get(b, 0) + 1
        if m.client_ip:
            _add(self.ips, m.client_ip)
        if m.client_name:
            _add(self.names, m.client_name)
        if m.sender is not None:
            _add(self.senders, m.sender)
        if m.message_id == "":
            self.no_message_id += 1
        final = m.final
        self.deferred += 1 if final.get("deferred") else 0
        self.bounced += 1 if (final.get("bounced") or final.get("expired")) else 0
        self.sent += 1 if final.get("sent") else 0
        if final.get("deferred") or final.get("bounced") or final.get("expired"):
            self.failed += 1
        relayed = False
        for r, d in zip(m.recipients.values(), domains, strict=True):
            _add(self.rcpt_domains, d)
            if r.service not in LOCAL_SERVICES and r.fields.get("relay") != "local":
                relayed = True
                _add(self.outbound_domains, d)
        self.recipients += max(len(m.recipients), m.nrcpt or 0)
        if relayed:
            self.outbound += 1
        if m.raw_client and len(self.examples) < EXAMPLES:
            self.examples.append(m.raw_client)

    def merge(self, s: SenderStats) -> None:
        """Fold another sender's statistics into these (`u` and `u@realm` are one account)."""
        self.messages += s.messages
        self.recipients += s.recipients
        self.sent += s.sent
        self.deferred += s.deferred
        self.bounced += s.bounced
        self.failed += s.failed
        self.outbound += s.outbound
        self.no_message_id += s.no_message_id
        for mine, theirs in ((self.ips, s.ips), (self.names, s.names), (self.senders, s.senders),
                             (self.rcpt_domains, s.rcpt_domains),
                             (self.outbound_domains, s.outbound_domains)):
            for k, v in theirs.items():
                _add(mine, k, v)
        for b, n in s.buckets.items():
            self.buckets[b] = self.buckets.get(b, 0) + n
        if s.first is not None and (self.first is None or s.first < self.first):
            self.first = s.first
        if s.last is not None and (self.last is None or s.last > self.last):
            self.last = s.last
        self.examples = (self.examples + s.examples)[:EXAMPLES]

    def peak_hour(self) -> tuple[int, int]:
        """(first bucket, messages) of the busiest hour: six consecutive 10-minute buckets."""
        best_at, best = 0, 0
        b = self.buckets
        for start in b:
            n = sum(b.get(start + i, 0) for i in range(PER_HOUR))
            if n > best:
                best_at, best = start, n
        return best_at, best


class AuthStats:
    """SASL failures from one client address."""

    __slots__ = ("failures", "usernames", "first", "last", "examples", "successes")

    def __init__(self) -> None:
        self.failures = 0
        self.usernames: dict[str, int] = {}
        self.first: float | None = None
        self.last: float | None = None
        self.examples: list[str] = []
        # Logins that succeeded from this address after failures: (user, ts, failures before, raw).
        self.successes: list[tuple[str, float, int, str]] = []


class CountStats:
    """Counted occurrences with first/last time and examples (firewall sources, blocklists)."""

    __slots__ = ("count", "first", "last", "examples", "keys", "buckets")

    def __init__(self) -> None:
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.examples: list[str] = []
        self.keys: dict[str, int] = {}
        self.buckets: dict[int, int] = {}

    def add(self, ts: float, raw: str, key: str | None = None) -> None:
        self.count += 1
        if self.first is None:
            self.first = ts
        self.last = ts
        if len(self.examples) < EXAMPLES:
            self.examples.append(raw)
        if key is not None:
            _add(self.keys, key)
        b = int(ts // BUCKET)
        self.buckets[b] = self.buckets.get(b, 0) + 1


def top(counter: dict[str, int], n: int = 10) -> list[list[Any]]:
    """The `n` largest counts, ties by key; a heap, not a sort (senders can number 200,000)."""
    return [[k, v] for k, v in heapq.nsmallest(n, counter.items(), key=lambda kv: (-kv[1], kv[0]))]


def burst(s: SenderStats, hours: float, min_messages: int, ratio: float) -> tuple[int, float, str | None]:
    """(busiest hour, average per hour over the period, a reason when that hour is a burst):
    at least `min_messages` in one hour and `ratio` times the sender's own hourly average."""
    _, peak = s.peak_hour()
    average = s.messages / hours
    if peak >= min_messages and peak >= ratio * average:
        return peak, average, f"a burst of {peak} messages in one hour (average {average:.1f}/hour)"
    return peak, average, None


# The events `Aggregates.event()` looks at (the pipeline hands it these only).
EVENT_KINDS = frozenset((DELIVERY, CLIENT, AUTH_FAILURE, AUTH_ERROR, REJECT,
                         REMOTE_REPLY, FIREWALL))


class Aggregates:
    """Everything the detectors need, from one pass over the events."""

    def __init__(self, trusted: Callable[[str], bool] | None = None) -> None:
        self.geo: Any = None  # an enrich.geo.GeoDB when [geo] databases are configured
        # "Does Postfix trust this client?" — postfix.mynetworks.TrustedNetworks.contains, passed
        # in so that this compiled module needs no import of the (pure Python) model; None:
        # nothing is trusted. Answers are cached per address.
        self._trusted: Callable[[str], bool] | None = trusted
        self._trusted_cache: dict[str, bool] = {}
        self.users: dict[str, SenderStats] = {}
        self.clients: dict[str, SenderStats] = {}  # unauthenticated smtpd clients
        self.local: dict[str, SenderStats] = {}  # pickup (sendmail) by uid
        self.auth: dict[str, AuthStats] = {}
        self.auth_targets: dict[str, dict[str, int]] = {}  # username → {ip: failures}
        self.auth_errors = 0
        self.firewall: dict[str, CountStats] = {}
        self.blocklists: dict[str, CountStats] = {}
        self.totals: dict[str, int] = {}
        self.senders: dict[str, int] = {}
        self.rcpt_domains: dict[str, int] = {}
        self.message_buckets: dict[int, int] = {}  # all messages per 10 minutes (timelines)
        self.auth_buckets: dict[int, int] = {}  # SASL failures per 10 minutes
        self.start: float | None = None
        self.end: float | None = None
        self.peak_queue = 0
        self.peak_queue_ts: float | None = None

    def is_trusted(self, ip: str) -> bool:
        hit = self._trusted_cache.get(ip)
        if hit is None:
            hit = self._trusted is not None and self._trusted(ip)
            self._trusted_cache[ip] = hit
        return hit

    def event(self, ev: Event) -> None:
        """Account for events that matter beyond one message."""
        kind = ev.event
        ts = ev.ts
        if kind == DELIVERY:
            st = ev.fields.get("status")
            if st:
                self.totals[st] = self.totals.get(st, 0) + 1
                if st != "sent":
                    self._blocklist_text(ev, ev.fields.get("reason"))
        elif kind == CLIENT:
            user = ev.fields.get("sasl_username")
            if user:
                a = self.auth.get(ev.fields.get("client_ip", ""))
                if a is not None and a.failures:
                    a.successes.append((user, ts, a.failures, ev.raw))
        elif kind == AUTH_FAILURE:
            self.totals["auth_failures"] = self.totals.get("auth_failures", 0) + 1
            b = int(ts // BUCKET)
            self.auth_buckets[b] = self.auth_buckets.get(b, 0) + 1
            ip = ev.fields.get("client_ip", "")
            a = self.auth.get(ip)
            if a is None:
                a = self.auth[ip] = AuthStats()
                a.first = ts
            a.failures += 1
            a.last = ts
            user = ev.fields.get("sasl_username")
            if user:
                _add(a.usernames, user)
                t = self.auth_targets.setdefault(user, {})
                _add(t, ip)
            if len(a.examples) < EXAMPLES:
                a.examples.append(ev.raw)
        elif kind == REJECT:
            self.totals["rejected"] = self.totals.get("rejected", 0) + 1
        elif kind == REMOTE_REPLY:
            self._blocklist_text(ev, ev.fields.get("reason"))
        elif kind == FIREWALL:
            f = ev.fields
            if f.get("dpt") == 25 and f.get("src"):
                c = self.firewall.get(f["src"])
                if c is None:
                    c = self.firewall[f["src"]] = CountStats()
                c.add(ts, ev.raw, f.get("dst"))
        elif kind == AUTH_ERROR:
            self.auth_errors += 1

    def _blocklist_text(self, ev: Event, reason: str | None) -> None:
        if not reason:
            return
        name = blocklist_named(reason)
        if name:
            c = self.blocklists.get(name)
            if c is None:
                c = self.blocklists[name] = CountStats()
            c.add(ev.ts, ev.raw, ev.fields.get("relay"))

    def message(self, m: Message) -> None:
        self.totals["messages"] = self.totals.get("messages", 0) + 1
        b = int(m.first_seen // BUCKET)
        self.message_buckets[b] = self.message_buckets.get(b, 0) + 1
        domains = [domain_of(addr) for addr in m.recipients]
        for d in domains:
            _add(self.rcpt_domains, d)
        snd = m.sender
        if snd is not None and (snd in self.senders or len(self.senders) < 200_000):
            self.senders[snd] = self.senders.get(snd, 0) + 1
        if m.sasl_username:
            s = self.users.get(m.sasl_username)
            if s is None:
                s = self.users[m.sasl_username] = SenderStats()
            s.add(m, domains)
        elif m.origin == "smtpd" and m.client_ip:
            s = self.clients.get(m.client_ip)
            if s is None:
                s = self.clients[m.client_ip] = SenderStats()
            s.add(m, domains)
        elif m.origin == "pickup" and m.uid is not None:
            s = self.local.get(m.uid)
            if s is None:
                s = self.local[m.uid] = SenderStats()
            s.add(m, domains)

    @property
    def hours(self) -> float:
        """Length of the period read, in hours (at least one)."""
        if self.start is None or self.end is None:
            return 1.0
        return max(1.0, (self.end - self.start) / 3600)

    def queue_depth(self, depth: int, ts: float | None) -> None:
        if depth > self.peak_queue:
            self.peak_queue = depth
            self.peak_queue_ts = ts

    def summary_totals(self) -> dict[str, Any]:
        t = self.totals.get
        return {"messages": t("messages", 0), "sent": t("sent", 0), "deferred": t("deferred", 0),
                "bounced": t("bounced", 0) + t("expired", 0), "rejected": t("rejected", 0),
                "auth_failures": t("auth_failures", 0)}
