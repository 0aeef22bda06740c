"""Prometheus metrics of `relayguard watch`, served on `[watch] metrics_listen` at /metrics.

Label values come from small fixed sets (statuses, finding kinds, severities, queue names,
configured sources): never a user, an address or a sender, whose number an attacker controls
(and that would blow up the time series database).
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, start_http_server

STATUSES = frozenset(("received", "sent", "deferred", "bounced", "expired", "rejected"))
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")
SEVERITIES = frozenset(("critical", "high", "medium", "low"))


def parse_listen(text: str) -> tuple[str, int]:
    """`127.0.0.1:9425`, `[::1]:9425`, `:9425` (all addresses) → (host, port)."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"[watch] metrics_listen: {text!r} is not ADDRESS:PORT")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)  # noqa: S104 — only when the admin wrote ":PORT"


class Metrics:
    def __init__(self) -> None:
        # A registry of our own: two watchers in one process (tests) never collide, and the
        # process/platform collectors of the default registry are not mixed in.
        r = self.registry = CollectorRegistry()
        self.lines = Counter("relayguard_lines", "Log lines read, per configured source",
                             ["source"], registry=r)
        # One series per file name read (the followed file, and the rotated files a restart
        # finds: `mail.log.1`, `mail.log.2.gz`…): few, and a line lost or read twice shows here.
        self.file_lines = Counter("relayguard_file_lines",
                                  "Log lines read, per file (a rotated file under the name it "
                                  "was read as)", ["file"], registry=r)
        self.unparsed = Counter("relayguard_unparsed_lines",
                                "Lines whose syslog header could not be read", registry=r)
        self.old = Counter("relayguard_old_lines",
                           "Lines skipped as older than [watch] ignore_older", registry=r)
        self.messages = Counter(
            "relayguard_messages",
            "Messages by status: received (accepted by smtpd or pickup), rejected (refused by "
            "smtpd), and delivery outcomes per recipient (sent, deferred, bounced, expired)",
            ["status"], registry=r)
        self.auth_failures = Counter("relayguard_auth_failures",
                                     "Failed SASL authentications", registry=r)
        self.findings = Counter("relayguard_findings",
                                "Incidents alerted (new or worse), by kind and severity",
                                ["kind", "severity"], registry=r)
        self.findings_active = Gauge("relayguard_findings_active",
                                     "Findings in the current detection window, by kind",
                                     ["kind"], registry=r)
        self.bans = Counter("relayguard_bans", "Automatic bans, by cause", ["cause"], registry=r)
        self.bans_active = Gauge("relayguard_bans_active", "Bans in force", registry=r)
        self.locks_active = Gauge("relayguard_locks_active", "Account locks in force", registry=r)
        self.queue = Gauge("relayguard_queue_messages", "Messages in the Postfix queue",
                           ["queue"], registry=r)
        self.queue_polls = Counter("relayguard_queue_polls", "Queue polls, by outcome",
                                   ["outcome"], registry=r)
        self.alerts = Counter("relayguard_alerts", "Alerts by channel and outcome",
                              ["channel", "outcome"], registry=r)
        self.last_line = Gauge("relayguard_last_line_timestamp_seconds",
                               "Time stamp of the newest log line read (a stale log shows here)",
                               registry=r)
        self.detect_seconds = Gauge("relayguard_detect_seconds",
                                    "Duration of the last detector run", registry=r)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        for q in QUEUES:
            self.queue.labels(q)  # present (0) before the first poll

    def message_status(self, status: str, n: int = 1) -> None:
        self.messages.labels(status if status in STATUSES else "other").inc(n)

    def finding(self, kind: str, severity: str) -> None:
        self.findings.labels(kind, severity if severity in SEVERITIES else "other").inc()

    def queue_sizes(self, counts: dict[str, int]) -> None:
        other = 0
        for name, n in counts.items():
            if name not in QUEUES:
                other += n
        for q in QUEUES:
            self.queue.labels(q).set(counts.get(q, 0))
        if other:
            self.queue.labels("other").set(other)

    def text(self) -> str:
        return generate_latest(self.registry).decode("utf-8")

    def serve(self, listen: str) -> tuple[str, int]:
        """Start the /metrics HTTP server in a thread; returns the address bound."""
        host, port = parse_listen(listen)
        self._server, self._thread = start_http_server(port, host, registry=self.registry)
        bound = self._server.server_address
        return str(bound[0]), int(bound[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
