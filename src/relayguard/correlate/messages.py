"""The queue-ID state machine: gathers one message's lines (smtpd/pickup → cleanup → qmgr →
smtp/local → removed) into a `Message`. Memory holds only messages still in the queue: a record
leaves on `removed`, and records silent for longer than `max_idle` (their `removed` line fell
outside the log) are flushed, so a log of any length runs in bounded memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..parse.event import (
    CLIENT,
    DELIVERY,
    MESSAGE_ID,
    OTHER,
    PICKUP,
    QUEUED,
    REMOVED,
    Event,
)
from ..timefmt import iso

MAX_RECIPIENTS_KEPT = 1000  # per message; a 10,000-recipient spam run is counted, not stored


def recipient_dict(ev: Event) -> dict[str, Any]:
    """One recipient's latest delivery attempt (its `delivery` event) as DESIGN.md's record."""
    f = ev.fields
    return {"address": f.get("recipient", ""), "orig_address": f.get("orig_recipient"),
            "status": f.get("status"), "dsn": f.get("dsn"), "relay": f.get("relay"),
            "delay": f.get("delay"), "reason": f.get("reason")}


class Message:
    __slots__ = ("host", "instance", "queue_id", "first_seen", "last_seen", "client_name",
                 "client_ip", "sasl_method", "sasl_username", "sender", "message_id", "size",
                 "nrcpt", "removed", "recipients", "uid", "origin", "raw_client", "final")

    def __init__(self, host: str, instance: str, queue_id: str, ts: float) -> None:
        self.host = host
        self.instance = instance
        self.queue_id = queue_id
        self.first_seen = ts
        self.last_seen = ts
        self.client_name: str | None = None
        self.client_ip: str | None = None
        self.sasl_method: str | None = None
        self.sasl_username: str | None = None
        self.sender: str | None = None
        self.message_id: str | None = None
        self.size: int | None = None
        self.nrcpt: int | None = None
        self.removed = False
        # Latest outcome per recipient address (a deferred recipient later sent counts as sent).
        self.recipients: dict[str, Event] = {}
        self.uid: str | None = None
        self.origin: str | None = None  # "smtpd", "pickup" (local submission), or None (unknown)
        self.raw_client: str | None = None  # the `client=` line, kept as evidence
        self.final: dict[str, int] = {}  # status → count, over every delivery attempt's outcome

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host, "queue_id": self.queue_id,
            "first_seen": iso(self.first_seen), "last_seen": iso(self.last_seen),
            "client_name": self.client_name, "client_ip": self.client_ip,
            "sasl_method": self.sasl_method, "sasl_username": self.sasl_username,
            "sender": self.sender, "message_id": self.message_id, "size": self.size,
            "nrcpt": self.nrcpt, "removed": self.removed,
            "recipients": [recipient_dict(r) for r in self.recipients.values()],
        }


class Correlator:
    """Feed events in time order; completed messages come back from `feed`, the rest from `flush`."""

    def __init__(self, max_idle: float = 7 * 86400,
                 admit: Callable[[Event], bool] | None = None) -> None:
        self.open: dict[str, Message] = {}
        self.composite = 0  # messages under a host+instance+ID key (an ID seen on two hosts)
        # `admit`: only events it accepts open a record (e.g. the `client=` line of one account,
        # for `show`); later lines of other messages then cost one dictionary miss each.
        self.admit = admit
        self.max_idle = max_idle
        self._next_sweep = 0.0
        self.peak_open = 0
        self.peak_open_ts: float | None = None

    def feed(self, ev: Event) -> Message | None:
        qid = ev.queue_id
        if qid is None:
            return None
        # Keyed by the queue ID alone (the common case: one host, one instance); a message of
        # another host or instance with the same ID gets a composite key instead.
        key = qid
        msg = self.open.get(key)
        if (msg is not None and (msg.host != ev.host or msg.instance != ev.instance)) or \
                (msg is None and self.composite):
            composite = f"{ev.host}\0{ev.instance}\0{qid}"
            if msg is not None or composite in self.open:
                key = composite
                msg = self.open.get(key)
        kind = ev.event
        if msg is None:
            if kind in (REMOVED, OTHER) or (self.admit is not None and not self.admit(ev)):
                return None
            msg = Message(ev.host, ev.instance, qid, ev.ts)
            self.open[key] = msg
            if key is not qid:
                self.composite += 1
            n = len(self.open)
            if n > self.peak_open:
                self.peak_open = n
                self.peak_open_ts = ev.ts
        msg.last_seen = ev.ts
        f = ev.fields
        if kind == DELIVERY:
            addr = f.get("recipient", "")
            rcpts = msg.recipients
            if addr in rcpts or len(rcpts) < MAX_RECIPIENTS_KEPT:
                rcpts[addr] = ev
            st = f.get("status") or "unknown"
            msg.final[st] = msg.final.get(st, 0) + 1
        elif kind == CLIENT:
            msg.client_name = f.get("client_name")
            msg.client_ip = f.get("client_ip")
            msg.sasl_method = f.get("sasl_method")
            msg.sasl_username = f.get("sasl_username")
            msg.origin = "smtpd"
            msg.raw_client = ev.raw
        elif kind == QUEUED:
            msg.sender = f.get("sender")
            msg.size = f.get("size")
            msg.nrcpt = f.get("nrcpt")
        elif kind == MESSAGE_ID:
            msg.message_id = f.get("message_id")
        elif kind == REMOVED:
            msg.removed = True
            del self.open[key]
            if key is not qid:
                self.composite -= 1
            return msg
        elif kind == PICKUP:
            msg.uid = f.get("uid")
            msg.sender = msg.sender or f.get("sender")
            msg.origin = "pickup"
            msg.raw_client = ev.raw
        return None

    def sweep(self, now: float) -> Iterator[Message]:
        """Yield (and forget) messages idle longer than `max_idle`; cheap to call often."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + 3600
        cutoff = now - self.max_idle
        stale = [k for k, m in self.open.items() if m.last_seen < cutoff]
        for k in stale:
            yield self.open.pop(k)

    def flush(self) -> Iterator[Message]:
        """Messages still open at the end of input (in the queue, or their end fell outside)."""
        msgs = sorted(self.open.values(), key=lambda m: m.first_seen)
        self.open.clear()
        yield from msgs
