"""Bans and locks on a real Postfix 3.7: a private instance of our own (not the session's
shared one, whose restrictions stay untouched) configured with the documented main.cf lines:

    smtpd_client_restrictions   = check_client_access cidr:<access map>
    smtpd_recipient_restrictions = check_sasl_access hash:<lock map>

A banned client address is refused (5xx), a locked login's authenticated mail is refused, and
unban / unlock / expiry restore them; reloads are rate-limited; the automatic response to a
compromised account locks it, holds its queued mail through the queue code and runs hooks."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import PostfixInstance, missing_requirements, send_mail
from relayguard import config
from relayguard.detect.finding import Finding
from relayguard.respond import AutoResponder, Banner, Locker
from relayguard.state.shared import SqliteShared
from relayguard.state.store import Store

pytestmark = pytest.mark.postfix

RCPT = "info@relayguard.test"  # a local alias (delivered to /dev/null)


class Env:
    def __init__(self, pf: PostfixInstance, maps: Path) -> None:
        self.pf = pf
        self.maps = maps
        self.access = maps / "relayguard_access.cidr"
        self.sasl = maps / "relayguard_sasl_access"

    def cfg(self, **sections: dict[str, Any]) -> dict[str, Any]:
        cfg = copy.deepcopy(config.defaults())
        cfg["bruteforce"].update({"ban_backend": "postfix-access", "access_map": str(self.access),
                                  "reload_interval": "0", "allow": ["127.0.0.1/32"]})
        cfg["respond"].update({"sasl_access_map": f"hash:{self.sasl}",
                               "postfix_config_dir": str(self.pf.config_dir)})
        for name, values in sections.items():
            cfg[name].update(values)
        return cfg

    def send(self, source_ip: str = "127.0.1.1", user: str | None = None,
             rcpt: str = RCPT) -> tuple[int, str]:
        """(code, text) of the RCPT reply, or of DATA when every recipient was taken."""
        res = send_mail(self.pf, sender=f"{user or 'someone'}@relayguard.test", recipients=[rcpt],
                        source_ip=source_ip, user=user,
                        password=self.pf.password(user) if user else None)[0]
        if res.refused:
            return res.refused[rcpt]
        return res.code or 0, res.reply

    def reloads(self) -> int:
        return sum("reload -- version" in ln for ln in self.pf.maillog.read_text().splitlines())


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    maps = Path(tempfile.mkdtemp(prefix="relayguard-respond-maps-"))
    pf: PostfixInstance | None = None
    try:  # whatever fails below, the maps directory and the instance go
        maps.chmod(0o755)  # smtpd (user postfix) reads the maps
        e = Env(None, maps)  # type: ignore[arg-type]
        # Both maps exist (empty) before Postfix starts: a missing table fails every lookup.
        # postmap needs a configuration to read before the instance has one: a scratch one.
        scratch = maps / "postmap-config"
        scratch.mkdir()
        (scratch / "main.cf").write_text("compatibility_level = 3.6\n")
        e.access.write_text("# empty\n")
        e.sasl.write_text("# empty\n")
        subprocess.run(["postmap", "-c", str(scratch), f"hash:{e.sasl}"], check=True)
        pf = PostfixInstance(
            mynetworks="127.0.0.0/28", syslog_name="rg-respond", reapable=True,
            main_cf={"smtpd_client_restrictions": f"check_client_access cidr:{e.access}",
                     "smtpd_recipient_restrictions": f"check_sasl_access hash:{e.sasl}",
                     # mail for other domains stays in the queue (deferred), for the hold test
                     "defer_transports": "smtp, relay"})
        pf.start()
        e.pf = pf
        yield e
    finally:
        if pf is not None:
            pf.stop()
        shutil.rmtree(maps, ignore_errors=True)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[SqliteShared]:
    s = SqliteShared(Store(tmp_path / "state.db"))
    yield s
    s.close()


def _until(pred: Any, timeout: float = 5.0) -> Any:
    """Postfix daemons pick a change up as they turn over: allow a moment."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_access_map_ban_refuses_client_unban_restores(env: Env, state: SqliteShared) -> None:
    b = Banner(state, env.cfg())
    assert env.send("127.0.1.5")[0] == 250
    before = env.reloads()
    b.ban("127.0.1.5", "guessing", 600)
    b.ban("127.0.2.0/24", "a bad network", None)
    assert b.warnings == []
    text = env.access.read_text()
    assert "127.0.1.5\tREJECT Access denied" in text and "127.0.2.0/24\tREJECT" in text
    assert _until(lambda: env.reloads() >= before + 2)
    code, reply = env.send("127.0.1.5")
    assert code == 554 and "Access denied" in reply
    assert env.send("127.0.2.77")[0] == 554
    assert env.send("127.0.1.6")[0] == 250  # a neighbour is not affected
    # authenticating does not help a banned client
    assert env.send("127.0.1.5", user="alice")[0] == 554
    b.unban("127.0.1.5")
    b.unban("127.0.2.0/24")
    assert "127.0.1.5" not in env.access.read_text()
    assert _until(lambda: env.send("127.0.1.5")[0] == 250)
    assert env.send("127.0.2.77")[0] == 250


