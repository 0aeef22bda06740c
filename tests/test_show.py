"""`relayguard show user|ip`: on the bundled simulated incident, and on a real Postfix with mail
still in its queue."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness import DEFER, PostfixCase, recipients_in
from pfguard import system_env

EXAMPLE = Path(__file__).parent.parent / "examples" / "incident.log"
LABELS = json.loads((EXAMPLE.parent / "incident.labels.json").read_text())


def show(*args: str) -> tuple[int, dict[str, Any]]:
    p = subprocess.run([sys.executable, "-m", "relayguard", "show", *args, "--format", "json"],
                       capture_output=True, text=True, timeout=120, env=system_env(TZ="UTC"))
    assert p.returncode in (0, 1), p.stderr
    return p.returncode, json.loads(p.stdout)


def culprit(kind: str) -> dict[str, Any]:
    return next(c for c in LABELS["culprits"] if c["kind"] == kind and not c.get("distributed"))


def test_show_user_names_the_guess_and_the_burst(tmp_path: Path) -> None:
    truth = culprit("compromised_account")
    rc, doc = show("user", truth["subject"], str(EXAMPLE), "--year", "2026", "--no-queue",
                   "--state", str(tmp_path / "none.db"))
    assert rc == 1
    f = next(x for x in doc["findings"] if x["kind"] == "compromised_account")
    assert f["severity"] == "critical"
    assert f["evidence"]["guessed_from"] == truth["guessed_from"]
    assert "password guessed" in f["summary"] and "burst of" in f["summary"]
    logins = {x["key"]: x for x in doc["logins"]}
    assert truth["guessed_from"] in logins
    first_login = min(doc["logins"], key=lambda x: x["first"])
    assert first_login["key"] == truth["guessed_from"]  # the guess came before the burst
    assert doc["messages"]["total"] == f["evidence"]["messages"]
    assert doc["messages"]["client_ips"] >= 10
    assert any("no state database" in n for n in doc["notes"])


def test_show_ip_of_the_guesser(tmp_path: Path) -> None:
    ip = culprit("compromised_account")["guessed_from"]
    rc, doc = show("ip", ip, str(EXAMPLE), "--year", "2026", "--no-queue", "--state", str(tmp_path / "x.db"))
    assert rc == 1
    brute = next(x for x in doc["findings"] if x["kind"] == "auth_bruteforce")
    assert brute["evidence"]["succeeded_as"] == "admin"
    assert doc["auth_failures"]["total"] == brute["evidence"]["failures"]
    assert "admin" in [k for k, _ in doc["auth_failures"]["by"]]
    assert [x["key"] for x in doc["logins"]] == ["admin"]


def test_show_ip_of_the_trusted_relay(tmp_path: Path) -> None:
    ip = culprit("trusted_host_relay")["subject"]
    rc, doc = show("ip", ip, str(EXAMPLE), "--year", "2026", "--no-queue", "--state", str(tmp_path / "x.db"))
    assert rc == 1
    assert doc["findings"][0]["kind"] == "trusted_host_relay"
    assert doc["messages"]["total"] == doc["findings"][0]["evidence"]["messages"]
    assert doc["messages"]["without_message_id"] == doc["messages"]["total"]


def test_show_text_and_bad_address() -> None:
    p = subprocess.run([sys.executable, "-m", "relayguard", "show", "user", "admin", str(EXAMPLE),
                        "--year", "2026", "--no-queue"], capture_output=True, text=True, timeout=120,
                       env=system_env())
    assert "compromised_account" in p.stdout and "Logins from each address" in p.stdout
    p = subprocess.run([sys.executable, "-m", "relayguard", "show", "ip", "not-an-ip", str(EXAMPLE)],
                       capture_output=True, text=True, timeout=60, env=system_env())
    assert p.returncode == 2 and "Traceback" not in p.stderr


@pytest.mark.postfix
def test_show_user_on_real_postfix_with_queued_mail(postfix: PostfixCase, tmp_path: Path) -> None:
    user = "walter"
    postfix.internet.set_mode(DEFER)
    results = postfix.send(source_ip="127.0.5.3", user=user, password=postfix.instance.password(user),
                           sender=f"{user}@{postfix.domain}",
                           recipients=recipients_in(["far.example", "away.example"], 2), count=3)
    assert all(r.ok for r in results)
    postfix.settle()
    log = postfix.save_log()
    rc, doc = show("user", user, str(log), "--config-dir", str(postfix.instance.config_dir),
                   "--year", str(time.localtime().tm_year), "--state", str(tmp_path / "s.db"))
    assert doc["queued"]["messages"] == 3, doc
    assert doc["queued"]["by_queue"].get("deferred", 0) + doc["queued"]["by_queue"].get("active", 0) == 3
    assert [x["key"] for x in doc["logins"]] == ["127.0.5.3"]
    assert doc["messages"]["total"] == 3 and doc["messages"]["deferred"] == 3
    rc, doc = show("ip", "127.0.5.3", str(log), "--config-dir", str(postfix.instance.config_dir),
                   "--year", str(time.localtime().tm_year), "--state", str(tmp_path / "s.db"))
    assert doc["queued"]["messages"] == 3
    assert [x["key"] for x in doc["logins"]] == [postfix.instance.login_name(user)]


def test_instance_defaults_come_from_its_config_dir(postfix_requirements: None,
                                                   tmp_path: Path) -> None:
    """`show --config-dir` and `[watch] postfix_config_dir`: mynetworks and maillog_file are
    read with `postconf -c DIR` (the guard fails this test if either call lacks -c)."""
    from relayguard import config
    from relayguard.postfix.mynetworks import resolve_trusted
    from relayguard.sources.files import default_logs

    maillog = tmp_path / "maillog"
    maillog.write_text("")
    (tmp_path / "main.cf").write_text(
        "compatibility_level = 3.6\n"
        f"mynetworks = 10.9.0.0/16, cidr:{tmp_path}/t.cidr [2001:db8::]/32\n"
        f"maillog_file = {maillog}\n")
    (tmp_path / "t.cidr").write_text("192.0.2.0/24 OK\n")
    trusted = resolve_trusted(config.load({}), None, str(tmp_path)).contains
    assert [trusted(ip) for ip in ("10.9.3.4", "192.0.2.7", "2001:db8::1", "10.8.0.1")] == [
        True, True, True, False]
    assert default_logs(str(tmp_path)) == [str(maillog)]
