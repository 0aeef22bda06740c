"""The one door to Postfix (relayguard.postfix): the mynetworks model as Postfix evaluates it
(first match wins, exclusions, pattern files, cidr and exact-address tables, brackets,
``$name`` references), programs found and run with ``-c DIR``, and ``relayguard analyze``
trusting exactly what a real ``postconf -c DIR`` says — an excluded host is not trusted."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from logbuilder import LogBuilder
from relayguard import config
from relayguard.aggregate import Aggregates
from relayguard.analysis import analyze
from relayguard.cli import main
from relayguard.postfix import programs
from relayguard.postfix.maps import atomic_write, build_aside
from relayguard.postfix.mynetworks import TrustedNetworks, build, resolve_trusted
from relayguard.postfix.programs import PostfixError

needs_postconf = pytest.mark.skipif(programs.find_program("postconf") is None,
                                    reason="postfix not installed (apt-get install postfix)")


def trusted(value: str) -> TrustedNetworks:
    return TrustedNetworks.parse(value, "test")


def verdicts(t: TrustedNetworks, *ips: str) -> dict[str, bool]:
    return {ip: t.contains(ip) for ip in ips}


# ------------------------------------------------------------------------- the model

def test_first_match_wins_so_an_exclusion_must_come_first() -> None:
    before = trusted("127.0.0.0/8, !192.168.1.50, 192.168.0.0/16")
    assert verdicts(before, "192.168.1.50", "192.168.1.51", "127.0.0.1", "10.0.0.1") == {
        "192.168.1.50": False, "192.168.1.51": True, "127.0.0.1": True, "10.0.0.1": False}
    # Listed after the network that holds it, the exclusion is never reached (Postfix too).
    after = trusted("192.168.0.0/16 !192.168.1.50")
    assert after.contains("192.168.1.50")


def test_the_issue_value_keeps_exclusion_file_and_table(tmp_path: Path) -> None:
    mynets = tmp_path / "mynets"
    mynets.write_text("# office printers, one per line\n10.20.0.7\n!10.30.0.9, 10.30.0.0/24\n")
    table = tmp_path / "relays.cidr"
    table.write_text("# relays\n172.16.4.0/24  OK\n[2001:db8:4::]/48 OK\n")
    t = trusted(f"127.0.0.0/8 !192.168.1.50 192.168.0.0/16 {mynets} cidr:{table}")
    assert verdicts(t, "192.168.1.50", "192.168.7.7", "10.20.0.7", "10.20.0.8", "10.30.0.9",
                    "10.30.0.10", "172.16.4.200", "172.16.5.1", "2001:db8:4::25",
                    "2001:db8:5::1") == {
        "192.168.1.50": False, "192.168.7.7": True, "10.20.0.7": True, "10.20.0.8": False,
        "10.30.0.9": False, "10.30.0.10": True, "172.16.4.200": True, "172.16.5.1": False,
        "2001:db8:4::25": True, "2001:db8:5::1": False}
    assert t.networks == ["127.0.0.0/8", "!192.168.1.50/32", "192.168.0.0/16", "10.20.0.7/32",
                          "!10.30.0.9/32", "10.30.0.0/24", f"cidr:{table}"]
    assert t.unevaluated == []


def test_cidr_table_blocks_negations_and_skipped_lines(tmp_path: Path) -> None:
    table = tmp_path / "t.cidr"
    table.write_text("if 10.2.0.0/16\n"
                     "!10.2.3.0/24  OK\n"       # inside the block: all of 10.2/16 but 10.2.3/24
                     "endif\n"
                     "10.9.9.9/8    OK\n"       # host bits set: Postfix skips the line
                     "10.5.0.0/16\n"            # no result: skipped too
                     "192.0.2.0/24 REJECT\n")   # any result is a match in a match list
    t = trusted(f"cidr:{table}")
    assert verdicts(t, "10.2.9.9", "10.2.3.4", "10.3.0.1", "10.9.9.9", "10.5.0.1",
                    "192.0.2.1", "2001:db8::1") == {
        "10.2.9.9": True, "10.2.3.4": False, "10.3.0.1": False, "10.9.9.9": False,
        "10.5.0.1": False, "192.0.2.1": True, "2001:db8::1": False}
    excluded = trusted(f"!cidr:{table}, 0.0.0.0/0")
    assert verdicts(excluded, "192.0.2.1", "198.51.100.1") == {"192.0.2.1": False,
                                                              "198.51.100.1": True}


def test_exact_address_tables_are_read_from_their_source(tmp_path: Path) -> None:
    table = tmp_path / "clients"
    table.write_text("10.7.7.7 OK\n10.8.0.0/16 OK\n")  # the network never matches in hash:
    for kind in ("hash", "texthash"):
        t = trusted(f"{kind}:{table}")
        assert verdicts(t, "10.7.7.7", "10.7.7.8", "10.8.0.1") == {
            "10.7.7.7": True, "10.7.7.8": False, "10.8.0.1": False}, kind


def test_brackets_references_and_what_cannot_be_evaluated(tmp_path: Path) -> None:
    t = trusted("[2001:db8::]/32, [::1], 127.0.0.0/8 pcre:/etc/postfix/relay.pcre "
                f"cidr:{tmp_path}/missing.cidr")
    assert verdicts(t, "2001:db8:1::1", "::1", "::2", "[::1]", "not-an-ip") == {
        "2001:db8:1::1": True, "::1": True, "::2": False, "[::1]": True, "not-an-ip": False}
    assert "pcre:/etc/postfix/relay.pcre" in t.unevaluated
    assert f"cidr:{tmp_path}/missing.cidr" in t.unevaluated
    # $name references expand where they stand, exclusions included.
    model = build("$office_excluded, 192.168.0.0/16", params={"office_excluded": "!192.168.1.50"})
    refs = TrustedNetworks(model, "test")
    assert verdicts(refs, "192.168.1.50", "192.168.1.49") == {"192.168.1.50": False,
                                                             "192.168.1.49": True}


def test_aggregates_ask_the_matcher_once_per_address() -> None:
    asked: list[str] = []

    def contains(ip: str) -> bool:
        asked.append(ip)
        return trusted("!10.0.0.5, 10.0.0.0/8").contains(ip)

    agg = Aggregates(contains)
    assert [agg.is_trusted(ip) for ip in ("10.0.0.5", "10.0.0.6", "10.0.0.5")] == [
        False, True, False]
    assert asked == ["10.0.0.5", "10.0.0.6"]
    assert Aggregates().is_trusted("127.0.0.1") is False


def relay_log(*ips: str) -> LogBuilder:
    """Each address relays 40 unauthenticated messages without Message-ID to many domains."""
    log = LogBuilder()
    for ip in ips:
        for i in range(40):
            log.message(ip, name="pc", sender=f"user{i % 20}@d{i % 7}.example",
                        rcpts=[f"r{i}@other{i % 15}.net"], message_id=None, status="deferred")
            log.advance(15)
    return log


def relay_findings(report: dict) -> dict[str, bool]:
    return {f["subject"]: f["evidence"]["in_trusted_networks"] for f in report["findings"]
            if f["kind"] == "trusted_host_relay"}


def test_analyze_honours_an_exclusion_given_with_trusted(tmp_path: Path) -> None:
    log = relay_log("192.168.1.50", "192.168.1.51").write(tmp_path / "mail.log")
    a = analyze([str(log)], config.defaults(), ["!192.168.1.50", "192.168.0.0/16"], 2026)
    assert relay_findings(a.to_dict()) == {"192.168.1.50": False, "192.168.1.51": True}
    assert a.trusted == ["!192.168.1.50/32", "192.168.0.0/16"]


# ------------------------------------------------------------- programs and map files

def test_programs_are_found_on_path_first_and_run_with_c(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    shim = tmp_path / "bin" / "postconf"
    shim.parent.mkdir()
    shim.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\"\n")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert programs.find_program("postconf") == str(shim)
    r = programs.run("postconf", "-h", "mynetworks", config_dir="/srv/pf")
    assert r.ok and r.stdout.split() == ["-c", "/srv/pf", "-h", "mynetworks"]
    assert programs.argv("sendmail", "-t", config_dir="/srv/pf")[1:3] == ["-C", "/srv/pf"]
    with pytest.raises(PostfixError, match="relayguard-no-such-tool not found"):
        programs.run("relayguard-no-such-tool")
    shim.write_text("#!/bin/sh\nsleep 30\n")
    started = time.monotonic()
    with pytest.raises(PostfixError, match="did not finish in 0.5s"):
        programs.run("postconf", timeout=0.5)
    assert time.monotonic() - started < 10


def test_atomic_write_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "access"
    path.write_text("old\n")
    path.chmod(0o640)
    atomic_write(path, "new\n")
    assert path.read_text() == "new\n" and path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["access"]  # nothing left aside


# ----------------------------------------------------------------- real postconf

def write_cf(path: Path, text: str) -> None:
    """main.cf as if written a while ago (Postfix distrusts a file younger than a second)."""
    path.write_text(text)
    old = time.time() - 10
    os.utime(path, (old, old))


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    d = tmp_path / "etc"
    d.mkdir()
    table = tmp_path / "lan.cidr"
    table.write_text("127.0.9.0/24 OK\n")
    write_cf(d / "main.cf", "compatibility_level = 3.6\ninet_protocols = ipv4\n"
                            "office = !127.0.5.50, 127.0.5.0/24\n"
                            f"mynetworks = 127.0.0.0/24, $office, cidr:{table}, [::1]/128\n")
    return d


@needs_postconf
def test_analyze_trusts_what_postconf_says_not_the_excluded_host(confdir: Path,
                                                                 tmp_path: Path) -> None:
    log = relay_log("127.0.5.50", "127.0.5.9", "127.0.9.4").write(tmp_path / "mail.log")
    r = CliRunner().invoke(main, ["analyze", "--format", "json", "--year", "2026",
                                  "--config-dir", str(confdir), str(log)])
    assert r.exit_code == 1, r.output
    report = json.loads(r.stdout)
    # 127.0.5.50 relayed without being trusted (an open relay or a mistake), the others
    # are hosts of mynetworks: only they are named trusted hosts.
    assert relay_findings(report) == {"127.0.5.50": False, "127.0.5.9": True, "127.0.9.4": True}
    assert report["trusted"] == ["127.0.0.0/24", "!127.0.5.50/32", "127.0.5.0/24",
                                 f"cidr:{tmp_path}/lan.cidr", "::1/128"]
    text = CliRunner().invoke(main, ["analyze", "--year", "2026", "--config-dir", str(confdir),
                                     str(log)]).output
    assert "Host pc[127.0.5.50] (relayed without authentication" in text
    assert "Host pc[127.0.5.9] (trusted network)" in text


@needs_postconf
def test_the_instance_comes_from_the_config_too(confdir: Path) -> None:
    cfg = config.defaults()
    cfg["respond"]["postfix_config_dir"] = str(confdir)
    t = resolve_trusted(cfg)
    assert t.origin == f"postconf -c {confdir} mynetworks"
    assert verdicts(t, "127.0.5.50", "127.0.5.51") == {"127.0.5.50": False, "127.0.5.51": True}
    # --trusted, then [analyze] trusted, come before the instance.
    assert resolve_trusted(cfg, ["10.0.0.0/8"]).networks == ["10.0.0.0/8"]
    cfg["analyze"]["trusted"] = ["192.168.0.0/16"]
    assert resolve_trusted(cfg).origin == "[analyze] trusted"


@needs_postconf
def test_a_named_instance_that_cannot_be_read_is_an_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["analyze", "--config-dir", str(tmp_path), os.devnull])
    assert r.exit_code == 2
    assert r.stderr.strip() == (f"relayguard: error: --config-dir {tmp_path}: no main.cf there "
                                "(a Postfix config_directory?)")
    assert "Traceback" not in r.output


@needs_postconf
def test_postmap_builds_aside_for_the_instance(confdir: Path) -> None:
    table = confdir / "relay_clients"
    build_aside("hash", table, "10.5.5.5 OK\n", config_dir=str(confdir))
    q = programs.run("postmap", "-q", "10.5.5.5", f"hash:{table}", config_dir=str(confdir))
    assert q.ok and q.stdout.strip() == "OK"
    with pytest.raises(PostfixError, match=f"postmap hash:{confdir}/bad: .*fatal"):
        build_aside("hash", confdir / "bad", "a b\n", config_dir=str(confdir / "none"))
    assert sorted(p.name for p in confdir.iterdir()) == ["main.cf", "relay_clients",
                                                         "relay_clients.db"]
