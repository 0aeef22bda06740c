"""End to end: real SMTP traffic through a real Postfix, then ``relayguard analyze`` on the log
lines that traffic produced (each test analyzes only its own slice of the shared maillog).

Every scenario uses its own users and 127.x source addresses, so a slice holds one story.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness import BLOCKLIST, DEFER, PostfixCase, connect, recipients_in, run_parallel, send_on

pytestmark = pytest.mark.postfix

HIGH = {"high", "critical"}


def analyze(log: Path, trusted: str, *extra: str) -> dict[str, Any]:
    """``relayguard analyze --format json --trusted TRUSTED`` on ``log``; the parsed report."""
    argv = [
        sys.executable, "-m", "relayguard", "analyze", "--format", "json",
        "--trusted", trusted, "--year", str(time.localtime().tm_year),
        *extra, str(log),
    ]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if r.returncode not in (0, 1):
        pytest.fail(
            f"relayguard analyze exited {r.returncode}\nstderr:\n{r.stderr}\nstdout:\n"
            f"{r.stdout[:2000]}", pytrace=False,
        )
    try:
        report = json.loads(r.stdout)
    except json.JSONDecodeError as exc:
        pytest.fail(f"analyze printed no JSON ({exc}):\n{r.stdout[:2000]}\n{r.stderr}", False)
    assert report.get("schema") == "relayguard.analysis/1", report.get("schema")
    has_high = any(f["severity"] in HIGH for f in report["findings"])
    assert r.returncode == (1 if has_high else 0), "exit code does not match the findings"
    return report


def analyze_case(postfix: PostfixCase) -> tuple[dict[str, Any], Path]:
    """Settle the queue, save this test's log slice, analyze it."""
    postfix.settle()
    log = postfix.save_log()
    return analyze(log, postfix.instance.mynetworks), log


def findings(report: dict[str, Any], kind: str, subject: str | None = None) -> list[dict]:
    return [
        f for f in report["findings"]
        if f["kind"] == kind and (subject is None or f["subject"] == subject)
    ]


def explain(report: dict[str, Any], log: Path, pattern: str = "") -> str:
    """Failure text: the findings the analyzer returned and the relevant real log lines."""
    lines = [ln for ln in log.read_text().splitlines() if pattern in ln][:40]
    brief = [
        {k: f.get(k) for k in ("kind", "subject", "severity", "score", "summary", "evidence")}
        for f in report["findings"]
    ]
    return (
        f"\nanalyzer findings: {json.dumps(brief, indent=1)[:6000]}"
        f"\ntotals: {report.get('totals')}\nlog ({log}) lines with {pattern!r}:\n"
        + "\n".join(lines)
    )


def test_compromised_account_many_ips_burst(postfix: PostfixCase) -> None:
    """One account logs in from 12 addresses and sends 36 messages to 24 outside domains, a
    quarter of them deferred by the remote side."""
    user = "victor"
    password = postfix.instance.password(user)
    domains = [f"target{i:02d}.example" for i in range(24)]
    postfix.internet.set_mode(DEFER, domains=domains[::4])
    ips = [f"127.0.3.{i}" for i in range(1, 13)]
    calls = [
        functools.partial(
            postfix.send, source_ip=ip, user=user, password=password,
            sender=f"{user}@{postfix.domain}",
            recipients=recipients_in(domains[(n * 2) % 24:] + domains, 2), count=3,
            subject="Invoice overdue",
        )
        for n, ip in enumerate(ips)
    ]
    results = [r for batch in run_parallel(calls, workers=4) for r in batch]
    assert len(results) == 36 and all(r.queue_id for r in results)

    report, log = analyze_case(postfix)
    login = postfix.instance.login_name(user)
    found = findings(report, "compromised_account", login)
    assert found, "no compromised_account for " + login + explain(report, log, "sasl_username")
    assert found[0]["severity"] in HIGH, explain(report, log, "sasl_username")


def test_compromised_account_after_failed_logins(postfix: PostfixCase) -> None:
    """Six wrong passwords for several users from one address, then the right password for
    one of them, who sends a few messages out: the guessed account is critical."""
    ip = "127.0.4.1"
    for user in ("oscar", "peggy", "trent", "walter", "oscar", "trent"):
        assert not postfix.try_login(user=user, password="Password123", source_ip=ip)
    victim = "trent"
    results = postfix.send(
        source_ip=ip, user=victim, password=postfix.instance.password(victim),
        sender=f"{victim}@{postfix.domain}",
        recipients=recipients_in([f"buyer{i}.example" for i in range(6)], 6), count=4,
    )
    assert all(r.ok for r in results)

    report, log = analyze_case(postfix)
    login = postfix.instance.login_name(victim)
    found = findings(report, "compromised_account", login)
    assert found, "no compromised_account for " + login + explain(report, log, "127.0.4.1")
    assert found[0]["severity"] == "critical", explain(report, log, "127.0.4.1")


