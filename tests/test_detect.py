"""Detectors on small logs built line by line: each finding kind, a guessed password, and the
benign look-alikes that must never reach `high` (a false alarm at 3 a.m. costs trust)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from logbuilder import LogBuilder
from relayguard import config
from relayguard.analysis import Analysis, analyze

os.environ["TZ"] = "UTC"
time.tzset()

TRUSTED = ["192.168.0.0/16", "127.0.0.0/8"]


def run(tmp_path: Path, log: LogBuilder) -> Analysis:
    return analyze([str(log.write(tmp_path / "mail.log"))], config.defaults(), TRUSTED, 2026)


def findings(a: Analysis, kind: str) -> dict[str, object]:
    return {f.subject: f for f in a.findings if f.kind == kind}


def baseline(log: LogBuilder, hours: int = 12) -> None:
    """Ordinary users on a normal day: a few messages each, from one or two addresses."""
    for h in range(hours):
        for i, user in enumerate(("alice", "bob@ourdomain.example", "carol")):
            log.message(f"203.0.113.{10 + i}", user=user, sender=f"{user.split('@')[0]}@ourdomain.example",
                        rcpts=[f"contact{h}@partner{i}.example"])
            log.advance(600)
        log.advance(1800)


def test_compromised_account_many_ips_and_burst(tmp_path: Path) -> None:
    log = LogBuilder()
    baseline(log)
    for i in range(300):  # 300 messages from 40 addresses in 25 minutes, many deferred
        log.message(f"46.48.{i % 40}.60", user="admin", sender=f"promo{i % 9}@spam{i % 5}.example",
                    rcpts=[f"victim{i}@target{i % 60}.example"],
                    status="deferred" if i % 2 else "sent")
        log.advance(5)
    a = run(tmp_path, log)
    f = findings(a, "compromised_account")["admin"]
    assert f.severity in ("high", "critical")
    assert f.evidence["client_ips"] == 40
    assert f.evidence["messages"] == 300
    assert "relayguard lock admin" in [x["command"] for x in f.actions]
    assert a.has_high()
    for user in ("alice", "bob@ourdomain.example", "carol"):
        assert user not in findings(a, "compromised_account")


def test_guessed_password_is_critical(tmp_path: Path) -> None:
    log = LogBuilder()
    baseline(log, hours=3)
    for user in ("info", "sales", "admin", "admin", "admin", "admin", "test", "admin"):
        log.auth_failure("91.200.12.7", user)
        log.advance(3)
    log.message("91.200.12.7", user="admin", sender="admin@ourdomain.example",
                rcpts=["x@example.com"])
    a = run(tmp_path, log)
    acct = findings(a, "compromised_account")["admin"]
    assert acct.severity == "critical"
    assert acct.evidence["guessed_from"] == "91.200.12.7"
    assert acct.evidence["failures_before_success"] == 8
    brute = findings(a, "auth_bruteforce")["91.200.12.7"]
    assert brute.evidence["succeeded_as"] == "admin"
    assert set(brute.evidence["usernames"]) == {"info", "sales", "admin", "test"}


def test_bruteforce_without_success(tmp_path: Path) -> None:
    log = LogBuilder()
    baseline(log, hours=2)
    for i in range(150):
        log.auth_failure("185.220.1.9", f"user{i % 12}")
        log.advance(2)
    a = run(tmp_path, log)
    f = findings(a, "auth_bruteforce")["185.220.1.9"]
    assert f.evidence["failures"] == 150
    assert f.evidence["usernames_tried"] == 12
    assert "compromised_account" not in {x.kind for x in a.findings}


def test_auth_server_outage_is_not_bruteforce(tmp_path: Path) -> None:
    log = LogBuilder()
    for _ in range(40):
        log.auth_failure("203.0.113.10", None, "Connection lost to authentication server")
        log.advance(10)
    a = run(tmp_path, log)
    assert a.findings == []
    assert a.totals()["auth_failures"] == 0


def test_mistyped_password_then_success_is_not_a_guess(tmp_path: Path) -> None:
    log = LogBuilder()
    log.auth_failure("203.0.113.50", "dave")
    log.auth_failure("203.0.113.50", "dave")
    log.message("203.0.113.50", user="dave", sender="dave@ourdomain.example")
    a = run(tmp_path, log)
    assert a.findings == []


def test_trusted_host_relay(tmp_path: Path) -> None:
    log = LogBuilder()
    baseline(log, hours=4)
    for i in range(120):
        log.message("192.168.122.111", name="gateway", sender=f"user{i % 30}@domain{i % 11}.example",
                    rcpts=[f"r{i}@anotherdomain{i % 40}.net"], message_id=None,
                    status="deferred" if i % 3 else "sent")
        log.advance(10)
    a = run(tmp_path, log)
    f = findings(a, "trusted_host_relay")["192.168.122.111"]
    assert f.severity in ("high", "critical")
    assert f.evidence["missing_message_id"] == 120
    assert f.evidence["in_trusted_networks"] is True


def test_relaying_without_auth_outside_trusted_networks_is_inferred(tmp_path: Path) -> None:
    log = LogBuilder()
    for i in range(60):
        log.message("198.51.100.200", sender=f"x{i}@spam.example", rcpts=[f"r{i}@dom{i % 12}.example"],
                    message_id=None, status="deferred")
        log.advance(20)
    a = run(tmp_path, log)
    f = findings(a, "trusted_host_relay")["198.51.100.200"]
    assert f.evidence["in_trusted_networks"] is False
    assert f.severity in ("high", "critical")


def test_benign_look_alikes_stay_below_high(tmp_path: Path) -> None:
    log = LogBuilder()
    for h in range(24):
        # newsletter host: one sender, Message-IDs, steady rate, many domains, few deferrals
        for i in range(25):
            log.message("192.168.1.20", name="news", sender="news@ourdomain.example",
                        rcpts=[f"reader{h * 25 + i}@isp{i % 40}.example"],
                        status="deferred" if i == 0 else "sent")
            log.advance(20)
        # monitoring box: a few alerts an hour to one admin
        for _ in range(3):
            log.message("192.168.1.30", name="nagios", sender="nagios@ourdomain.example",
                        rcpts=["admin@ourdomain-ops.example"])
        # a user on a phone and a laptop
        log.message("203.0.113.77" if h % 2 else "198.51.100.77", user="erin",
                    sender="erin@ourdomain.example", rcpts=[f"friend{h % 5}@example.org"])
        log.advance(3600 - 25 * 20)
    a = run(tmp_path, log)
    assert not a.has_high(), [(f.kind, f.subject, f.severity, f.summary) for f in a.findings]
    for f in a.findings:
        assert f.subject not in ("192.168.1.30", "erin")


def test_direct_smtp_from_a_pc(tmp_path: Path) -> None:
    log = LogBuilder()
    for i in range(400):
        log.firewall("192.168.1.50", f"198.51.{i % 50}.{i % 200}")
        log.advance(4)
    for _ in range(4):  # a handful from a BYOD phone is normal
        log.firewall("192.168.1.61", "203.0.113.25")
    a = run(tmp_path, log)
    found = findings(a, "direct_smtp")
    assert found["192.168.1.50"].severity in ("high", "critical")
    assert found["192.168.1.50"].evidence["connections"] == 400
    assert "192.168.1.61" not in found


@pytest.mark.parametrize(("reply", "listname"), [
    ("host mx.example.net[198.51.100.9] said: 554 5.7.1 Service unavailable; Client host [203.0.113.10] "
     "blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/203.0.113.10 (in reply to RCPT TO command)",
     "zen.spamhaus.org"),
    ("host mx.example.org[192.0.2.7] said: 550 5.7.1 Blocked - see https://www.spamcop.net/bl.shtml?203.0.113.10 "
     "(in reply to RCPT TO command)", "bl.spamcop.net"),
])
def test_blocklisted(tmp_path: Path, reply: str, listname: str) -> None:
    log = LogBuilder()
    baseline(log, hours=2)
    for i in range(5):
        log.message("203.0.113.10", user="alice", sender="alice@ourdomain.example",
                    rcpts=[f"p{i}@example.net"], status="bounced", reason=reply)
    a = run(tmp_path, log)
    f = findings(a, "blocklisted")[listname]
    assert f.evidence["rejections"] == 5
    assert f.severity in ("high", "critical")


def test_ordinary_bounces_are_not_blocklisting(tmp_path: Path) -> None:
    log = LogBuilder()
    for i in range(20):
        log.message("203.0.113.10", user="alice", rcpts=[f"gone{i}@example.net"], status="bounced")
    a = run(tmp_path, log)
    assert "blocklisted" not in {f.kind for f in a.findings}


def test_queue_surge(tmp_path: Path) -> None:
    log = LogBuilder()
    for i in range(260):
        log.message("192.168.122.111", name="gateway", sender="a@b.example", rcpts=[f"r{i}@d{i}.example"],
                    status="deferred")
        log.advance(1)
    cfg = config.defaults()
    a = analyze([str(log.write(tmp_path / "mail.log"))], cfg, TRUSTED, 2026)
    surge = [f for f in a.findings if f.kind == "queue_surge"]
    assert surge and surge[0].evidence["peak"] == 260


def test_same_queue_id_on_two_hosts_stays_two_messages(tmp_path: Path) -> None:
    from relayguard.correlate import Correlator
    from relayguard.parse import LineParser

    lines = [
        "Jun 21 08:00:00 mx1 postfix/smtpd[1]: 1A2B3C4D5E: client=unknown[203.0.113.1], sasl_method=LOGIN, sasl_username=a",
        "Jun 21 08:00:01 mx2 postfix/smtpd[2]: 1A2B3C4D5E: client=unknown[203.0.113.2], sasl_method=LOGIN, sasl_username=b",
        "Jun 21 08:00:02 mx1 postfix/qmgr[3]: 1A2B3C4D5E: from=<a@x.example>, size=1, nrcpt=1 (queue active)",
        "Jun 21 08:00:03 mx2 postfix/qmgr[4]: 1A2B3C4D5E: from=<b@x.example>, size=1, nrcpt=1 (queue active)",
        "Jun 21 08:00:04 mx1 postfix/qmgr[3]: 1A2B3C4D5E: removed",
        "Jun 21 08:00:05 mx2 postfix/smtp[5]: 1A2B3C4D5E: to=<r@y.example>, relay=y[1.2.3.4]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (ok)",
        "Jun 21 08:00:06 mx2 postfix/qmgr[4]: 1A2B3C4D5E: removed",
    ]
    p, c = LineParser(year=2026), Correlator()
    done = [m for m in (c.feed(e) for e in map(p.parse, lines) if e) if m is not None]
    assert [(m.host, m.sasl_username, m.sender, len(m.recipients)) for m in done] == [
        ("mx1", "a", "a@x.example", 0), ("mx2", "b", "b@x.example", 1)]
    assert c.open == {}


def test_hacked_web_form_submitting_through_sendmail(tmp_path: Path) -> None:
    log = LogBuilder()
    baseline(log, hours=6)
    for _ in range(5):  # the site's contact form on a normal day
        log.local_message(33, "www-data@mail.ourdomain.example", ["contact@ourdomain.example"])
        log.advance(1800)
    for i in range(150):  # then a burst of spam through the same uid
        log.local_message(33, f"promo{i % 20}@shop{i % 7}.example", [f"v{i}@t{i % 40}.example"],
                          status="deferred" if i % 2 else "sent")
        log.advance(10)
    a = run(tmp_path, log)
    f = findings(a, "local_submission")["uid 33"]
    assert f.severity in ("high", "critical")
    assert f.evidence["messages"] == 155 and f.evidence["uid"] == "33"
    assert "authorized_submit_users" in " ".join(f.advice)


def test_contact_form_alone_is_not_flagged(tmp_path: Path) -> None:
    log = LogBuilder()
    for _ in range(30):
        log.local_message(33, "www-data@mail.ourdomain.example", ["contact@ourdomain.example"])
        log.advance(1800)
    assert "local_submission" not in {f.kind for f in run(tmp_path, log).findings}
