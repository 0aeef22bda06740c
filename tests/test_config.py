"""The configuration as a user meets it: every key checked when loaded, one line naming the file
and the `section.key` (with a did-you-mean), exit 2 from every command; `config check|show`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from relayguard import config as config_mod
from relayguard.config import ConfigError
from relayguard.policy.limits import PolicySettings
from relayguard.watch.settings import WatchSettings

ENV = {**os.environ, "TZ": "UTC"}

# (file content, what the error says after "FILE: ")
BAD = {
    "wrong type": ('[detect.compromised_account]\nvery_many_ips = "ten"\n',
                   'detect.compromised_account.very_many_ips: expected an integer >= 1, '
                   'found "ten"'),
    "out of range": ("[alert.email]\nport = 70000\n",
                     "alert.email.port: expected an integer from 1 to 65535, found 70000"),
    "unknown key": ('[watch]\npoll_intervall = "1s"\n',
                    'watch.poll_intervall: unknown setting (did you mean "poll_interval"?)'),
    "unknown section": ("[wach]\nlogs = []\n", 'wach: unknown section (did you mean "watch"?)'),
    "string for a list": ('[watch]\nlogs = "/var/log/mail.log"\n',
                          'watch.logs: expected a list of files, found "/var/log/mail.log"'),
    "enumeration": ('[bruteforce]\nban_backend = "iptables"\n',
                    'bruteforce.ban_backend: expected one of "state", "nftables", '
                    '"postfix-access", "command", found "iptables"'),
    "limits item": ('[[policy.limits]]\nkey = "sasl_username"\nmax_messages = 10\nwindow = "1m"\n'
                    '\n[[policy.limits]]\nkey = "sender"\nmax_messages = 5\nwindow = "1h"\n'
                    'action = "BLOCK"\n',
                    'policy.limits[2].action: expected one of "DEFER_IF_PERMIT", "DEFER", '
                    '"HOLD", "REJECT", "DUNNO", found "BLOCK"'),
    "duration": ('[alert]\ncooldown = "soon"\n',
                 'alert.cooldown: expected a duration such as "90s", "10m", "2h", "1d" '
                 '(or seconds), found "soon"'),
    "network": ('[bruteforce]\nallow = ["127.0.0.0/8", "10.0.0.0/33"]\n',
                'bruteforce.allow[2]: expected a network or address such as "10.0.0.0/8" or '
                '"192.0.2.1", found "10.0.0.0/33"'),
}


def rg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relayguard", *args], capture_output=True,
                          text=True, env=ENV, timeout=60)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("log") / "mail.log"
    path.write_text("Jun 21 08:00:00 mail postfix/qmgr[1]: 3C4D5E6F7A: removed\n")
    return path


def commands(conf: Path, log: Path, tmp: Path) -> dict[str, list[str]]:
    """Each command that reads the configuration, ready to run: none may get past it."""
    state = str(tmp / "state.db")
    return {
        "analyze": ["analyze", str(log), "--config", str(conf)],
        "watch": ["watch", "--once", "--config", str(conf), "--state", state, "--log", str(log)],
        # "nowhere" is a bad listen address: if the configuration got through, the error
        # would be that one (and the server never starts listening).
        "policy serve": ["policy", "serve", "--listen", "nowhere", "--config", str(conf),
                         "--state", state],
        "config check": ["config", "check", "--config", str(conf)],
    }


@pytest.mark.parametrize("case", list(BAD))
def test_bad_setting_is_one_line_and_exit_2_everywhere(case: str, log: Path,
                                                       tmp_path: Path) -> None:
    text, message = BAD[case]
    conf = tmp_path / "relayguard.toml"
    conf.write_text(text)
    for name, args in commands(conf, log, tmp_path).items():
        r = rg(*args)
        assert (r.returncode, r.stderr) == (2, f"relayguard: error: {conf}: {message}\n"), name
        assert r.stdout == "", name
    assert not (tmp_path / "state.db").exists()  # refused before touching anything


def test_config_check_accepts_a_good_file(tmp_path: Path) -> None:
    conf = tmp_path / "relayguard.toml"
    conf.write_text('[watch]\nlogs = ["/var/log/mail.log"]\n[policy]\nlisten = "unix:/run/p.sock"\n'
                    '[[policy.limits]]\nkey = "sender"\nmax_recipients = 100\nwindow = "1d"\n'
                    'action = "hold"\n')
    r = rg("config", "check", "--config", str(conf))
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{conf}: OK\n", "")


def test_config_check_without_a_file() -> None:
    r = rg("config", "check")
    if config_mod.SYSTEM_CONFIG.exists():  # pragma: no cover - not on the test machines
        assert r.stdout == f"{config_mod.SYSTEM_CONFIG}: OK\n"
    else:
        assert r.returncode == 0
        assert r.stdout == f"{config_mod.SYSTEM_CONFIG}: not present, defaults only: OK\n"


def test_config_show_round_trips(tmp_path: Path) -> None:
    conf = tmp_path / "relayguard.toml"
    conf.write_text('[analyze]\ntrusted = ["192.168.0.0/16"]\n'
                    '[respond]\nhooks = [["bm-cli", "user", "logout", "{user}"]]\n'
                    '[[policy.limits]]\nkey = "sasl_username"\nmax_messages = 10\nwindow = "1m"\n'
                    'message = "Trop de messages \\"vite\\" \\u00e9\\ttab"\nname = "per-user"\n'
                    '[[policy.limits]]\nkey = "client_address"\nmax_recipients = 500\n'
                    'window = 86400\n')
    r = rg("config", "show", "--config", str(conf))
    assert r.returncode == 0, r.stderr
    shown = tmp_path / "shown.toml"
    shown.write_text(r.stdout)
    assert config_mod.load(shown) == config_mod.load(conf)
    assert config_mod.load(shown)["policy"]["limits"][0]["message"] == 'Trop de messages "vite" é\ttab'
    check = rg("config", "check", "--config", str(shown))
    assert (check.returncode, check.stdout) == (0, f"{shown}: OK\n")
    # The defaults alone: every key shown, and they load back as they are.
    default = tmp_path / "default.toml"
    (tmp_path / "empty.toml").write_text("")
    default.write_text(rg("config", "show", "--config", str(tmp_path / "empty.toml")).stdout)
    assert config_mod.load(default) == config_mod.defaults()
    assert "very_many_ips = 10" in default.read_text()


def test_show_refuses_a_bad_file(tmp_path: Path) -> None:
    conf = tmp_path / "relayguard.toml"
    conf.write_text("[detect.compromised_account\n")
    r = rg("config", "show", "--config", str(conf))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(f"relayguard: error: {conf}: invalid TOML (")
    assert len(r.stderr.splitlines()) == 1


def test_load_takes_a_partial_dict() -> None:
    cfg = config_mod.load_config({"watch": {"logs": ["/var/log/mail.log"]}})
    assert cfg["watch"]["logs"] == ["/var/log/mail.log"]
    assert cfg["watch"]["queue_threshold"] == 200 and cfg["bruteforce"]["max_failures"] == 3
    with pytest.raises(ConfigError) as exc:
        config_mod.load({"watch": {"logs": "/var/log/mail.log"}})
    assert str(exc.value) == 'watch.logs: expected a list of files, found "/var/log/mail.log"'
    with pytest.raises(ConfigError, match=r'^detect\.compromised_account\.many_ip: unknown '
                                          r'setting \(did you mean "many_ips"\?\)$'):
        config_mod.load({"detect": {"compromised_account": {"many_ip": 3}}})
    with pytest.raises(ConfigError, match=r"^policy\.limits\[1\]: window is required"):
        config_mod.load({"policy": {"limits": [{"key": "sender", "max_messages": 1}]}})
    with pytest.raises(ConfigError, match=r"^policy\.limits\[1\]: set max_messages and/or"):
        config_mod.load({"policy": {"limits": [{"key": "sender", "window": "1m"}]}})


def test_consumers_raise_config_error_for_hand_built_configurations() -> None:
    """watch and the policy server convert settings; a bad one from a dict built by hand (not
    through load) is the same ConfigError, never a TypeError from inside."""
    with pytest.raises(ConfigError, match=r"^watch\.queue_recover: expected a number in \(0, 1\]"):
        WatchSettings.from_config({"watch": {"queue_recover": 2}})
    with pytest.raises(ConfigError, match=r"^bruteforce\.max_failures: expected an integer"):
        WatchSettings.from_config({"bruteforce": {"max_failures": "three"}})
    with pytest.raises(ConfigError, match=r"^policy\.max_connections: expected an integer >= 1"):
        PolicySettings.from_config({"policy": {"max_connections": 0}})
    with pytest.raises(ConfigError, match=r"^policy\.allow_users: expected a list of strings"):
        PolicySettings.from_config({"policy": {"allow_users": "newsletter@example.org"}})


def test_every_default_has_a_spec_and_passes() -> None:
    assert config_mod.validate(config_mod.defaults()) == config_mod.defaults()
    # Each leaf of the schema is a Spec: a key added to default.toml with an empty list and no
    # entry in config.SPECIAL fails here (schema() refuses to guess).
    def leaves(t: dict) -> int:
        return sum(leaves(v) if isinstance(v, dict) else 1 for v in t.values())
    assert leaves(config_mod.schema()) == leaves(config_mod.defaults()) > 100
