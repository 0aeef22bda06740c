"""Alerts and metrics for real: e-mail into a local aiosmtpd sink, webhooks into a local HTTP
server (both in threads), /metrics fetched over HTTP and read with prometheus_client's parser.
Also: one incident gives one alert, the rate limit holds back and says so, and nothing from a
log line can inject an e-mail header or a Slack mention."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from prometheus_client.parser import text_string_to_metric_families

from harness import free_port
from relayguard.alert import Alert, Dispatcher, EmailChannel, WebhookChannel
from relayguard.alert.dispatch import Deduper, RateLimit
from relayguard.detect import Finding
from watchkit import Daemon, Hook, StateView, append, auth_failure, stamp, wait_for

HOSTILE_USER = 'admin\r\nBcc: victim@example.net <!channel> <http://evil.example|click>'


class Sink:
    """An SMTP server that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_sink() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield sink, port
    finally:
        ctl.stop()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    try:
        yield h
    finally:
        h.close()


def finding(subject: str = "admin", score: int = 90) -> Finding:
    f = Finding("compromised_account", subject, score,
                f"Account {subject!r}: 300 messages from 40 addresses.", time.time() - 60,
                time.time())
    f.evidence = {"messages": 300, "client_ips": 40,
                  "examples": [f"postfix/smtpd[1]: 1A2B3C: client=x[1.2.3.4], sasl_username={subject}"]}
    f.action(f"relayguard lock {subject}", "stop the account")
    return f


def test_email_alert_reaches_the_smtp_sink(smtp_sink: tuple[Sink, int]) -> None:
    sink, port = smtp_sink
    ch = EmailChannel("127.0.0.1", port, "relayguard@mail.example.org", ["postmaster@example.org"])
    d = Dispatcher([ch], min_severity="high")
    assert d.submit(Alert.from_finding(finding(HOSTILE_USER)))
    assert d.flush(10)
    wait_for(lambda: sink.messages, what="the e-mail")
    mail_from, rcpts, content = sink.messages[0]
    assert mail_from == "relayguard@mail.example.org" and rcpts == ["postmaster@example.org"]
    msg = message_from_bytes(content, policy=policy.default)  # unfolds long headers
    assert msg["Subject"].startswith("[relayguard] CRITICAL: compromised account: admin")
    assert msg["Bcc"] is None  # the CR LF from the log did not make a header
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert msg["X-Relayguard-Kind"] == "compromised_account"
    body = msg.get_content()
    assert "300 messages from 40 addresses" in body and "relayguard lock" in body
    assert '"schema": "relayguard.alert/1"' in body
    d.close()


def test_webhook_alert_reaches_the_http_server(hook: Hook) -> None:
    d = Dispatcher([WebhookChannel(hook.url)], min_severity="high")
    assert d.submit(Alert.from_finding(finding(HOSTILE_USER)))
    assert d.flush(10)
    wait_for(lambda: hook.bodies, what="the webhook POST")
    body = hook.bodies[0]
    # Slack/Mattermost: "text" for people, an attachment with fields; programs: "relayguard".
    assert body["text"].startswith(":rotating_light: *CRITICAL* compromised account: admin")
    assert "<!channel>" not in json.dumps(body["text"]) and "&lt;!channel&gt;" in body["text"]
    att = body["attachments"][0]
    assert att["color"] and {f["title"] for f in att["fields"]} >= {"kind", "subject"}
    rg = body["relayguard"]
    assert rg["kind"] == "compromised_account" and rg["severity"] == "critical"
    assert rg["details"]["evidence"]["client_ips"] == 40 and rg["subject"] == HOSTILE_USER
    d.close()


def test_below_min_severity_only_logged(hook: Hook) -> None:
    d = Dispatcher([WebhookChannel(hook.url)], min_severity="high")
    assert not d.submit(Alert.from_finding(finding(score=45)))  # medium
    assert d.submit(Alert("q", "queue_recovered", "queue", "info", "back to normal", "fine"))
    assert d.flush(10)
    assert [b["relayguard"]["kind"] for b in hook.bodies] == ["queue_recovered"]
    d.close()


def test_rate_limit_holds_back_and_says_so(hook: Hook) -> None:
    d = Dispatcher([WebhookChannel(hook.url)], min_severity="low", per_hour=36000, burst=2)
    sent = [d.submit(Alert.from_finding(finding(f"user{i}"))) for i in range(5)]
    assert sent == [True, True, False, False, False]
    assert d.flush(10)
    time.sleep(0.25)  # the bucket refills at 10 per second
    assert d.submit(Alert.from_finding(finding("user9")))
    assert d.flush(10)
    assert len(hook.bodies) == 3
    assert "3 other alert(s) were held back" in hook.bodies[-1]["attachments"][0]["text"]
    d.close()


def test_failed_channel_does_not_stop_the_others(hook: Hook) -> None:
    dead = WebhookChannel(f"http://127.0.0.1:{free_port()}/nobody")
    d = Dispatcher([dead, WebhookChannel(hook.url)], min_severity="low", retries=0)
    d.submit(Alert.from_finding(finding()))
    assert d.flush(10)
    assert len(hook.bodies) == 1
    d.close()


def test_deduper() -> None:
    dd = Deduper(cooldown=100)
    assert dd.check("k", "medium", now=0) == "new"
    assert dd.check("k", "medium", now=10) is None
    assert dd.check("k", "low", now=20) is None
    assert dd.check("k", "high", now=30) == "escalated"
    assert dd.check("k", "high", now=40) is None
    assert dd.check("k", "high", now=131) == "reminder"
    dd.forget("k")
    assert dd.check("k", "low", now=132) == "new"


