"""`relayguard trusted list|add|remove` on real Postfix.

The relay tests start their OWN private instances (the session's instance trusts 127.0.0.0/28
and other tests rely on it): a host in mynetworks relays to an outside domain (the fake
internet), `trusted remove` takes it out, and the same host then gets "554 5.7.1 Relay access
denied" — inline in main.cf and in a cidr: table; `--exclude` carves one host out of a wider
network (Postfix's "!address" in the match list); `add` makes a host relay again.

The other tests need only postconf/postmap on a configuration directory (no running Postfix):
hash: tables rebuilt with postmap, defaults from mynetworks_style, a refused unconfirmed change,
dry runs, roll back on a failed check, and the list's diagnostics.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from harness import FakeInternet, PostfixInstance, send_mail
from relayguard.cli import main
from relayguard.postfix.instance import Postfix
from relayguard.postfix.mynetworks import (
    Source,
    format_network,
    parse_postfix_network,
    read_mynetworks,
    split_list,
)
from relayguard.state import Store
from relayguard.trusted.edit import Change, Plan, apply
from relayguard.trusted.mynetworks import TrustedError, inline_with, inline_without, parse_target

OUTSIDE = "victim@outside.example"


def rg(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def rg_json(*args: str) -> dict[str, Any]:
    r = rg(*args, "--format", "json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def relay_reply(pf: PostfixInstance, source_ip: str, rcpt: str = OUTSIDE) -> tuple[int, str]:
    """(code, text) of RCPT TO an outside domain from ``source_ip`` (250: relayed)."""
    res = send_mail(pf, sender="monitor@relayguard.test", recipients=[rcpt],
                    source_ip=source_ip)[0]
    if rcpt in res.refused:
        return res.refused[rcpt]
    return 250, res.reply


def wait_denied(pf: PostfixInstance, source_ip: str, timeout: float = 10.0) -> tuple[int, str]:
    """After a reload, smtpd processes of the old generation finish their current session:
    ask again until the new configuration answers (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        code, text = relay_reply(pf, source_ip)
        if code != 250 or time.monotonic() > deadline:
            return code, text
        time.sleep(0.3)


def wait_delivered(net: FakeInternet, rcpt: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while rcpt not in net.recipients():
        assert time.monotonic() < deadline, f"{rcpt} never reached the fake internet"
        time.sleep(0.1)


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory the postfix user can traverse (pytest's tmp_path is 0700 under /tmp)."""
    d = Path(tempfile.mkdtemp(prefix="relayguard-trusted-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, str]:
    return {"state": str(tmp_path / "state.db"), "backups": str(tmp_path / "backups")}


def change_args(config_dir: Path | str, paths: dict[str, str], *extra: str) -> list[str]:
    return ["--config-dir", str(config_dir), "--state", paths["state"],
            "--backup-dir", paths["backups"], *extra]


def audit(paths: dict[str, str], action: str) -> list[dict[str, Any]]:
    with Store(paths["state"]) as s:
        return s.history(None, action)


# ------------------------------------------------------------------- real relaying

def test_remove_inline_host_stops_its_relaying(fake_internet: FakeInternet,
                                               paths: dict[str, str]) -> None:
    fake_internet.reset()
    with PostfixInstance(relayhost=fake_internet.address,
                         mynetworks="127.0.0.0/28, 127.0.3.7/32") as pf:
        assert relay_reply(pf, "127.0.3.7")[0] == 250
        wait_delivered(fake_internet, OUTSIDE)
        main_cf = pf.config_dir / "main.cf"
        before = main_cf.read_text()

        out = rg_json("trusted", "remove", "127.0.3.7/32",
                      *change_args(pf.config_dir, paths, "--yes"))

        assert out["changed"] and out["reloaded"] is True
        assert out["changes"][0]["where"] == "main.cf"
        assert out["changes"][0]["after"] == "127.0.0.0/28"
        assert pf.postconf("mynetworks")["mynetworks"] == "127.0.0.0/28"
        code, text = wait_denied(pf, "127.0.3.7")
        assert code == 554 and "5.7.1" in text and "Relay access denied" in text
        assert relay_reply(pf, "127.0.0.5")[0] == 250  # the rest of the list still relays
        backup = Path(out["backup_dir"])
        assert (backup / "main.cf").read_text() == before
        meta = json.loads((backup / "meta.json").read_text())
        assert meta["files"][0]["original"] == str(main_cf.resolve())
        entries = audit(paths, "trusted-remove")
        assert len(entries) == 1 and entries[0]["status"] == "ok"
        assert entries[0]["selector"]["network"] == "127.0.3.7/32"
        assert entries[0]["backup_dir"] == out["backup_dir"]
        assert entries[0]["config_dir"] == str(pf.config_dir.resolve())

        # Removing it again is refused, and says why.
        r = rg("trusted", "remove", "127.0.3.7", *change_args(pf.config_dir, paths, "--yes"))
        assert r.exit_code == 2 and "not in mynetworks" in r.stderr
    fake_internet.reset()


def test_cidr_table_remove_exclude_and_add(fake_internet: FakeInternet, world_dir: Path,
                                           paths: dict[str, str]) -> None:
    table = world_dir / "trusted.cidr"
    table.write_text("# trusted hosts\n127.0.3.0/24\tOK\n127.0.4.7/32\tOK\n")
    fake_internet.reset()
    with PostfixInstance(relayhost=fake_internet.address,
                         mynetworks=f"127.0.0.0/28, cidr:{table}") as pf:
        for ip in ("127.0.4.7", "127.0.3.9", "127.0.3.10"):
            assert relay_reply(pf, ip)[0] == 250, ip
        args = change_args(pf.config_dir, paths, "--yes")

        # A host listed in the table: its line goes, the rest of the file stays.
        out = rg_json("trusted", "remove", "127.0.4.7", *args)
        assert out["changes"][0]["where"] == f"cidr:{table}"
        assert out["changes"][0]["removed"] == ["127.0.4.7/32 OK"]
        assert table.read_text() == "# trusted hosts\n127.0.3.0/24\tOK\n"
        assert (Path(out["backup_dir"]) / "trusted.cidr").read_text().count("127.0.4.7") == 1
        code, text = wait_denied(pf, "127.0.4.7")
        assert code == 554 and "Relay access denied" in text

        # A host inside a listed network: refused, naming the network and the two ways out.
        r = rg("trusted", "remove", "127.0.3.9", *args)
        assert r.exit_code == 2
        assert "127.0.3.0/24" in r.stderr and "--exclude" in r.stderr
        # --exclude puts "!127.0.3.9/32" first: Postfix's first match wins.
        out = rg_json("trusted", "remove", "127.0.3.9", "--exclude", *args)
        assert out["changes"][0]["after"].startswith("!127.0.3.9/32, 127.0.0.0/28")
        assert wait_denied(pf, "127.0.3.9")[0] == 554
        assert relay_reply(pf, "127.0.3.10")[0] == 250  # its neighbours still relay

        # add: back into the cidr table (where the administrator keeps hosts), relays again.
        out = rg_json("trusted", "add", "127.0.4.7", *args)
        assert out["changes"][0]["where"] == f"cidr:{table}"
        assert "127.0.4.7/32\tOK" in table.read_text()
        assert out["reloaded"] is True
        deadline = time.monotonic() + 10
        while relay_reply(pf, "127.0.4.7")[0] != 250:
            assert time.monotonic() < deadline, "127.0.4.7 cannot relay after trusted add"
            time.sleep(0.3)
        # add of the excluded host removes the exclusion.
        out = rg_json("trusted", "add", "127.0.3.9", *args)
        assert out["changes"][0]["removed"] == ["!127.0.3.9/32"]
        assert pf.postconf("mynetworks")["mynetworks"] == f"127.0.0.0/28, cidr:{table}"

        actions = [e["action"] for e in audit(paths, "trusted-remove")]
        assert actions == ["trusted-remove", "trusted-remove"]
        assert len(audit(paths, "trusted-add")) == 2
    fake_internet.reset()


# --------------------------------------------------------- configuration directories

def write_cf(path: Path, text: str) -> None:
    """Write main.cf as if it had been there a while: Postfix waits until a configuration file
    is at least a second old before it trusts its contents (it could be half-written), which
    would add two seconds to each test for nothing."""
    path.write_text(text)
    old = time.time() - 10
    os.utime(path, (old, old))


@pytest.fixture
def confdir(postfix_requirements: None, world_dir: Path) -> Path:
    """A Postfix configuration directory that postconf and postmap accept (not started)."""
    d = world_dir / "etc"
    d.mkdir()
    (d / "master.cf").write_text("")
    write_cf(d / "main.cf", "compatibility_level = 3.6\n# trusted\n"
                               "mynetworks = 127.0.0.0/8 [::1]/128 10.1.2.3\n"
                               "inet_protocols = ipv4\n")
    return d


def test_unconfirmed_change_is_refused_without_a_terminal(confdir: Path,
                                                          paths: dict[str, str]) -> None:
    before = (confdir / "main.cf").read_text()
    r = rg("trusted", "remove", "10.1.2.3", *change_args(confdir, paths))
    assert r.exit_code == 2
    assert "without confirmation" in r.stderr and "nothing was changed" in r.stderr
    assert (confdir / "main.cf").read_text() == before
    assert not Path(paths["backups"]).exists() and not Path(paths["state"]).exists()


def test_dry_run_changes_nothing(confdir: Path, paths: dict[str, str]) -> None:
    before = (confdir / "main.cf").read_text()
    out = rg_json("trusted", "remove", "10.1.2.3", "--dry-run", *change_args(confdir, paths))
    assert out["dry_run"] and not out["changed"]
    assert out["changes"][0]["after"] == "127.0.0.0/8 [::1]/128"
    assert (confdir / "main.cf").read_text() == before
    assert not Path(paths["backups"]).exists()


def test_inline_edit_keeps_the_rest_of_main_cf(confdir: Path, paths: dict[str, str]) -> None:
    out = rg_json("trusted", "remove", "[::1]/128", *change_args(confdir, paths, "--yes"))
    assert out["reloaded"] is None  # not running: nothing to reload
    text = (confdir / "main.cf").read_text()
    assert "mynetworks = 127.0.0.0/8 10.1.2.3\n" in text
    assert "# trusted\n" in text and "inet_protocols = ipv4" in text
    out = rg_json("trusted", "add", "2a00:1450::/32", *change_args(confdir, paths, "--yes"))
    assert "mynetworks = 127.0.0.0/8 10.1.2.3 [2a00:1450::]/32\n" in (confdir / "main.cf").read_text()
    assert any("not a private network" in w for w in out["warnings"])


def test_listed_host_inside_a_wider_network_warns(confdir: Path, paths: dict[str, str]) -> None:
    write_cf(confdir / "main.cf", "mynetworks = 10.0.0.0/8, 10.1.2.3/32\n")
    out = rg_json("trusted", "remove", "10.1.2.3", *change_args(confdir, paths, "--yes"))
    assert out["changed"]
    assert out["still_trusted_by"] == ["10.0.0.0/8 (main.cf)"]
    assert any("stays trusted" in w and "--exclude" in w for w in out["warnings"])
    # With --exclude, the listed entry goes and the exclusion comes first.
    write_cf(confdir / "main.cf", "mynetworks = 10.0.0.0/8, 10.1.2.3/32\n")
    out = rg_json("trusted", "remove", "10.1.2.3", "--exclude",
                  *change_args(confdir, paths, "--yes"))
    assert out["changes"][0]["after"] == "!10.1.2.3/32, 10.0.0.0/8"
    assert out["still_trusted_by"] == []


def test_not_listed_and_inner_entries(confdir: Path, paths: dict[str, str]) -> None:
    r = rg("trusted", "remove", "192.168.0.0/16", *change_args(confdir, paths, "--yes"))
    assert r.exit_code == 2 and "not in mynetworks: nothing to remove" in r.stderr
    r = rg("trusted", "remove", "10.0.0.0/8", *change_args(confdir, paths, "--yes"))
    assert r.exit_code == 2 and "listed inside it: 10.1.2.3" in r.stderr
    r = rg("trusted", "remove", "10.1.2.3/24", *change_args(confdir, paths, "--yes"))
    assert r.exit_code == 2 and "did you mean 10.1.2.0/24" in r.stderr
    r = rg("trusted", "add", "0.0.0.0/0", *change_args(confdir, paths, "--yes"))
    assert r.exit_code == 2 and "open relay" in r.stderr
    r = rg("trusted", "add", "127.0.0.9", *change_args(confdir, paths, "--yes"))
    assert r.exit_code == 0 and "already trusted" in r.stderr + r.stdout


def test_hash_table_is_rebuilt_with_postmap(confdir: Path, paths: dict[str, str]) -> None:
    table = confdir / "relay_clients"
    table.write_text("10.5.5.5 OK\n10.6.6.6 OK\n")
    subprocess.run(["postmap", "-c", str(confdir), f"hash:{table}"], check=True)
    write_cf(confdir / "main.cf", f"mynetworks = 127.0.0.0/8, hash:{table}\n")
    pf = Postfix(confdir)

    def query(ip: str) -> bool | None:
        return pf.postmap_query(f"hash:{table}", ip)[0]

    assert query("10.5.5.5") is True
    out = rg_json("trusted", "remove", "10.5.5.5", *change_args(confdir, paths, "--yes"))
    assert out["changes"][0]["removed"] == ["10.5.5.5 OK"]
    assert table.read_text() == "10.6.6.6 OK\n"
    assert query("10.5.5.5") is False and query("10.6.6.6") is True
    backup = Path(out["backup_dir"])
    assert {p.name for p in backup.iterdir()} == {"relay_clients", "1-relay_clients.db",
                                                 "meta.json"}
    # A host goes to the hash table; a network cannot (exact keys only), so main.cf gets it.
    out = rg_json("trusted", "add", "10.7.7.7", *change_args(confdir, paths, "--yes"))
    assert out["changes"][0]["where"] == f"hash:{table}" and query("10.7.7.7") is True
    r = rg("trusted", "add", "10.8.0.0/16", "--table", f"hash:{table}",
           *change_args(confdir, paths, "--yes"))
    assert r.exit_code == 2 and "exact" in r.stderr
    out = rg_json("trusted", "add", "10.8.0.0/16", *change_args(confdir, paths, "--yes"))
    assert out["changes"][0]["where"] == "main.cf"
    assert not list(confdir.glob(".relay_clients.relayguard-*"))  # no temporary files left


def test_pattern_file_items_are_removed_in_place(confdir: Path, paths: dict[str, str]) -> None:
    hosts = confdir / "trusted_hosts"
    hosts.write_text("10.1.1.1, 10.2.2.2\n# the printers\n[2001:db8::5]\n")
    write_cf(confdir / "main.cf", f"mynetworks = 127.0.0.0/8, {hosts}\n")
    listed = rg_json("trusted", "list", "--config-dir", str(confdir))
    assert [e["entry"] for e in listed["entries"]] == \
        ["127.0.0.0/8", "10.1.1.1", "10.2.2.2", "[2001:db8::5]"]
    out = rg_json("trusted", "remove", "10.1.1.1", *change_args(confdir, paths, "--yes"))
    assert out["changes"][0]["where"] == str(hosts)
    assert hosts.read_text() == "10.2.2.2\n# the printers\n[2001:db8::5]\n"
    rg_json("trusted", "remove", "2001:db8::5", *change_args(confdir, paths, "--yes"))
    assert hosts.read_text() == "10.2.2.2\n# the printers\n"


def test_default_mynetworks_is_written_explicitly(confdir: Path, paths: dict[str, str]) -> None:
    write_cf(confdir / "main.cf", "compatibility_level = 3.6\ninet_protocols = ipv4\n")
    default = Postfix(confdir).values(["mynetworks"])["mynetworks"]
    out = rg_json("trusted", "add", "10.9.0.0/16", *change_args(confdir, paths, "--yes"))
    assert any("did not set mynetworks" in w for w in out["warnings"])
    written = Postfix(confdir).explicit("mynetworks")
    assert written is not None and written.endswith("10.9.0.0/16")
    assert split_list(written)[:-1] == split_list(default)


def test_failed_check_rolls_everything_back(confdir: Path, paths: dict[str, str]) -> None:
    """A change that postmap complains about is undone from the backup."""
    table = confdir / "t.cidr"
    table.write_text("10.5.0.0/16 OK\n")
    write_cf(confdir / "main.cf", f"mynetworks = 127.0.0.0/8, cidr:{table}\n")
    main_before = (confdir / "main.cf").read_text()
    pf = Postfix(confdir)
    model = read_mynetworks(pf)
    src = next(s for s in model.sources if s.kind == "cidr")
    net = parse_target("10.6.0.0/16")
    plan = Plan("add", net, [
        Change(model.main_source, model.raw, model.raw + ", 10.6.0.0/16", added=["10.6.0.0/16"]),
        Change(src, table.read_text(), "10.5.0.0/16 OK\n10.6.0.0/16\n", added=["bad line"]),
    ])
    with pytest.raises(TrustedError, match="restored"):
        apply(pf, model, plan, paths["backups"])
    assert table.read_text() == "10.5.0.0/16 OK\n"
    assert (confdir / "main.cf").read_text() == main_before


def test_list_reports_what_postfix_would_not_use(confdir: Path, world_dir: Path) -> None:
    table = world_dir / "h"
    table.write_text("10.0.0.0/8 OK\n10.1.1.1 OK\n")
    subprocess.run(["postmap", "-c", str(confdir), f"hash:{table}"], check=True)
    cidr = world_dir / "c.cidr"
    cidr.write_text("if 10.0.0.0/8\n10.1.0.0/16 OK\nendif\n")
    write_cf(confdir / "main.cf",
        "mynetworks = 127.0.0.0/8, 127.0.0.0/8 127.0.3.7, 10.1.2.3/24, 2001:db8::/32,\n"
        f"  !192.168.1.50 192.168.0.0/16 8.8.8.0/24 hash:{table}, cidr:{cidr}\n"
        f"  pcre:{world_dir}/x.pcre, $config_directory/missing\n")
    out = rg_json("trusted", "list", "--config-dir", str(confdir))
    by = {e["entry"] + "@" + e["where"]: e for e in out["entries"]}
    notes = {k: " ".join(v["notes"]) for k, v in by.items()}
    assert "duplicate" in notes["127.0.0.0/8@main.cf"] or \
        any("duplicate" in n for k, n in notes.items() if k.startswith("127.0.0.0/8"))
    assert "redundant" in notes["127.0.3.7@main.cf"]
    assert "host bits set" in notes["10.1.2.3/24@main.cf"]
    assert "brackets" in " ".join(n for k, n in notes.items() if k.startswith("2001:db8::/32"))
    assert "excluded" in notes["!192.168.1.50@main.cf"]
    assert "public addresses" in notes["8.8.8.0/24@main.cf"]
    assert "exact addresses only" in notes[f"10.0.0.0/8@hash:{table}, line 1"]
    assert by[f"10.1.0.0/16@cidr:{cidr}, line 2"]["conditional"] is True
    assert any("pcre" in w for w in out["warnings"])
    assert any("missing" in w and "no such file" in w for w in out["warnings"])
    text = rg("trusted", "list", "--config-dir", str(confdir))
    assert text.exit_code == 0 and "10.1.2.3/24" in text.stdout


# --------------------------------------------------------------------------- parsing

@pytest.mark.parametrize(("text", "net", "problem"), [
    ("127.0.3.7", "127.0.3.7/32", None),
    ("127.0.3.7/32", "127.0.3.7/32", None),
    ("[::1]/128", "::1/128", None),
    ("[2001:db8::]/32", "2001:db8::/32", None),
    ("10.1.2.3/24", "10.1.2.0/24", "host bits"),
    ("2001:db8::/32", "2001:db8::/32", "brackets"),
    ("foo", None, "not an address"),
    ("10.0.0.0/33", None, "prefix"),
])
def test_parse_postfix_network(text: str, net: str | None, problem: str | None) -> None:
    got, why = parse_postfix_network(text, bracketless_ipv6=False)
    assert (str(got) if got else None) == net
    assert (problem is None and why is None) or (problem and why and problem in why)


def test_list_values_split_like_postfix() -> None:
    assert split_list("a, b\tc,,d\n  e") == ["a", "b", "c", "d", "e"]
    assert split_list("inline:{ 1.2.3.4=OK, 5.6.7.8=OK }, x") == \
        ["inline:{ 1.2.3.4=OK, 5.6.7.8=OK }", "x"]


def test_inline_edits_keep_the_administrators_layout() -> None:
    net = ipaddress.ip_network("10.1.2.3/32")
    assert inline_without("127.0.0.0/8, 10.1.2.3, [::1]/128", net) == "127.0.0.0/8, [::1]/128"
    assert inline_without("127.0.0.0/8 10.1.2.3", net) == "127.0.0.0/8"
    assert inline_without("10.1.2.3/32, 127.0.0.0/8", net) == "127.0.0.0/8"
    assert inline_without("10.1.2.3", net) == ""
    assert inline_without("!10.1.2.3, 10.0.0.0/8", net) == "!10.1.2.3, 10.0.0.0/8"
    assert inline_without("!10.1.2.3, 10.0.0.0/8", net, negated=True) == "10.0.0.0/8"
    assert inline_without("$foo, 10.1.2.3 cidr:/x", net) == "$foo, cidr:/x"
    assert inline_with("127.0.0.0/8, [::1]/128", "10.0.0.0/8") == \
        "127.0.0.0/8, [::1]/128, 10.0.0.0/8"
    assert inline_with("127.0.0.0/8", "!10.1.2.3/32", first=True) == "!10.1.2.3/32 127.0.0.0/8"
    assert format_network(ipaddress.ip_network("2001:db8::/32")) == "[2001:db8::]/32"


def test_sources_know_their_built_files() -> None:
    assert Source("hash", "hash:/etc/postfix/x", Path("/etc/postfix/x")).db_path == \
        Path("/etc/postfix/x.db")
    assert Source("cidr", "cidr:/x", Path("/x")).db_path is None
    with contextlib.suppress(TrustedError):
        parse_target("bogus")
        raise AssertionError("parse_target accepted 'bogus'")
