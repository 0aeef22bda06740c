"""Are bans and locks really enforced? `relayguard status`, `relayguard setup postfix`, and the
NOT ENFORCED warning of `ban add` / `lock`, against a real Postfix 3.7 of our own (its main.cf
is edited: not the session's shared instance) and a real `relayguard policy serve`.

The relayguard configuration is the default one, but for where things live: the state in tmp,
[respond] postfix_config_dir = the instance (so the default lock map lands beside its
main.cf, never under /etc/postfix), [policy] listen = a free loopback port, and the ban
allowlist narrowed to 127.0.0.1 (the test's clients come from other 127.x addresses).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import FakeInternet, PostfixInstance, send_mail
from relayguard.respond.enforcement import Current, Wanted, plan
from test_policy_server import RELAYGUARD, free_tcp_port, wait_listening

RCPT = "info@relayguard.test"  # a local alias: relay control lets anyone write to it
# Existing restrictions of the instance, which setup must keep (and work around).
RECIPIENT_BEFORE = "reject_non_fqdn_recipient, permit_sasl_authenticated, reject_unauth_destination"


class Env:
    def __init__(self, tmp: Path, pf: PostfixInstance, port: int) -> None:
        self.tmp, self.pf, self.port = tmp, pf, port
        self.main_cf = pf.config_dir / "main.cf"
        self.config = tmp / "relayguard.toml"
        self.config.write_text(
            f'[state]\npath = "{tmp / "state.db"}"\n'
            f'[respond]\npostfix_config_dir = "{pf.config_dir}"\n'
            f'[policy]\nlisten = ["127.0.0.1:{port}"]\n'
            f'[setup]\nbackup_dir = "{tmp / "backups"}"\n'
            # clients of the test play the internet from 127.x: only 127.0.0.1 stays unbannable
            '[bruteforce]\nallow = ["127.0.0.1/32"]\n')
        self.server: subprocess.Popen[bytes] | None = None

    def rg(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A relayguard command as a person runs it (stdin is no terminal)."""
        return subprocess.run([RELAYGUARD, *args, "--config", str(self.config)],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=120)

    def send(self, source_ip: str, user: str | None = None) -> tuple[int, str]:
        """(code, text) of the reply to RCPT (or to DATA when the recipient was taken)."""
        r = send_mail(self.pf, sender=f"{user or 'someone'}@relayguard.test", recipients=[RCPT],
                      source_ip=source_ip, user=user,
                      password=self.pf.password(user) if user else None)[0]
        return r.refused[RCPT] if r.refused else (r.code or 0, r.reply)

    def postconf(self, name: str) -> str:
        return subprocess.run(["postconf", "-c", str(self.pf.config_dir), "-h", name],
                              capture_output=True, text=True, check=True).stdout.strip()


