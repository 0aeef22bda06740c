"""Bans, locks, hooks and automatic responses without Postfix or nftables: the `state` and
`command` backends, expiry, the allowlist, the audit trail, hooks run with argv (no shell), and
the `ban` / `lock` / `unlock` / `locks` commands."""

from __future__ import annotations

import copy
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from relayguard import config
from relayguard.cli import main
from relayguard.detect.finding import Finding
from relayguard.respond import AutoResponder, Banner, Locker, Refused, RespondError
from relayguard.respond.locks import SaslAccessMap
from relayguard.state.shared import Ban, Lock, SqliteShared
from relayguard.state.store import Store


def make_cfg(**sections: dict[str, Any]) -> dict[str, Any]:
    cfg = copy.deepcopy(config.defaults())
    # No Postfix of this machine is ever asked anything by these tests.
    cfg["respond"].update({"sasl_access_map": "", "qualify_logins": False})
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


@pytest.fixture
def shared(tmp_path: Path):
    s = SqliteShared(Store(tmp_path / "state.db"))
    yield s
    s.close()


def audit(shared: SqliteShared, action: str | None = None) -> list[dict[str, Any]]:
    return shared.store.history(None, action)


# ----------------------------------------------------------------------------- bans

def test_ban_unban_state_backend_and_audit(shared: SqliteShared) -> None:
    b = Banner(shared, make_cfg())
    ban = b.ban("203.0.113.7", "5 failed logins", 1200, source="watch")
    assert ban.network == "203.0.113.7" and ban.backend == "state"
    assert ban.expires is not None and abs(ban.expires - ban.since - 1200) < 1
    assert b.banned("203.0.113.7") is not None
    assert b.banned("203.0.113.8") is None
    # a network, normalised; an address inside it is banned through it
    net = b.ban("198.51.100.77/24", "spam run", None)
    assert net.network == "198.51.100.0/24" and net.expires is None
    assert b.banned("198.51.100.3").network == "198.51.100.0/24"
    assert [x.to_dict()["ip"] for x in b.bans()] == ["203.0.113.7", "198.51.100.0/24"]
    d = b.bans()[0].to_dict()
    assert set(d) >= {"ip", "reason", "since", "expires", "backend"}

    removed = b.unban("203.0.113.7", source="cli")
    assert removed is not None and removed.reason == "5 failed logins"
    assert b.banned("203.0.113.7") is None
    assert b.unban("203.0.113.7") is None and "not banned" in b.warnings[0]

    entries = audit(shared)
    assert [e["action"] for e in reversed(entries)] == ["ban", "ban", "unban"]
    first = entries[-1]
    assert first["selector"]["network"] == "203.0.113.7"
    assert first["selector"]["source"] == "watch"
    assert first["selector"]["backend"] == "state"
    assert first["selector"]["expires"] is not None
    assert first["status"] == "ok"


def test_reban_replaces_and_expiry(shared: SqliteShared) -> None:
    b = Banner(shared, make_cfg())
    b.ban("192.0.2.1", "first", 60)
    b.ban("192.0.2.1", "second", 3600)
    assert len(b.bans()) == 1 and b.bans()[0].reason == "second"
    b.ban("192.0.2.2", "short", 5)
    b.ban("192.0.2.3", "forever", None)
    now = time.time()
    assert b.expire(now) == []  # nothing due yet
    expired = b.expire(now + 10)
    assert [x.network for x in expired] == ["192.0.2.2"]
    # gone from every read, and handed over only once
    assert b.banned("192.0.2.2", now + 10) is None
    assert b.expire(now + 10) == []
    later = b.expire(now + 7200)
    assert [x.network for x in later] == ["192.0.2.1"]
    assert [x.network for x in b.bans(now + 10 ** 9)] == ["192.0.2.3"]
    unbans = audit(shared, "unban")
    assert {e["selector"]["network"] for e in unbans} == {"192.0.2.1", "192.0.2.2"}
    assert all(e["selector"]["source"] == "expiry" for e in unbans)


