"""The typed record every stage after parsing works on: one log line → one Event."""

from __future__ import annotations

from typing import Any, Final

from ..timefmt import iso

# Event kinds produced by the parser (the `event` field of `relayguard parse --format jsonl`).
CONNECT: Final = "connect"
DISCONNECT: Final = "disconnect"
CLIENT: Final = "client"
MESSAGE_ID: Final = "message_id"
QUEUED: Final = "queued"
DELIVERY: Final = "delivery"
REMOVED: Final = "removed"
EXPIRED: Final = "expired"
PICKUP: Final = "pickup"
AUTH_FAILURE: Final = "auth_failure"
AUTH_ERROR: Final = "auth_error"  # the SASL back end failed: a server fault, not a wrong password
LOST_CONNECTION: Final = "lost_connection"
REJECT: Final = "reject"
BOUNCE_NOTICE: Final = "bounce_notice"
REMOTE_REPLY: Final = "remote_reply"
FIREWALL: Final = "firewall"
OTHER: Final = "other"


class Event:
    """One recognised log line. `fields` holds what the line carries (DESIGN.md field names)."""

    __slots__ = ("ts", "host", "syslog_name", "service", "pid", "queue_id", "event", "fields", "raw",
                 "instance")

    def __init__(
        self,
        ts: float,
        host: str,
        syslog_name: str,
        service: str,
        pid: str | None,
        queue_id: str | None,
        event: str,
        fields: dict[str, Any],
        raw: str,
        instance: str | None = None,
    ) -> None:
        self.ts = ts
        self.host = host
        self.syslog_name = syslog_name
        self.service = service
        self.pid = pid
        self.queue_id = queue_id
        self.event = event
        self.fields = fields
        self.raw = raw
        # Postfix instance: `postfix` for `postfix/submission/smtpd`, `postfix-out` for `postfix-out/smtp`.
        self.instance = instance if instance is not None else syslog_name.split("/", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "ts": iso(self.ts),
            "host": self.host,
            "syslog_name": self.syslog_name,
            "service": self.service,
            "pid": int(self.pid) if self.pid and self.pid.isdigit() else None,
            "queue_id": self.queue_id,
            "event": self.event,
        }
        d.update(self.fields)
        return d

    def __repr__(self) -> str:
        return f"Event({self.event!r}, {self.queue_id!r}, {self.fields!r})"

