"""`relayguard audit` on deliberately bad and hardened configuration directories.

Everything goes through the real ``postconf -c DIR`` (main.cf defaults, compatibility level,
``-o`` overrides of master.cf): a directory with just main.cf and master.cf is enough, no
Postfix has to run.  The fixes are real too: every ``postconf`` line a finding proposes is run
on a copy, and the copy is audited again.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from relayguard.audit.checks.mynetworks import classify, listed_networks
from relayguard.audit.dovecot import available as doveconf_available
from relayguard.audit.engine import audit_config
from relayguard.postfix import restrictions as rx
from relayguard.postfix.postconf import PostconfError
from relayguard.postfix.programs import find_program

pytestmark = pytest.mark.skipif(find_program("postconf") is None, reason="postfix not installed")

BASE = """\
compatibility_level = 3.6
myhostname = mx.example.com
mydomain = example.com
mydestination = $myhostname, localhost, $mydomain
"""

HARDENED_MAIN = BASE + """\
mynetworks = 127.0.0.0/8 [::1]/128 192.168.10.25/32
smtpd_helo_required = yes
disable_vrfy_command = yes
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = reject_unauth_pipelining, reject_unauth_destination,
    check_policy_service { inet:127.0.0.1:10031, default_action=DUNNO }
smtpd_sasl_auth_enable = no
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_security_options = noanonymous, noplaintext
smtpd_sasl_tls_security_options = noanonymous
smtpd_tls_chain_files = /etc/ssl/private/mail.pem
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_sender_login_maps = hash:/etc/postfix/sender_login
smtpd_client_message_rate_limit = 60
smtpd_client_recipient_rate_limit = 300
smtpd_client_auth_rate_limit = 30
"""

HARDENED_MASTER = """\
smtp      inet  n       -       y       -       1       postscreen
smtpd     pass  -       -       y       -       -       smtpd
dnsblog   unix  -       -       y       -       0       dnsblog
tlsproxy  unix  -       -       y       -       0       tlsproxy
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sender_restrictions=reject_authenticated_sender_login_mismatch
submissions inet n      -       y       -       -       smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sender_restrictions=reject_authenticated_sender_login_mismatch
127.0.0.1:10025 inet n  -       n       -       -       smtpd
  -o smtpd_client_restrictions=permit_mynetworks,reject
  -o smtpd_relay_restrictions=permit_mynetworks,reject
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
"""

# Everything the seeds warn about, at once.
BAD_MAIN = BASE + """\
mynetworks = 127.0.0.0/8 10.0.0.0/8 0.0.0.0/0 203.0.113.0/24 198.51.100.7/32
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, permit, reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_sasl_auth_enable = yes
smtpd_sasl_security_options =
smtpd_tls_auth_only = no
smtpd_tls_security_level = may
disable_vrfy_command = no
allow_untrusted_routing = yes
smtpd_reject_unlisted_recipient = no
"""

PLAIN_MASTER = """\
smtp      inet  n       -       y       -       -       smtpd
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
"""

ONLY_SMTP_MASTER = """\
smtp      inet  n       -       y       -       -       smtpd
pickup    unix  n       -       y       60      1       pickup
"""

SAFE = "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"


def backdate(directory: Path) -> None:
    """postconf re-reads a file changed within the last second until it is older (~2 s)."""
    old = time.time() - 60
    for name in ("main.cf", "master.cf"):
        if (directory / name).exists():
            os.utime(directory / name, (old, old))


def make_dir(parent: Path, main: str, master: str, name: str = "postfix") -> Path:
    d = parent / name
    d.mkdir()
    (d / "main.cf").write_text(textwrap.dedent(main))
    (d / "master.cf").write_text(textwrap.dedent(master))
    backdate(d)
    return d


def ids(report) -> set[str]:
    return {f.id for f in report.findings}


def severe(report) -> list[str]:
    return [f"{f.severity} {f.id}: {f.title}" for f in report.findings
            if f.severity in ("critical", "high")]


def rg(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relayguard", *args], capture_output=True,
                          text=True, input=stdin, timeout=60)


def apply_fixes(report, directory: Path) -> int:
    """Run every postconf line of every fix (argv lists, no shell); how many ran."""
    ran = 0
    for f in report.findings:
        for line in f.fix.splitlines():
            if line.startswith("postconf "):
                argv = shlex.split(line)
                assert argv[1:3] == ["-c", str(directory)], line  # aimed at the audited dir
                subprocess.run([find_program("postconf") or "postconf", *argv[1:]], check=True,
                               capture_output=True, text=True, timeout=30)
                ran += 1
    backdate(directory)
    return ran


# --------------------------------------------------------------------------- whole configurations
def test_hardened_configuration_is_clean(tmp_path: Path) -> None:
    d = make_dir(tmp_path, HARDENED_MAIN, HARDENED_MASTER)
    report = audit_config(str(d), dovecot=None)
    assert severe(report) == []
    assert report.findings == [], [f.id for f in report.findings]
    roles = {s.service: (s.role, s.exposure, s.sasl) for s in report.services}
    assert roles == {
        "smtpd/pass": ("mx", "public", False),  # port 25 through postscreen
        "submission/inet": ("submission", "public", True),
        "submissions/inet": ("smtps", "public", True),
        "127.0.0.1:10025/inet": ("other", "local", False),
    }
    r = rg("audit", "--config-dir", str(d), "--no-dovecot")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no findings" in r.stdout


def test_bad_configuration_reports_every_door(tmp_path: Path) -> None:
    d = make_dir(tmp_path, BAD_MAIN, PLAIN_MASTER)
    report = audit_config(str(d), dovecot=None)
    found = {(f.id, f.severity) for f in report.findings}
    for expected in [
        ("wide_mynetworks", "critical"), ("open_relay", "critical"),
        ("auth_on_port_25", "high"), ("plaintext_auth", "high"), ("anonymous_auth", "high"),
        ("untrusted_routing", "high"),
        ("no_sender_login_check", "medium"), ("no_rate_limit", "medium"),
        ("broad_mynetworks", "medium"), ("submission_accepts_unauthenticated", "medium"),
        ("backscatter", "medium"),
        ("vrfy_enabled", "low"), ("helo_not_required", "low"), ("public_mynetworks", "low"),
        ("no_auth_rate_limit", "low"),
    ]:
        assert expected in found, (expected, sorted(found))
    wide = next(f for f in report.findings if f.id == "wide_mynetworks")
    assert "0.0.0.0/0" in wide.detail and "10.0.0.0/8" not in wide.detail
    relay = next(f for f in report.findings if f.id == "open_relay")
    # One finding for both smtpd services: the cause is main.cf's.
    assert relay.service == "smtp/inet, submission/inet"
    assert "permits (permit)" in relay.detail
    assert relay.fix == f"postconf -c {d} -e 'smtpd_relay_restrictions = {SAFE}'"
    for f in report.findings:
        assert f.fix and f.detail and f.title
        assert set(f.to_dict()) == {"id", "severity", "title", "detail", "fix", "service"}


def test_fixes_remove_every_high_and_critical_finding(tmp_path: Path) -> None:
    d = make_dir(tmp_path, BAD_MAIN, PLAIN_MASTER)
    before = audit_config(str(d), dovecot=None)
    assert len(severe(before)) >= 6
    assert apply_fixes(before, d) >= 10
    after = audit_config(str(d), dovecot=None)
    assert severe(after) == []
    # Port 25 lost AUTH, the submission service kept it.
    sasl = {s.service: s.sasl for s in after.services}
    assert sasl == {"smtp/inet": False, "submission/inet": True}


def test_auth_on_port_25_without_submission_adds_one(tmp_path: Path) -> None:
    d = make_dir(tmp_path, BASE + "smtpd_sasl_auth_enable = yes\nsmtpd_tls_auth_only = yes\n"
                 "smtpd_tls_security_level = may\n", ONLY_SMTP_MASTER)
    report = audit_config(str(d), dovecot=None)
    fix = next(f for f in report.findings if f.id == "auth_on_port_25").fix
    assert f"postconf -c {d} -M 'submission/inet=submission inet n - y - - smtpd'" in fix
    apply_fixes(report, d)
    after = audit_config(str(d), dovecot=None)
    assert severe(after) == []
    sub = next(s for s in after.services if s.service == "submission/inet")
    assert (sub.listen, sub.role, sub.sasl) == ("port 587", "submission", True)
    master = (d / "master.cf").read_text()
    assert "-o smtpd_client_restrictions=permit_sasl_authenticated,reject" in master


def test_cli_exit_code_and_json(tmp_path: Path) -> None:
    d = make_dir(tmp_path, BAD_MAIN, PLAIN_MASTER)
    r = rg("audit", "--config-dir", str(d), "--no-dovecot", "--format", "json")
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    assert data["schema"] == "relayguard.audit/1"
    assert data["config_dir"] == str(d) and data["mail_version"]
    assert data["counts"]["critical"] >= 2
    assert [f["severity"] for f in data["findings"]] == sorted(
        (f["severity"] for f in data["findings"]),
        key=["critical", "high", "medium", "low"].index)
    text = rg("audit", "--config-dir", str(d), "--no-dovecot")
    assert text.returncode == 1
    # Fix commands are printed whole on one line each, ready to copy.
    assert f"postconf -c {d} -e 'allow_untrusted_routing = no'" in text.stdout


def test_config_ignore_list(tmp_path: Path) -> None:
    d = make_dir(tmp_path, HARDENED_MAIN.replace("disable_vrfy_command = yes",
                                                 "disable_vrfy_command = no"), HARDENED_MASTER)
    conf = tmp_path / "relayguard.toml"
    conf.write_text('[audit]\nignore = ["vrfy_enabled"]\n')
    shown = rg("audit", "--config-dir", str(d), "--no-dovecot", "--format", "json")
    assert [f["id"] for f in json.loads(shown.stdout)["findings"]] == ["vrfy_enabled"]
    hidden = rg("audit", "--config-dir", str(d), "--no-dovecot", "--format", "json",
                "--config", str(conf))
    assert json.loads(hidden.stdout)["findings"] == []


@pytest.mark.parametrize("setup, message", [
    ("missing", "not a directory"),
    ("empty", "no main.cf"),
])
def test_cli_bad_config_dir(tmp_path: Path, setup: str, message: str) -> None:
    d = tmp_path / "conf"
    if setup == "empty":
        d.mkdir()
    r = rg("audit", "--config-dir", str(d))
    assert r.returncode == 2
    assert r.stderr.startswith("relayguard: error: ") and message in r.stderr
    assert "Traceback" not in r.stderr
    with pytest.raises(PostconfError):
        audit_config(str(d), dovecot=None)


# --------------------------------------------------------------------------- single doors
def _one(tmp_path: Path, main: str, master: str = PLAIN_MASTER):
    return audit_config(str(make_dir(tmp_path, BASE + main, master)), dovecot=None)


GOOD_AUTH = """\
smtpd_sasl_auth_enable = no
smtpd_sasl_security_options = noanonymous
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
"""


@pytest.mark.parametrize("relay, recipient", [
    ("permit, reject_unauth_destination", ""),
    ("permit_mynetworks, warn_if_reject reject_unauth_destination", ""),
    ("permit_naked_ip_address, reject_unauth_destination", ""),
    ("permit_mynetworks, permit_sasl_authenticated", "permit, reject_unauth_destination"),
])
def test_open_relay_variants(tmp_path: Path, relay: str, recipient: str) -> None:
    report = _one(tmp_path, GOOD_AUTH + f"mynetworks = 127.0.0.0/8\n"
                  f"smtpd_relay_restrictions = {relay}\n"
                  f"smtpd_recipient_restrictions = {recipient}\n")
    assert [f.severity for f in report.findings if f.id == "open_relay"] == ["critical"]


def test_open_relay_only_on_the_overriding_service(tmp_path: Path) -> None:
    master = PLAIN_MASTER.replace(
        "  -o smtpd_sasl_auth_enable=yes\n",
        "  -o smtpd_sasl_auth_enable=yes\n"
        "  -o smtpd_relay_restrictions=permit_sasl_authenticated,permit,reject_unauth_destination\n")
    report = _one(tmp_path, GOOD_AUTH + f"mynetworks = 127.0.0.0/8\nsmtpd_relay_restrictions = {SAFE}\n",
                  master)
    (relay,) = [f for f in report.findings if f.id == "open_relay"]
    assert relay.service == "submission/inet"
    # The fix goes where the cause is: the service's -o override.
    assert relay.fix.endswith(
        "-P submission/inet/smtpd_relay_restrictions=permit_mynetworks,"
        "permit_sasl_authenticated,reject_unauth_destination")


def test_spoofable_and_policy_before_relay_check(tmp_path: Path) -> None:
    spoof = _one(tmp_path, GOOD_AUTH + "mynetworks = 127.0.0.0/8\nsmtpd_relay_restrictions = "
                 "check_sender_access hash:/etc/postfix/vip, reject_unauth_destination\n")
    (f,) = [f for f in spoof.findings if f.id == "spoofable_relay_permit"]
    assert f.severity == "high" and "check_sender_access hash:/etc/postfix/vip" in f.detail
    assert "open_relay" not in ids(spoof)
    (tmp_path / "2").mkdir()
    policy = _one(tmp_path / "2", GOOD_AUTH + "mynetworks = 127.0.0.0/8\nsmtpd_relay_restrictions"
                  " = permit_mynetworks, check_policy_service inet:127.0.0.1:10031, "
                  "reject_unauth_destination\n")
    assert ("policy_before_relay_check", "medium") in {(f.id, f.severity) for f in policy.findings}
    assert "no_rate_limit" not in ids(policy)  # a policy service counts as a limit


def test_no_relay_check_at_all(tmp_path: Path) -> None:
    report = _one(tmp_path, GOOD_AUTH + "smtpd_relay_restrictions = permit_mynetworks\n"
                  "smtpd_recipient_restrictions = permit_sasl_authenticated\n")
    assert "no_relay_check" in ids(report) and "open_relay" not in ids(report)


def test_implicit_mynetworks_class_style(tmp_path: Path) -> None:
    report = _one(tmp_path, GOOD_AUTH + "mynetworks_style = class\n")
    (f,) = [f for f in report.findings if f.id == "implicit_mynetworks"]
    assert f.severity == "high" and "-e 'mynetworks = 127.0.0.0/8 [::1]/128'" in f.fix


def test_loopback_listener_open_relay_is_low(tmp_path: Path) -> None:
    master = ONLY_SMTP_MASTER + ("127.0.0.1:10025 inet n - n - - smtpd\n"
                                 "  -o smtpd_relay_restrictions=permit,reject_unauth_destination\n")
    report = _one(tmp_path, GOOD_AUTH + f"mynetworks = 127.0.0.0/8\n"
                  f"smtpd_relay_restrictions = {SAFE}\n", master)
    (f,) = [f for f in report.findings if f.id == "open_relay"]
    assert f.severity == "low" and f.service == "127.0.0.1:10025/inet"


def test_postscreen_pass_service_is_port_25(tmp_path: Path) -> None:
    master = ("smtp inet n - y - 1 postscreen\nsmtpd pass - - y - - smtpd\n"
              "  -o smtpd_sasl_auth_enable=yes\n")
    report = _one(tmp_path, GOOD_AUTH + "mynetworks = 127.0.0.0/8\n", master)
    (f,) = [f for f in report.findings if f.id == "auth_on_port_25"]
    assert f.service == "smtpd/pass"
    assert f.fix == f"postconf -c {tmp_path / 'postfix'} -P smtpd/pass/smtpd_sasl_auth_enable=no"


def test_submission_with_mynetworks_but_no_login(tmp_path: Path) -> None:
    master = PLAIN_MASTER.replace(
        "  -o smtpd_sasl_auth_enable=yes\n",
        "  -o smtpd_sasl_auth_enable=yes\n  -o smtpd_tls_security_level=encrypt\n"
        "  -o smtpd_client_restrictions=permit_mynetworks,permit_sasl_authenticated,reject\n")
    report = _one(tmp_path, GOOD_AUTH + "mynetworks = 127.0.0.0/8\n", master)
    assert "permit_mynetworks_on_submission" in ids(report)
    assert "submission_accepts_unauthenticated" not in ids(report)
    assert "plaintext_auth" not in ids(report)  # encrypt on submission: AUTH only after TLS


# --------------------------------------------------------------------------- pieces
def test_restriction_lists() -> None:
    items = rx.split("permit_mynetworks, check_sender_access hash:/x, check_policy_service "
                     "{ inet:127.0.0.1:1, default_action=DUNNO }, reject_rbl_client zen.spamhaus.org"
                     " reject_unauth_destination")
    assert items == ["permit_mynetworks", "check_sender_access hash:/x",
                     "check_policy_service { inet:127.0.0.1:1, default_action=DUNNO }",
                     "reject_rbl_client zen.spamhaus.org", "reject_unauth_destination"]
    d = rx.decide("smtpd_relay_restrictions", ", ".join(items), rx.STRANGER)
    assert d.result == "block" and d.item == "reject_unauth_destination"
    assert rx.decide("x", "permit_mynetworks, reject", rx.Client(trusted=True)).result == "permit"
    assert rx.decide("x", "reject_unauth_destination",
                     rx.Client(local_destination=True)).result == "dunno"


def test_mynetworks_classification(tmp_path: Path) -> None:
    table = tmp_path / "relay.cidr"
    table.write_text("# trusted relays\n192.168.1.7/32 OK\n100.64.0.0/10 OK\n")
    nets, unchecked = listed_networks(f"127.0.0.0/8 [::1]/128 !192.168.1.9 cidr:{table} "
                                     f"hash:/etc/postfix/net mail.example.com [fe80::]/10")
    kinds = {text: classify(net) for text, net in nets}
    assert kinds == {"127.0.0.0/8": "ok", "[::1]/128": "ok", "192.168.1.7/32": "ok",
                     "100.64.0.0/10": "wide", "[fe80::]/10": "broad"}
    assert unchecked == ["hash:/etc/postfix/net", "mail.example.com"]


# --------------------------------------------------------------------------- dovecot
needs_doveconf = pytest.mark.skipif(not doveconf_available(), reason="doveconf not installed "
                                    "(apt-get install dovecot-core)")

DOVECOT_BAD = """\
protocols = imap pop3
ssl = no
disable_plaintext_auth = no
"""
DOVECOT_STARTTLS = """\
protocols = imap pop3
ssl = yes
ssl_cert = </etc/dovecot/private/dovecot.pem
ssl_key = </etc/dovecot/private/dovecot.key
"""


@needs_doveconf
@pytest.mark.parametrize("conf, expected", [
    (DOVECOT_BAD, [("plaintext_imap_pop", "high")]),
    (DOVECOT_STARTTLS, [("imap_pop_plain_ports", "low")]),
], ids=["plaintext", "starttls-only"])
def test_dovecot_plaintext(tmp_path: Path, conf: str, expected: list) -> None:
    pf = make_dir(tmp_path, HARDENED_MAIN, HARDENED_MASTER)
    dc = tmp_path / "dovecot.conf"
    dc.write_text(conf)
    report = audit_config(str(pf), dovecot=str(dc))
    assert [(f.id, f.severity) for f in report.findings] == expected
    # The proposed snippet, appended to the file, closes the door (read back by doveconf).
    dc.write_text(conf.replace("ssl = no\n", "").replace("disable_plaintext_auth = no\n", "")
                  + "ssl_cert = </etc/dovecot/private/dovecot.pem\n"
                  + "ssl_key = </etc/dovecot/private/dovecot.key\n" + report.findings[0].fix + "\n")
    assert audit_config(str(pf), dovecot=str(dc)).findings == []
    r = rg("audit", "--config-dir", str(pf), "--dovecot-config", str(tmp_path / "nope.conf"))
    assert r.returncode == 2 and r.stderr.startswith("relayguard: error: doveconf")


def test_cli_dovecot_options_conflict(tmp_path: Path) -> None:
    pf = make_dir(tmp_path, HARDENED_MAIN, HARDENED_MASTER)
    r = rg("audit", "--config-dir", str(pf), "--no-dovecot", "--dovecot-config", "/x")
    assert r.returncode == 2 and "exclude each other" in r.stderr


def test_copy_of_config_is_not_modified(tmp_path: Path) -> None:
    """The audit only reads: the directory is byte-for-byte the same afterwards."""
    d = make_dir(tmp_path, BAD_MAIN, PLAIN_MASTER)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    audit_config(str(d), dovecot=None)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    shutil.rmtree(d)