def test_rate_limit_zero_is_unlimited() -> None:
    r = RateLimit(0, 1)
    assert all(r.take() for _ in range(100))


def guessed_password(ip: str, n: int = 6) -> list[str]:
    """`n` failures, then the same address logs in: the auth_bruteforce detector says the
    password was guessed (high)."""
    return [auth_failure(ip, f"user{i}") for i in range(n)] + [
        f"{stamp()} mail postfix/smtpd[4242]: 3C4D5E6F7A: client=unknown[{ip}], "
        f"sasl_method=LOGIN, sasl_username=admin"]


def test_daemon_alerts_once_per_incident(tmp_path: Path, hook: Hook,
                                         smtp_sink: tuple[Sink, int]) -> None:
    """Detectors run every 0.2 s on the window; the incident is alerted once (webhook and
    e-mail), not at every run."""
    sink, port = smtp_sink
    log, state = tmp_path / "mail.log", tmp_path / "state.db"
    extra = {"alert": {"webhook": {"url": hook.url},
                       "email": {"host": "127.0.0.1", "port": port, "to": ["admin@example.org"]}},
             # Allowlisted: no ban, so the address keeps failing (and the test sees the alert).
             "bruteforce": {"allow": ["127.0.0.0/8", "203.0.113.0/24"]}}
    with Daemon(state, [log], extra) as d:
        append(log, guessed_password("203.0.113.50"))
        wait_for(lambda: "auth_bruteforce:203.0.113.50" in hook.alert_keys(), what="the alert")
        n = d.stats.detections
        wait_for(lambda: d.stats.detections >= n + 5, what="five more detector runs")
        append(log, [auth_failure("203.0.113.50")])  # still going on, not worse
        wait_for(lambda: d.stats.detections >= n + 8, what="more detector runs")
        assert d.watcher.dispatcher.flush(10)
        assert hook.alert_keys().count("auth_bruteforce:203.0.113.50") == 1
        assert len(hook.bodies) == len(set(hook.alert_keys()))  # nothing twice
    wait_for(lambda: len(sink.messages) == len(hook.bodies), what="as many e-mails")


def metrics(addr: tuple[str, int]) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    text = urllib.request.urlopen(f"http://{addr[0]}:{addr[1]}/metrics", timeout=5).read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_endpoint(tmp_path: Path) -> None:
    log, state = tmp_path / "mail.log", tmp_path / "state.db"
    qid, s = "4B1C2D3E4F", stamp()
    lines = [
        f"{s} mail postfix/smtpd[2001]: {qid}: client=unknown[198.51.100.20], sasl_method=LOGIN, sasl_username=bob",
        f"{s} mail postfix/cleanup[2002]: {qid}: message-id=<x@y>",
        f"{s} mail postfix/qmgr[2003]: {qid}: from=<bob@example.org>, size=1000, nrcpt=2 (queue active)",
        f"{s} mail postfix/smtp[2004]: {qid}: to=<a@remote.example>, relay=mx.remote.example[192.0.2.1]:25, delay=1, delays=0.1/0/0.5/0.4, dsn=2.0.0, status=sent (250 ok)",
        f"{s} mail postfix/smtp[2004]: {qid}: to=<b@other.example>, relay=mx.other.example[192.0.2.2]:25, delay=1, delays=0.1/0/0.5/0.4, dsn=4.7.1, status=deferred (450 try later)",
        f"{s} mail postfix/smtpd[2001]: NOQUEUE: reject: RCPT from unknown[198.51.100.21]: 554 5.7.1 <x@y.example>: Relay access denied; from=<a@b> to=<x@y.example> proto=ESMTP helo=<h>",
        f"{s} mail postfix/qmgr[2003]: {qid}: removed",
        "garbage without a header",
    ] + [auth_failure(f"198.18.0.{i}") for i in range(40)] + [auth_failure("203.0.113.9")] * 3
    view = StateView(state)
    with Daemon(state, [log], {"watch": {"metrics_listen": "127.0.0.1:0"}}) as d:
        append(log, lines)
        wait_for(lambda: view.banned("203.0.113.9"), what="the ban")
        addr = d.watcher.metrics_address
        assert addr is not None

        def ready() -> dict[str, Any] | None:
            m = metrics(addr)
            active = m.get("relayguard_bans_active", {}).get((), 0)
            return m if active == 1 else None
        m = wait_for(ready, what="metrics with the ban")
    view.close()
    assert m["relayguard_auth_failures_total"][()] == 43
    status = {dict(k)["status"]: v for k, v in m["relayguard_messages_total"].items()}
    assert status == {"received": 1, "sent": 1, "deferred": 1, "rejected": 1}
    assert m["relayguard_bans_total"][(("cause", "bruteforce"),)] == 1
    assert m["relayguard_locks_active"][()] == 0
    assert m["relayguard_lines_total"][(("source", str(log)),)] == len(lines)
    assert m["relayguard_file_lines_total"] == {(("file", str(log)),): len(lines)}
    assert m["relayguard_unparsed_lines_total"][()] == 1
    assert {dict(k)["queue"] for k in m["relayguard_queue_messages"]} == {
        "maildrop", "incoming", "active", "deferred", "hold", "corrupt"}
    assert m["relayguard_last_line_timestamp_seconds"][()] > time.time() - 120
    # Bounded cardinality: no label value is an address or a user.
    for name, series in m.items():
        for labels in series:
            for k, v in labels:
                assert "198.18." not in v and "203.0.113" not in v and "bob" not in v, (name, k, v)