def test_allowlist_and_bad_input_are_refused(shared: SqliteShared) -> None:
    b = Banner(shared, make_cfg())
    for target in ("127.0.0.1", "127.3.4.5", "::1", "127.0.0.0/30", "64.0.0.0/2"):
        with pytest.raises(Refused):
            b.ban(target, "no", 60)
    with pytest.raises(Refused, match="wider than"):
        b.ban("128.0.0.0/1", "typo", 60)
    for bad in ("not-an-ip", "1.2.3.4/33", "", "1.2.3.4; rm -rf /"):
        with pytest.raises(RespondError):
            b.ban(bad, "x", 60)
    with pytest.raises(RespondError):
        b.ban("192.0.2.9", "x", 0)
    assert b.bans() == [] and audit(shared) == []
    # a site allowlist replaces the default one
    b2 = Banner(shared, make_cfg(bruteforce={"allow": ["10.0.0.0/8"]}))
    with pytest.raises(Refused, match="10.0.0.0/8"):
        b2.ban("10.1.2.3", "lan", 60)
    assert b2.ban("127.0.1.5", "loopback is fair game here", 60).network == "127.0.1.5"


def test_bad_backend_settings_are_one_line_errors(shared: SqliteShared) -> None:
    for bf in ({"ban_backend": "iptables"}, {"ban_backend": "command"},
               {"ban_backend": "command", "ban_command": "fail2ban-client banip {ip}"},
               {"ban_backend": "command", "ban_command": ["x", "{host}"]},
               {"ban_backend": "nftables", "nftables_table": "bad name;"},
               {"ban_backend": "postfix-access", "access_map": "relative.cidr"},
               {"ban_for": "soon"}, {"allow": ["not-a-net"]}):
        with pytest.raises(RespondError) as exc:
            Banner(shared, make_cfg(bruteforce=bf))
        assert "\n" not in str(exc.value)


# --------------------------------------------------------------------- command backend

def _recorder(tmp_path: Path, fail_marker: Path | None = None) -> Path:
    """A ban/unban program that appends its argv (JSON) to a file."""
    script = tmp_path / "record.py"
    out = tmp_path / "calls.jsonl"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"if os.path.exists({str(fail_marker)!r}):\n"
        "    print('jail postfix does not exist', file=sys.stderr); sys.exit(255)\n"
        f"with open({str(out)!r}, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n")
    script.chmod(0o755)
    return script


def _calls(tmp_path: Path) -> list[list[str]]:
    p = tmp_path / "calls.jsonl"
    return [json.loads(ln) for ln in p.read_text().splitlines()] if p.exists() else []


def test_command_backend_ban_unban_expiry_sync(shared: SqliteShared, tmp_path: Path) -> None:
    fail = tmp_path / "fail"
    prog = str(_recorder(tmp_path, fail))
    cfg = make_cfg(bruteforce={"ban_backend": "command",
                               "ban_command": [prog, "banip", "{ip}", "{seconds}"],
                               "unban_command": [prog, "unbanip", "{ip}"]})
    b = Banner(shared, cfg)
    b.ban("203.0.113.50", "guessing", 1200)
    b.ban("203.0.113.51", "guessing", 5)
    assert _calls(tmp_path) == [["banip", "203.0.113.50", "1200"], ["banip", "203.0.113.51", "5"]]
    b.unban("203.0.113.50")
    assert _calls(tmp_path)[-1] == ["unbanip", "203.0.113.50"]
    # expiry runs the unban command for what expired
    b.expire(time.time() + 60)
    assert _calls(tmp_path)[-1] == ["unbanip", "203.0.113.51"]
    b.ban("198.51.100.0/24", "net", None)
    (tmp_path / "calls.jsonl").unlink()
    assert b.sync() == 1
    assert _calls(tmp_path) == [["banip", "198.51.100.0/24", "0"]]
    # a failing command: no ban is recorded, the failure is audited, one line for people
    fail.touch()
    with pytest.raises(RespondError, match="exited 255: jail postfix does not exist"):
        b.ban("192.0.2.77", "x", 60)
    assert b.banned("192.0.2.77") is None
    assert audit(shared, "ban")[0]["status"] == "failed"


# -------------------------------------------------------------------------- hooks, locks

def _hook(tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "hook-argv.jsonl"
    script = tmp_path / "hook.py"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(out)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'env': os.environ.get('RELAYGUARD_USER')})"
        " + '\\n')\n"
        "print('logged out', sys.argv[-1])\n")
    script.chmod(0o755)
    return script, out