def _until(pred: Any, timeout: float = 10.0) -> Any:
    """smtpd processes pick up a reload, a rebuilt map, the policy server a new ban (it
    rereads the state every 2 s by default) as they turn over: allow a moment."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory,
        fake_internet: FakeInternet) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("enforcement")
    pf = PostfixInstance(relayhost=fake_internet.address, syslog_name="rg-enforce",
                         reapable=True,
                         main_cf={"smtpd_recipient_restrictions": RECIPIENT_BEFORE})
    pf.start()
    e = Env(tmp, pf, free_tcp_port())
    with open(tmp / "policy.log", "ab") as log:
        e.server = subprocess.Popen([RELAYGUARD, "policy", "serve", "--config", str(e.config)],
                                    stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening(e.port, e.server)  # type: ignore[arg-type]
        yield e
    finally:
        e.server.terminate()
        e.server.wait(10)
        pf.stop()


@pytest.mark.postfix
def test_setup_postfix_makes_bans_and_locks_enforced_and_undo_restores(env: Env) -> None:
    original = env.main_cf.read_bytes()
    cdir = str(env.pf.config_dir)

    # 1. Out of the box nothing consults the state: status says so, and names the fix.
    r = env.rg("status")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Bans:  NOT ENFORCED" in r.stdout and "Locks: NOT ENFORCED" in r.stdout
    assert "has no check_policy_service inet:127.0.0.1:" in r.stdout
    assert "has no check_sasl_access hash:" in r.stdout
    assert "run 'relayguard setup postfix'" in r.stdout
    doc = json.loads(env.rg("status", "--format", "json").stdout)
    assert doc["ok"] is False and doc["enforcement"]["bans_enforced"] is False
    assert {p["id"] for p in doc["problems"]} == {"policy_service", "lock_map"}
    assert doc["enforcement"]["config_dir"] == cdir

    # 2. A ban now is recorded, says loudly that it is not enforced — and indeed is not.
    r = env.rg("ban", "add", "127.0.2.9", "--reason", "test")
    assert r.returncode == 0 and "Banned 127.0.2.9" in r.stdout
    assert "NOT ENFORCED: Postfix does not consult the policy server" in r.stderr
    assert "relayguard setup postfix" in r.stderr
    assert env.send("127.0.2.9")[0] == 250
    assert env.rg("ban", "remove", "127.0.2.9").returncode == 0

    # 3. Without --apply: the exact commands, nothing written; without --yes: refused.
    r = env.rg("setup", "postfix")
    assert r.returncode == 0, r.stderr
    assert f"postconf -c {cdir} -e 'smtpd_recipient_restrictions = check_sasl_access " in r.stdout
    r = env.rg("setup", "postfix", "--apply")
    assert r.returncode == 2 and "refusing to change main.cf without confirmation" in r.stderr
    assert env.main_cf.read_bytes() == original

    # 4. Applied: the existing restrictions are kept, ours where they take effect.
    r = env.rg("setup", "postfix", "--apply", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Postfix reloaded." in r.stdout and "Audit entry #" in r.stdout
    sasl_map = env.pf.config_dir / "relayguard_sasl_access"
    assert env.postconf("smtpd_recipient_restrictions") == (
        f"check_sasl_access hash:{sasl_map}, {RECIPIENT_BEFORE}, check_policy_service "
        f"{{ inet:127.0.0.1:{env.port}, default_action=DUNNO }}")
    assert Path(f"{sasl_map}.db").exists()
    applied = env.main_cf.read_bytes()
    r = env.rg("status")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Bans:  enforced" in r.stdout and "Locks: enforced" in r.stdout
    assert "Everything configured is enforced." in r.stdout
    doc = json.loads(env.rg("status", "--format", "json").stdout)
    assert doc["ok"] is True and doc["problems"] == []
    assert {c["id"]: c["ok"] for c in doc["enforcement"]["checks"]} == {
        "policy_service": True, "policy_server": True, "lock_map": True}

    # 5. A lock refuses the login's next authenticated mail; other logins are unaffected.
    assert env.send("127.0.1.7", "dave")[0] == 250
    r = env.rg("lock", "dave", "--reason", "password guessed")
    assert r.returncode == 0 and "Locked dave@relayguard.test" in r.stdout
    assert "NOT ENFORCED" not in r.stderr and "cannot verify" not in r.stderr
    got = _until(lambda: (c := env.send("127.0.1.7", "dave"))[0] == 554 and c)
    assert got, env.send("127.0.1.7", "dave")
    assert "5.7.1" in got[1] and "Account locked by the administrator" in got[1]
    assert env.send("127.0.1.7", "erin")[0] == 250

    # 6. A ban refuses that client (the policy server, which Postfix now asks).
    r = env.rg("ban", "add", "127.0.2.9", "--reason", "brute force")
    assert r.returncode == 0 and "NOT ENFORCED" not in r.stderr, r.stderr
    got = _until(lambda: (c := env.send("127.0.2.9"))[0] == 554 and c)
    assert got and "client address is blocked" in got[1]
    assert env.send("127.0.2.10")[0] == 250
    doc = json.loads(env.rg("status", "--format", "json").stdout)
    assert doc["bans"]["active"] == 1 and doc["bans"]["shown"][0]["ip"] == "127.0.2.9"
    assert [lk["user"] for lk in doc["locks"]["shown"]] == ["dave@relayguard.test"]

    # 7. Idempotent: a second run has nothing to do and touches nothing.
    r = env.rg("setup", "postfix", "--apply", "--yes")
    assert r.returncode == 0 and "Nothing to change" in r.stdout, r.stdout + r.stderr
    assert env.main_cf.read_bytes() == applied

    # 8. Undo: main.cf byte for byte as it was; status is back to "not enforced".
    r = env.rg("setup", "postfix", "--undo", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "main.cf restored byte for byte." in r.stdout
    assert env.main_cf.read_bytes() == original
    assert "Nothing to undo" in env.rg("setup", "postfix", "--undo", "--yes").stdout
    assert env.rg("status").returncode == 1
    history = env.rg("history", "--format", "json")
    assert history.returncode == 0, history.stderr
    entries = json.loads(history.stdout)
    entries = entries if isinstance(entries, list) else entries.get("entries", [])
    actions = [e["action"] for e in entries]
    assert "setup-postfix" in actions and "setup-postfix-undo" in actions


@pytest.mark.postfix
def test_status_asks_the_policy_server_about_the_state_it_should_enforce(
        env: Env, tmp_path: Path) -> None:
    """The policy server must answer — and refuse what the state holds: one that does not
    answer, or that reads another state database, is named, with its address."""
    r = env.rg("ban", "add", "127.0.3.3", "--reason", "seen by the server?")
    assert r.returncode == 0, r.stderr
    time.sleep(3.2)  # older than the server's refresh interval (2 s): it must know the ban

    def checks(config: Path) -> dict[str, dict[str, Any]]:
        r = subprocess.run([RELAYGUARD, "status", "--config", str(config), "--format", "json"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode in (0, 1), r.stderr
        return {c["id"]: c for c in json.loads(r.stdout)["enforcement"]["checks"]}

    other_port, dead = free_tcp_port(), free_tcp_port()
    other = tmp_path / "other.toml"
    other.write_text(env.config.read_text().replace(f"127.0.0.1:{env.port}",
                                                    f"127.0.0.1:{other_port}"))
    nobody = tmp_path / "dead.toml"
    nobody.write_text(env.config.read_text().replace(f"127.0.0.1:{env.port}",
                                                     f"127.0.0.1:{dead}"))
    server = subprocess.Popen([RELAYGUARD, "policy", "serve", "--config", str(other), "--state",
                               str(tmp_path / "another-state.db")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(other_port, server)  # type: ignore[arg-type]
        assert checks(env.config)["policy_sees_bans"]["ok"] is True
        seen = checks(other)["policy_sees_bans"]
        assert seen["ok"] is False and "reads another state database" in seen["detail"]
        gone = checks(nobody)["policy_server"]
        assert gone["ok"] is False and f"127.0.0.1:{dead}" in gone["detail"]
    finally:
        server.terminate()
        server.wait(10)
        env.rg("ban", "remove", "127.0.3.3")


# ------------------------------------------------------------------ planning, no Postfix

def _plan(recipient: str, relay: str = "permit_mynetworks, reject_unauth_destination",
          client: str = "", **wanted: Any) -> dict[str, str]:
    w = Wanted("/x", wanted.pop("backend", "state"), "127.0.0.1:10031", "tcp", "127.0.0.1",
               10031, lock_map="hash:/x/relayguard_sasl_access", **wanted)
    raw = {"smtpd_recipient_restrictions": recipient, "smtpd_client_restrictions": client,
           "smtpd_relay_restrictions": relay}
    return {e.param: e.after for e in plan(w, Current(raw, dict(raw), "/q")).edits}


POLICY = "check_policy_service { inet:127.0.0.1:10031, default_action=DUNNO }"
LOCK = "check_sasl_access hash:/x/relayguard_sasl_access"


def test_plan_edits_existing_lists_and_is_idempotent() -> None:
    assert _plan("") == {"smtpd_recipient_restrictions": f"{LOCK}, {POLICY}"}
    old = "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination, " \
          "check_policy_service unix:private/postgrey"
    after = _plan(old)["smtpd_recipient_restrictions"]
    assert after == (f"{LOCK}, permit_mynetworks, permit_sasl_authenticated, "
                     f"reject_unauth_destination, {POLICY}, check_policy_service "
                     "unix:private/postgrey")
    assert _plan(after) == {}
    # Misplaced: the lock map after a permit, the policy service before relay control.
    assert _plan(f"permit_sasl_authenticated, {LOCK}, {POLICY}, reject_unauth_destination") == {
        "smtpd_recipient_restrictions": f"{LOCK}, permit_sasl_authenticated, "
                                        f"reject_unauth_destination, {POLICY}"}
    # The postfix-access backend: its cidr map first in the client restrictions.
    edits = _plan(f"{LOCK}, {POLICY}", client="permit_mynetworks, reject_rbl_client zen.x",
                  backend="postfix-access", access_map="/x/relayguard_access.cidr")
    assert edits == {"smtpd_client_restrictions": "check_client_access "
                     "cidr:/x/relayguard_access.cidr, permit_mynetworks, reject_rbl_client zen.x"}


@pytest.mark.postfix
def test_watch_warns_at_start_and_its_heartbeat_shows_in_status(env: Env,
                                                                tmp_path: Path) -> None:
    """`watch` says at start that nothing enforces its bans; while it runs, status sees its
    heartbeat; after SIGTERM it is reported as not running."""
    log = tmp_path / "mail.log"
    log.write_text("")
    cfg = tmp_path / "watch.toml"
    cfg.write_text(env.config.read_text() + '[watch]\nqueue_poll = "0"\nmetrics_listen = ""\n'
                   'poll_interval = "0.05s"\n')
    status = [RELAYGUARD, "status", "--config", str(cfg), "--format", "json"]
    assert json.loads(subprocess.run(status, capture_output=True, text=True).stdout
                      )["watch"]["running"] is False
    err = tmp_path / "watch.err"
    with open(err, "w") as fh:
        proc = subprocess.Popen([RELAYGUARD, "watch", "--config", str(cfg), "--log", str(log)],
                                stderr=fh, stdout=subprocess.DEVNULL)
    try:
        watch = _until(lambda: (w := json.loads(subprocess.run(
            status, capture_output=True, text=True).stdout)["watch"])["running"] and w, 20)
        assert watch, err.read_text()
        assert watch["pid"] == proc.pid and watch["sources"] == [str(log)]
        text = err.read_text()
        assert ("NOT ENFORCED: Postfix does not consult the policy server — run "
                "'relayguard setup postfix'") in text
        assert "NOT ENFORCED: Postfix does not consult the policy server or the lock map" in text
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
    doc = json.loads(subprocess.run(status, capture_output=True, text=True).stdout)
    assert doc["watch"]["running"] is False


@pytest.mark.postfix
def test_master_cf_service_with_lists_of_its_own(postfix_requirements: None,
                                                  tmp_path: Path) -> None:
    """A submission service with its own -o smtpd_recipient_restrictions skips main.cf's:
    status names it; setup gives it the checks through a main.cf parameter (postconf -P -e
    takes no white space) and undo restores main.cf and master.cf byte for byte. Postfix is
    not running here: postconf reads the directory, no reload."""
    d = tmp_path / "etc"
    d.mkdir()
    (d / "main.cf").write_text("compatibility_level = 3.6\n"
                               "smtpd_relay_restrictions = permit_sasl_authenticated, "
                               "reject_unauth_destination\n")
    (d / "master.cf").write_text("smtp inet n - y - - smtpd\nsubmission inet n - y - - smtpd\n"
                                 "  -o smtpd_recipient_restrictions=permit_sasl_authenticated,"
                                 "reject\n")
    before = {f: (d / f).read_bytes() for f in ("main.cf", "master.cf")}
    cfg = tmp_path / "rg.toml"
    cfg.write_text(f'[respond]\npostfix_config_dir = "{d}"\n[state]\npath = "{tmp_path}/s.db"\n'
                   f'[setup]\nbackup_dir = "{tmp_path}/bk"\n')

    def rg(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([RELAYGUARD, *args, "--config", str(cfg)], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=60)

    def service_problems() -> list[str]:
        doc = json.loads(rg("status", "--format", "json").stdout)
        return [p["id"] for p in doc["problems"] if p["id"].startswith("service:")]

    assert service_problems() == ["service:submission/inet"]
    r = rg("setup", "postfix", "--apply", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "-P -e 'submission/inet/smtpd_recipient_restrictions=$relayguard_submission_inet_" \
           "recipient_restrictions'" in r.stdout
    seen = subprocess.run(["postconf", "-c", str(d), "-xP",
                           "submission/inet/smtpd_recipient_restrictions"],
                          capture_output=True, text=True, check=True).stdout
    assert seen.split(" = ", 1)[1].startswith(f"check_sasl_access hash:{d}/relayguard_sasl_access"
                                              ", check_policy_service {")
    assert seen.rstrip().endswith("permit_sasl_authenticated, reject")
    assert service_problems() == []
    assert "Nothing to change" in rg("setup", "postfix", "--apply", "--yes").stdout
    r = rg("setup", "postfix", "--undo", "--yes")
    assert r.returncode == 0 and "main.cf and master.cf restored byte for byte." in r.stdout
    assert {f: (d / f).read_bytes() for f in before} == before


def test_plan_edits_the_main_cf_parameter_an_override_refers_to() -> None:
    """-o smtpd_recipient_restrictions=$mua_recipient_restrictions (Debian's template): the
    edit goes to that main.cf parameter, master.cf stays as it is."""
    w = Wanted("/x", "state", "127.0.0.1:10031", "tcp", "127.0.0.1", 10031,
               lock_map="hash:/x/relayguard_sasl_access")
    raw = {"smtpd_recipient_restrictions": f"{LOCK}, {POLICY}", "smtpd_client_restrictions": "",
           "smtpd_relay_restrictions": "reject_unauth_destination"}
    mua = "permit_sasl_authenticated, reject"
    cur = Current(raw, dict(raw), "/q",
                  {"submission/inet": {"smtpd_recipient_restrictions": "$mua_recipient_restrictions"}},
                  {"submission/inet": {"smtpd_recipient_restrictions": mua}})
    [edit] = plan(w, cur).edits
    assert (edit.param, edit.service, edit.origin) == ("mua_recipient_restrictions", None,
                                                       "submission/inet")
    assert edit.after == f"{LOCK}, {POLICY}, {mua}"


@pytest.mark.postfix
def test_apply_rolls_back_when_the_result_is_not_what_was_needed(
        postfix_requirements: None, tmp_path: Path) -> None:
    """A change that does not leave main.cf as needed is undone: main.cf byte for byte."""
    from relayguard import config
    from relayguard.respond.enforcement import Edit, Plan, open_postfix, wanted
    from relayguard.respond.setup import SetupError, apply

    d = tmp_path / "etc"
    d.mkdir()
    (d / "master.cf").write_text("smtp inet n - y - - smtpd\n")
    (d / "main.cf").write_text("compatibility_level = 3.6\n# kept as it is\n")
    before = (d / "main.cf").read_bytes()
    cfg = config.defaults()
    cfg["respond"]["postfix_config_dir"] = str(d)
    cfg["respond"]["sasl_access_map"] = ""
    cfg["state"]["path"] = str(tmp_path / "s.db")
    wrong = Plan(str(d), [Edit("smtpd_recipient_restrictions", "", "permit_mynetworks")])
    with pytest.raises(SetupError, match="still not as needed; main.cf was restored"):
        apply(open_postfix(str(d)), wanted(cfg), wrong, cfg, str(tmp_path / "bk"))
    assert (d / "main.cf").read_bytes() == before