def test_access_map_expiry_and_rate_limited_reload(env: Env, state: SqliteShared) -> None:
    b = Banner(state, env.cfg(bruteforce={"reload_interval": "30s"}))
    # the last reload was moments ago (previous test or this one): a reload now is postponed
    with b.backend.reloader.locked() as st:  # type: ignore[attr-defined]
        st["last"] = time.time()
    before = env.reloads()
    assert env.send("127.0.1.9")[0] == 250  # an idle smtpd, holding the map as it was
    b.ban("127.0.1.8", "short", 10)
    assert b.warnings and "postponed" in b.warnings[0]
    assert "127.0.1.8" in env.access.read_text()  # the map is written at once…
    time.sleep(1.0)
    assert env.reloads() == before  # …but Postfix was not reloaded, and a cidr: table lives in
    assert env.send("127.0.1.8")[0] == 250  # smtpd's memory: the reload is what applies it
    # the next expiry pass after the interval applies it (watch calls expire every few seconds)
    assert b.expire(time.time()) == []
    assert env.reloads() == before
    expired = b.expire(time.time() + 31)
    assert [x.network for x in expired] == ["127.0.1.8"]  # and the rewrite drops the entry
    assert "127.0.1.8" not in env.access.read_text()
    assert _until(lambda: env.reloads() == before + 1)
    assert env.send("127.0.1.8")[0] == 250
    entry = state.store.history(1, "unban")[0]
    assert entry["selector"]["source"] == "expiry" and entry["detail"] == "expired"


def test_locked_login_is_refused_unlock_restores(env: Env, state: SqliteShared,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    hook = tmp_path / "logout.py"
    hook.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"open({str(out)!r}, 'w').write(json.dumps(sys.argv[1:]))\n")
    hook.chmod(0o755)
    lk = Locker(state, env.cfg(respond={"hooks": [[str(hook), "user", "logout", "{user}"]]}))
    assert env.send(user="alice")[0] == 250
    before = env.reloads()
    lock = lk.lock("alice", "sent 300 messages in 10 minutes", None)
    # Postfix looks the login up with its realm (smtpd_sasl_local_domain = $mydomain)
    assert lock.user == "alice@relayguard.test"
    assert json.loads(out.read_text()) == ["user", "logout", "alice@relayguard.test"]
    assert "alice@relayguard.test\tREJECT" in env.sasl.read_text()
    r = subprocess.run(["postmap", "-c", str(env.pf.config_dir), "-q", "alice@relayguard.test",
                        f"hash:{env.sasl}"],
                       capture_output=True, text=True, check=False)
    assert r.stdout.strip() == "REJECT Account locked by the administrator"
    code, reply = env.send(user="alice")
    assert code == 554 and "Account locked by the administrator" in reply
    assert env.send(user="bob")[0] == 250  # other logins unaffected
    assert env.send("127.0.1.20")[0] == 250  # and unauthenticated clients too
    assert env.reloads() == before  # a hash: table needs no reload
    assert lk.unlock("alice") is not None
    assert "alice@" not in env.sasl.read_text()
    assert env.send(user="alice")[0] == 250
    # expiry of a lock restores the login as well
    lk.lock("bob@relayguard.test", "short", 1)
    assert env.send(user="bob")[0] == 554
    assert [x.user for x in lk.expire(time.time() + 5)] == ["bob@relayguard.test"]
    assert env.send(user="bob")[0] == 250


def test_auto_response_locks_holds_queued_mail_runs_hooks(env: Env, state: SqliteShared,
                                                          tmp_path: Path) -> None:
    pf = env.pf
    if pf.queue():
        pf.purge()
    out = tmp_path / "hook.txt"
    hook = tmp_path / "hook.py"
    hook.write_text(f"#!{sys.executable}\nimport sys\n"
                    f"open({str(out)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n")
    hook.chmod(0o755)
    cfg = env.cfg(respond={"compromised_account": "respond",
                           "hooks": [[str(hook), "{event}", "{user}"]]})
    auto = AutoResponder(cfg, Banner(state, cfg), Locker(state, cfg))
    for _ in range(2):
        assert env.send("127.0.1.30", user="mallory", rcpt="victim@example.net")[0] == 250
    assert env.send("127.0.1.31", user="carol", rcpt="friend@example.net")[0] == 250
    queued = pf.wait_queue_settled(allow=("deferred",))
    assert len(queued) == 3
    finding = Finding("compromised_account", "mallory@relayguard.test", 97,
                      "Account 'mallory@relayguard.test': 2 messages, guessed password", None,
                      None, {"guessed_from": "127.0.2.66"})
    done = auto.respond(finding)
    assert [(d.action, d.ok) for d in done] == [("lock", True), ("hook", True), ("hold", True),
                                                ("ban", True)], done
    assert "held 2 queued message(s)" in done[2].detail
    by_queue = {m["queue_id"]: m["queue_name"] for m in pf.queue()}
    assert sorted(by_queue.values()) == ["deferred", "hold", "hold"]
    assert out.read_text() == "lock mallory@relayguard.test\n"
    assert env.send("127.0.1.30", user="mallory", rcpt="victim@example.net")[0] == 554
    assert _until(lambda: env.send("127.0.2.66")[0] == 554)
    actions = [e["action"] for e in reversed(state.store.history(None))]
    assert actions == ["lock", "hook", "hold", "ban"]
    hold = state.store.history(1, "hold")[0]
    assert hold["count"] == 2 and hold["selector"] == {"sasl_users": ["mallory@relayguard.test"]}
    assert hold["config_dir"] == str(pf.config_dir)
    # a second finding for the same account changes nothing
    again = auto.respond(finding)
    assert again[0].detail == "already locked"
    auto.locker.unlock("mallory@relayguard.test")
    auto.banner.unban("127.0.2.66")
    pf.purge()