def test_hostile_login_reaches_hooks_as_one_argument(shared: SqliteShared, tmp_path: Path) -> None:
    script, out = _hook(tmp_path)
    pwned = [Path(f"/tmp/relayguard-pwned-{uuid.uuid4().hex}") for _ in range(3)]
    cfg = make_cfg(respond={"hooks": [[str(script), "user", "logout", "{user}"],
                                      ["/bin/echo", "{local}", "{domain}"]]})
    lk = Locker(shared, cfg)
    hostile = [f"x;touch {pwned[0]}", f"$(touch {pwned[1]})@example.com",
               f"`touch {pwned[2]}`|true&&x"]
    for login in hostile:
        lock = lk.lock(login, "test", None, source="watch")
        assert lock.user == login
        assert [r.ok for r in lk.hook_results] == [True, True]
        assert lk.hook_results[0].output.strip() == f"logged out {login}"
    calls = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [c["argv"] for c in calls] == [["user", "logout", u] for u in hostile]
    assert [c["env"] for c in calls] == hostile
    assert not any(p.exists() for p in pwned)
    hooks = audit(shared, "hook")
    assert len(hooks) == 6 and all(h["status"] == "ok" for h in hooks)
    assert hooks[-1]["command"] == [str(script), "user", "logout", hostile[0]]
    assert "logged out" in hooks[-1]["detail"]


def test_login_validation_and_failing_hooks(shared: SqliteShared, tmp_path: Path) -> None:
    cfg = make_cfg(respond={"hooks": [["/nonexistent/bm-cli", "user", "logout", "{user}"],
                                      [sys.executable, "-c", "import time; time.sleep(30)"]],
                            "hook_timeout": "1s"})
    lk = Locker(shared, cfg)
    for bad in ("", "-rf", "bob\nx REJECT", "a\x00b"):
        with pytest.raises(RespondError):
            lk.lock(bad, "x")
    t = time.monotonic()
    lock = lk.lock("carol@example.com", "spam", 3600)
    assert time.monotonic() - t < 10
    assert lock.expires is not None
    assert [r.ok for r in lk.hook_results] == [False, False]
    assert "cannot run" in lk.hook_results[0].error
    assert "did not finish in 1s" in lk.hook_results[1].error
    assert len(lk.warnings) == 2  # the lock holds; the failures are reported
    assert lk.locked("carol@example.com") is not None
    assert [h["status"] for h in audit(shared, "hook")] == ["failed", "failed"]


def test_lock_unlock_expiry_and_map_rendering(shared: SqliteShared) -> None:
    lk = Locker(shared, make_cfg())
    lk.lock("alice@example.com", "burst of 300 messages", None)
    lk.lock("bob@example.com", "short", 10)
    assert [x.user for x in lk.locks()] == ["alice@example.com", "bob@example.com"]
    assert [x.user for x in lk.expire(time.time() + 60)] == ["bob@example.com"]
    assert lk.unlock("alice@example.com") is not None
    assert lk.unlock("alice@example.com") is None
    actions = [(e["action"], e["selector"]["user"], e["selector"]["source"])
               for e in reversed(audit(shared))]
    assert actions == [("lock", "alice@example.com", "cli"), ("lock", "bob@example.com", "cli"),
                       ("unlock", "bob@example.com", "expiry"),
                       ("unlock", "alice@example.com", "cli")]
    # the table: one REJECT line per login; keys a table cannot hold are left out, with a note
    m = SaslAccessMap("hash:/nonexistent/relayguard_sasl_access", text="Locked\nREJECT all")
    now = time.time()
    data, notes = m.render([Lock("dave@example.com", "x\ny", now), Lock("has space", "", now),
                            Lock("#comment", "", now), Lock("Dave@Example.com", "", now)])
    entries = [ln for ln in data.decode().splitlines() if not ln.startswith("#")]
    assert entries == ["dave@example.com\tREJECT Locked REJECT all"]
    assert len(notes) == 2 and any("white space" in n for n in notes)
    for spec in ("hash:relative", "nosuch:/x", "/etc/postfix/x"):
        with pytest.raises(RespondError):
            SaslAccessMap(spec)


# ------------------------------------------------------------------------------ auto

def _finding(kind: str, subject: str, score: int, **evidence: Any) -> Finding:
    return Finding(kind, subject, score, f"{kind} of {subject}", None, None, dict(evidence))