def test_trusted_host_relays_spam(postfix: PostfixCase) -> None:
    """A host inside mynetworks relays 24 messages, no AUTH, no Message-ID, 12 domains, and
    the remote side defers them."""
    ip = "127.0.0.12"
    postfix.internet.set_mode(DEFER)
    domains = [f"mark{i:02d}.example" for i in range(12)]
    calls = [
        functools.partial(
            postfix.send, source_ip=ip, sender=f"promo{n}@deals{n % 3}.example",
            recipients=recipients_in(domains[n % 12:] + domains, 2), count=4,
            message_id=False, subject="Cheap meds",
        )
        for n in range(6)
    ]
    results = [r for batch in run_parallel(calls, workers=3) for r in batch]
    assert len(results) == 24 and all(r.ok for r in results)
    queue = postfix.settle()
    assert len(queue) == 24 and {m["queue_name"] for m in queue} == {"deferred"}

    log = postfix.save_log()
    assert sum("message-id=<>" in ln for ln in postfix.lines()) == 24
    report = analyze(log, postfix.instance.mynetworks)
    found = findings(report, "trusted_host_relay", ip)
    assert found, "no trusted_host_relay for " + ip + explain(report, log, ip)


def test_auth_bruteforce(postfix: PostfixCase) -> None:
    """Twelve failed logins over six usernames from one address."""
    ip = "127.0.5.1"
    tried = ["admin", "info", "sales", "test", "webmaster", "mallory"]
    calls = [
        functools.partial(postfix.try_login, user=u, password=f"guess{n}", source_ip=ip,
                          mechanism="LOGIN" if n % 2 else "PLAIN")
        for n, u in enumerate(tried * 2)
    ]
    assert not any(run_parallel(calls, workers=3))

    report, log = analyze_case(postfix)
    found = findings(report, "auth_bruteforce", ip)
    assert found, "no auth_bruteforce for " + ip + explain(report, log, "SASL")
    usernames = set(found[0]["evidence"].get("usernames", []))
    expected = {postfix.instance.login_name(u) for u in tried}  # as the log spells them
    assert expected <= usernames, explain(report, log, "SASL")


def test_blocklisted_by_remote_sites(postfix: PostfixCase) -> None:
    """Remote sites refuse our mail with a Spamhaus blocklist text."""
    postfix.internet.set_mode(BLOCKLIST)
    calls = [
        functools.partial(
            postfix.send, source_ip=ip, user=user, password=postfix.instance.password(user),
            sender=f"{user}@{postfix.domain}",
            recipients=recipients_in([f"partner{i}.example" for i in range(4)], 2), count=2,
        )
        for ip, user in (("127.0.6.1", "heidi"), ("127.0.6.2", "ivan"), ("127.0.6.3", "judy"))
    ]
    assert all(r.ok for batch in run_parallel(calls, workers=3) for r in batch)

    report, log = analyze_case(postfix)
    assert sum("blocked using zen.spamhaus.org" in ln for ln in postfix.lines()) >= 12
    found = findings(report, "blocklisted", "zen.spamhaus.org")
    assert found, "no blocklisted finding for zen.spamhaus.org" + explain(report, log, "status=")


def test_benign_traffic_raises_no_alarm(postfix: PostfixCase) -> None:
    """Ordinary users (1-2 addresses each, a few messages) and a legitimate bulk sender inside
    mynetworks (one sender address, proper Message-IDs): nothing at high or critical."""
    users = {
        "alice": ["127.0.7.1", "127.0.7.2"],
        "bob": ["127.0.7.3"],
        "carol": ["127.0.7.4", "127.0.7.5"],
        "dave": ["127.0.7.6"],
        "erin": ["127.0.7.7"],
    }
    calls = []
    for n, (user, ips) in enumerate(users.items()):
        for k, ip in enumerate(ips):
            calls.append(functools.partial(
                postfix.send, source_ip=ip, user=user,
                password=postfix.instance.password(user), sender=f"{user}@{postfix.domain}",
                recipients=[f"colleague{n}@partner{k}.example", f"{user}-friend@mail.example"],
                count=2, subject=f"Meeting notes {n}",
            ))
    # Local mail between users, from outside and inside.
    calls.append(functools.partial(
        postfix.send, source_ip="127.0.7.8", sender="customer@shop.example",
        recipients=[f"info@{postfix.domain}", f"alice@{postfix.domain}"], count=2,
    ))
    # A newsletter host in mynetworks: one sender, Message-IDs, one recipient per message.
    subscribers = recipients_in([f"reader{i}.example" for i in range(8)], 20)
    for chunk in (subscribers[:10], subscribers[10:]):
        calls.append(functools.partial(_newsletter, postfix, "127.0.0.3", chunk))
    run_parallel(calls, workers=4)

    report, log = analyze_case(postfix)
    alarms = [f for f in report["findings"] if f["severity"] in HIGH]
    assert not alarms, "false alarm on benign traffic" + explain(report, log, "client=")


def _newsletter(postfix: PostfixCase, ip: str, recipients: list[str]) -> None:
    smtp = connect(postfix.address, ip, helo="lists.relayguard.test")
    try:
        for rcpt in recipients:
            res = send_on(smtp, f"newsletter@{postfix.domain}", [rcpt],
                          subject="Monthly news", message_id=True)
            assert res.ok, res
    finally:
        smtp.quit()