def test_auto_response_modes_severity_allowlist(shared: SqliteShared) -> None:
    cfg = make_cfg(respond={"trusted_host_relay": "respond", "compromised_account": "respond",
                            "hold_mail": False})
    banner = Banner(shared, cfg)
    auto = AutoResponder(cfg, banner, Locker(shared, cfg))
    # brute force: banned for ban_for whatever the severity; a second finding changes nothing
    done = auto.respond(_finding("auth_bruteforce", "203.0.113.9", 40))
    assert [(d.action, d.subject, d.ok) for d in done] == [("ban", "203.0.113.9", True)]
    ban = banner.banned("203.0.113.9")
    assert ban is not None and ban.source == "watch" and abs(ban.expires - ban.since - 1200) < 1
    assert "already banned" in auto.respond(_finding("auth_bruteforce", "203.0.113.9", 40))[0].detail
    # a trusted host: only from min_severity up, then until removed; never an allowlisted one
    assert auto.respond(_finding("trusted_host_relay", "192.168.1.20", 45)) == []
    done = auto.respond(_finding("trusted_host_relay", "192.168.1.20", 85))
    assert done[0].ok and banner.banned("192.168.1.20").expires is None
    refused = auto.respond(_finding("trusted_host_relay", "127.0.0.1", 90))
    assert not refused[0].ok and "allowlist" in refused[0].detail
    # an account: locked, and the address that guessed its password banned
    done = auto.respond(_finding("compromised_account", "admin@example.com", 97,
                                 guessed_from="46.48.93.60"))
    assert [(d.action, d.ok) for d in done] == [("lock", True), ("ban", True)]
    assert auto.locker.locked("admin@example.com") is not None
    assert banner.banned("46.48.93.60") is not None
    # "alert" kinds and kinds without an action do nothing
    assert auto.respond(_finding("direct_smtp", "192.168.1.50", 95)) == []
    assert auto.respond(_finding("queue_surge", "deferred", 95)) == []
    assert auto.respond(_finding("blocklisted", "zen.spamhaus.org", 95).to_dict()) == []
    assert {e["action"] for e in audit(shared)} == {"ban", "lock"}


def test_auto_defaults_alert_except_bruteforce(shared: SqliteShared) -> None:
    cfg = make_cfg()
    auto = AutoResponder(cfg, Banner(shared, cfg), Locker(shared, cfg))
    assert auto.mode("auth_bruteforce") == "respond"
    for kind in ("compromised_account", "trusted_host_relay", "direct_smtp"):
        assert auto.mode(kind) == "alert"
        assert auto.respond(_finding(kind, "192.0.2.1" if kind != "compromised_account"
                                     else "x@example.com", 99)) == []
    with pytest.raises(RespondError, match="one of alert, respond"):
        AutoResponder(make_cfg(respond={"direct_smtp": "ban"}), auto.banner, auto.locker)


# ------------------------------------------------------------------------------- CLI

def _run(args: list[str], state: Path, cfg: Path | None = None) -> Any:
    extra = ["--state", str(state)] + (["--config", str(cfg)] if cfg else [])
    return CliRunner().invoke(main, args + extra, catch_exceptions=False)


def test_cli_ban_commands(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    cfgfile = tmp_path / "rg.toml"
    cfgfile.write_text('[respond]\nsasl_access_map = ""\nqualify_logins = false\n')
    r = _run(["ban", "add", "203.0.113.7", "--for", "20m", "--reason", "guessing"], state, cfgfile)
    assert r.exit_code == 0, r.output
    assert "Banned 203.0.113.7 for 20m00s" in r.output
    assert _run(["ban", "add", "198.51.100.0/24", "--permanent"], state, cfgfile).exit_code == 0
    r = _run(["ban", "list", "--format", "json"], state, cfgfile)
    rows = json.loads(r.output)
    assert [x["ip"] for x in rows] == ["203.0.113.7", "198.51.100.0/24"]
    assert rows[0]["reason"] == "guessing" and rows[0]["backend"] == "state"
    assert rows[0]["expires"] and rows[1]["expires"] is None
    assert "203.0.113.7" in _run(["ban", "list"], state, cfgfile).output
    # errors: one line, exit 2, no traceback
    for args in (["ban", "add", "127.0.0.1"], ["ban", "add", "nonsense"],
                 ["ban", "add", "192.0.2.1", "--for", "soon"],
                 ["ban", "add", "192.0.2.1", "--for", "1h", "--permanent"]):
        r = _run(args, state, cfgfile)
        assert r.exit_code == 2, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
        assert r.output.startswith("relayguard: error:")
    r = _run(["ban", "remove", "203.0.113.7"], state, cfgfile)
    assert r.exit_code == 0 and "Unbanned 203.0.113.7" in r.output
    r = _run(["ban", "remove", "203.0.113.7"], state, cfgfile)
    assert r.exit_code == 0 and "was not banned" in r.output
    assert _run(["ban", "sync"], state, cfgfile).exit_code == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[bruteforce]\nban_backend = "iptables"\n')
    r = _run(["ban", "list"], state, bad)
    assert r.exit_code == 2 and 'bruteforce.ban_backend: expected one of "state", "nftables", "postfix-access", "command", found "iptables"' in r.output


def test_cli_lock_commands(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    script, out = _hook(tmp_path)
    cfgfile = tmp_path / "rg.toml"
    cfgfile.write_text('[respond]\nsasl_access_map = ""\nqualify_logins = false\n'
                       f'hooks = [["{script}", "{{user}}"]]\n')
    r = _run(["lock", "admin@example.com", "--reason", "spam burst"], state, cfgfile)
    assert r.exit_code == 0, r.output
    assert "Locked admin@example.com until unlocked" in r.output and "exit 0" in r.output
    assert json.loads(out.read_text())["argv"] == ["admin@example.com"]
    assert _run(["lock", "bob@example.com", "--for", "2h", "--no-hooks"], state,
                cfgfile).exit_code == 0
    assert len(out.read_text().splitlines()) == 1
    rows = json.loads(_run(["locks", "--format", "json"], state, cfgfile).output)
    assert [x["user"] for x in rows] == ["admin@example.com", "bob@example.com"]
    assert rows[0]["expires"] is None and rows[1]["expires"] is not None
    r = _run(["unlock", "admin@example.com"], state, cfgfile)
    assert r.exit_code == 0 and "Unlocked admin@example.com" in r.output
    r = _run(["unlock", "admin@example.com"], state, cfgfile)
    assert r.exit_code == 0 and "was not locked" in r.output and "bob@example.com" in r.output
    r = _run(["lock", "-x", "--reason", "y"], state, cfgfile)
    assert r.exit_code == 2
    r = CliRunner().invoke(main, ["lock", "--state", str(state), "--config", str(cfgfile),
                                  "--", "-x"])
    assert r.exit_code == 2 and "starting with '-'" in r.output
    for cmd in (["ban", "--help"], ["ban", "add", "--help"], ["ban", "list", "--help"],
                ["ban", "remove", "--help"], ["ban", "sync", "--help"], ["lock", "--help"],
                ["unlock", "--help"], ["locks", "--help"]):
        assert CliRunner().invoke(main, cmd).exit_code == 0


def test_ban_dataclass_contract() -> None:
    """What the policy server and the dashboard rely on."""
    b = Ban("203.0.113.7", "r", 0.0, None)
    assert b.active(10 ** 12) and b.to_dict()["expires"] is None


def test_auto_expire_and_sync(shared: SqliteShared) -> None:
    cfg = make_cfg()
    auto = AutoResponder(cfg, Banner(shared, cfg), Locker(shared, cfg))
    auto.banner.ban("192.0.2.10", "x", 5)
    auto.banner.ban("192.0.2.11", "y", None)
    auto.locker.lock("eve@example.com", "z", 5)
    assert auto.sync() == (2, 1)
    bans, locks = auto.expire(time.time() + 60)
    assert [b.network for b in bans] == ["192.0.2.10"]
    assert [lk.user for lk in locks] == ["eve@example.com"]
    assert auto.warnings == []


@pytest.fixture
def redis_url(tmp_path: Path) -> Any:
    import shutil
    import socket
    import subprocess

    server = shutil.which("redis-server")
    try:
        import redis
    except ImportError:
        redis = None
    if server is None or redis is None:
        pytest.skip("needs redis-server (apt-get install redis-server) and the redis package")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


def test_fleet_state_in_redis_audit_stays_local(redis_url: str, tmp_path: Path) -> None:
    """With [state] url the bans and locks are shared through Redis; each machine keeps its own
    audit trail in its local database."""
    cfg = make_cfg(state={"url": redis_url, "path": str(tmp_path / "local.db")})
    with Banner.from_config(cfg) as b:
        b.ban("203.0.113.70", "guessing", 600, source="watch")
        b.ban("198.51.100.0/24", "net", 1)
    with Banner.from_config(cfg) as other:  # another process, another machine
        assert other.banned("198.51.100.9").network == "198.51.100.0/24"
        assert [x.network for x in other.bans()] == ["203.0.113.70", "198.51.100.0/24"]
        other.unban("203.0.113.70")
        assert other.expire(time.time() + 10) == []  # Redis drops expired entries on read
        assert other.bans(time.time() + 10) == []
    with Locker.from_config(cfg) as lk:
        lk.lock("frank@example.com", "spam", None)
        assert lk.locked("frank@example.com") is not None
    with Store(tmp_path / "local.db") as store:
        assert [e["action"] for e in reversed(store.history(None))] == ["ban", "ban", "unban",
                                                                        "lock"]


def _refuse(state: Path, when: str) -> None:
    """SQLite itself refuses audit writes (a full disk, a broken file): nothing faked."""
    with Store(state) as s:
        s.db.execute(f"CREATE TRIGGER refuse_{when} BEFORE {when} ON audit "
                     "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")


def test_no_audit_entry_no_lock_no_unlock_no_hook(tmp_path: Path) -> None:
    """The audit trail's one policy: the entry first; when it cannot be written the lock is not
    placed (nor lifted, nor a hook run) and the user gets one line, exit 2."""
    state = tmp_path / "s.db"
    script, out = _hook(tmp_path)
    cfgfile = tmp_path / "rg.toml"
    cfgfile.write_text('[respond]\nsasl_access_map = ""\nqualify_logins = false\n'
                       f'hooks = [["{script}", "{{user}}"]]\n')
    assert _run(["lock", "bob@example.com", "--no-hooks"], state, cfgfile).exit_code == 0
    _refuse(state, "INSERT")
    r = _run(["lock", "admin@example.com", "--reason", "spam burst"], state, cfgfile)
    assert r.exit_code == 2 and r.output.strip().splitlines() == [
        f"relayguard: error: state database {state}: cannot record (database or disk is full)"]
    r = _run(["unlock", "bob@example.com"], state, cfgfile)
    assert r.exit_code == 2 and "cannot record" in r.output
    rows = json.loads(_run(["locks", "--format", "json"], state, cfgfile).output)
    assert [x["user"] for x in rows] == ["bob@example.com"]  # nothing locked, nothing lifted
    assert not out.exists()  # the hook never ran


def test_no_audit_entry_no_ban_no_unban(tmp_path: Path) -> None:
    """Bans follow the same policy: without their audit entry they are neither placed nor
    lifted (one line, exit 2)."""
    state = tmp_path / "s.db"
    cfgfile = tmp_path / "rg.toml"
    cfgfile.write_text("")
    assert _run(["ban", "add", "192.0.2.1"], state, cfgfile).exit_code == 0
    _refuse(state, "INSERT")
    r = _run(["ban", "add", "192.0.2.2", "--reason", "brute force"], state, cfgfile)
    assert r.exit_code == 2 and "cannot record (database or disk is full)" in r.output
    r = _run(["ban", "remove", "192.0.2.1"], state, cfgfile)
    assert r.exit_code == 2 and "cannot record" in r.output
    rows = json.loads(_run(["ban", "list", "--format", "json"], state, cfgfile).output)
    assert [x["ip"] for x in rows] == ["192.0.2.1"]  # nothing banned, nothing lifted


def test_an_outcome_that_cannot_be_recorded_stays_started_and_says_so(tmp_path: Path) -> None:
    from relayguard.state import audit_trail

    state = tmp_path / "s.db"
    with Store(state) as store:
        entry = audit_trail.begin(store, "hold", selector={"senders": ["x@example.com"]},
                                  matched=2)
        assert store.history(1)[0]["status"] == "started"
        store.db.execute("CREATE TRIGGER refuse BEFORE UPDATE ON audit "
                         "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
        problem = entry.complete("ok", queue_ids=["A1B2C3D4"])
        assert problem is not None and "disk I/O error" in problem
        assert f"#{entry.id} stays 'started'" in problem
        [e] = store.history(None)
        assert e["status"] == "started" and e["matched"] == 2 and e["count"] == 0
