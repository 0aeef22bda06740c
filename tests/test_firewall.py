"""`relayguard firewall log-smtp` for real, inside a private network namespace, and the kernel
log lines it produces read by the parser and the direct_smtp detector.

Everything that touches nftables runs in a child process started with ``unshare -n``: it gets a
network namespace of its own with an empty ruleset, so the host's rules are never read or
changed. There the script enables the rule, checks ``nft -j list ruleset``, enables again (still
one rule), changes the rate (replaced, still one rule), routes a TCP SYN to port 25 and one to
port 80 between two more namespaces joined by veth pairs (documentation addresses only, nothing
leaves the namespaces) and checks that only the first is counted, then disables.

The kernel does not write LOG lines for namespaces other than the host's
(net.netfilter.nf_log_all_netns = 0, a host-wide setting the tests leave alone), so the log
line format is tested on lines as the kernel writes them, through the parser.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from relayguard.analysis import analyze
from relayguard.config import defaults
from relayguard.firewall.nft import FirewallError, LogSmtpRule, parse_rule
from relayguard.parse import LineParser

# ------------------------------------------------------------------ the nft rule


def test_rule_script_is_one_table_recreated_atomically() -> None:
    rule = LogSmtpRule.make()
    script = rule.script()
    assert script.startswith("table inet relayguard_log {\n}\ndelete table inet relayguard_log\n")
    assert "type filter hook forward priority -10; policy accept;" in script
    assert ('tcp dport { 25, 465, 587 } tcp flags & (fin | syn | rst | ack) == syn counter '
            'limit rate 10/second burst 20 packets log prefix "relayguard-smtp: "') in script
    assert "drop" not in script and "reject" not in script  # it only observes
    one = LogSmtpRule.make(prefix="smtp-out", rate="3/m", burst=5, ports=[25])
    assert one.rate == "3/minute" and "tcp dport 25 " in one.rule_text()


@pytest.mark.parametrize(("kw", "message"), [
    ({"prefix": 'x" ; flush ruleset ; "'}, "--prefix"),
    ({"prefix": "a" * 64}, "--prefix"),
    ({"prefix": ""}, "--prefix"),
    ({"rate": "10/fortnight"}, "--rate"),
    ({"rate": "0/second"}, "--rate"),
    ({"rate": "10/second; flush ruleset"}, "--rate"),
    ({"burst": 0}, "--burst"),
    ({"ports": [0]}, "--ports"),
    ({"ports": [70000]}, "--ports"),
    ({"ports": []}, "--ports"),
])
def test_rule_settings_are_validated(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(FirewallError, match=message):
        LogSmtpRule.make(**kw)


def test_rule_read_back_from_nft_json() -> None:
    expr = [
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                   "right": {"set": [25, 465, 587]}}},
        {"match": {"op": "==", "left": {"&": [{"payload": {"protocol": "tcp", "field": "flags"}},
                                              ["fin", "syn", "rst", "ack"]]}, "right": "syn"}},
        {"counter": {"packets": 7, "bytes": 420}},
        {"limit": {"rate": 10, "burst": 20, "per": "second"}},
        {"log": {"prefix": "relayguard-smtp: "}},
    ]
    rule, packets, nbytes = parse_rule(expr)
    assert rule == LogSmtpRule.make() and packets == 7 and nbytes == 420
    assert parse_rule(expr[:1] + expr[2:])[0] is None  # no SYN match: not ours
    assert parse_rule([{"log": {"prefix": "other"}}])[0] is None


# --------------------------------------------------------- for real, in a namespace

NS_SCRIPT = textwrap.dedent(r'''
    import json, os, socket, subprocess, sys, time
    from click.testing import CliRunner
    from relayguard.cli import main

    host_ns, state = sys.argv[1], sys.argv[2]
    # Never on the host's own network stack.
    assert os.readlink("/proc/self/ns/net") != host_ns, "not in a private network namespace"
    out = {}

    def rg(*args):
        r = CliRunner().invoke(main, ["firewall", "log-smtp", *args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    def ruleset():
        r = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True,
                           check=True)
        return [o for o in json.loads(r.stdout)["nftables"] if "metainfo" not in o]

    def sh(*argv):
        subprocess.run(list(argv), check=True, capture_output=True)

    out["status_before"] = rg("status", "--format", "json")
    out["ruleset_before"] = ruleset()
    out["enable"] = rg("enable", "--state", state, "--format", "json")
    out["ruleset_enabled"] = ruleset()
    out["enable_again"] = rg("enable", "--state", state, "--format", "json")
    out["ruleset_again"] = ruleset()

    # Two more namespaces, B (a LAN PC) and C (a remote MTA), routed through this one.
    kids = [subprocess.Popen(["unshare", "-n", "sleep", "30"]) for _ in range(2)]
    try:
        time.sleep(0.2)
        b, c = (str(k.pid) for k in kids)
        sh("ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "rgA0", "type", "veth", "peer", "name", "rgB0")
        sh("ip", "link", "add", "rgA1", "type", "veth", "peer", "name", "rgC0")
        sh("ip", "link", "set", "rgB0", "netns", b)
        sh("ip", "link", "set", "rgC0", "netns", c)
        sh("ip", "addr", "add", "192.0.2.1/24", "dev", "rgA0")
        sh("ip", "addr", "add", "198.51.100.1/24", "dev", "rgA1")
        sh("ip", "link", "set", "rgA0", "up")
        sh("ip", "link", "set", "rgA1", "up")
        with open("/proc/sys/net/ipv4/ip_forward", "w") as fh:  # this namespace's own copy
            fh.write("1")
        for pid, dev, addr, gw in ((b, "rgB0", "192.0.2.2/24", "192.0.2.1"),
                                   (c, "rgC0", "198.51.100.7/24", "198.51.100.1")):
            sh("nsenter", "-t", pid, "-n", "ip", "addr", "add", addr, "dev", dev)
            sh("nsenter", "-t", pid, "-n", "ip", "link", "set", dev, "up")
            sh("nsenter", "-t", pid, "-n", "ip", "route", "add", "default", "via", gw)

        def connect_from_b(port):
            code = ("import socket\n"
                    "try:\n"
                    f"    socket.create_connection(('198.51.100.7', {port}), timeout=3)\n"
                    "except ConnectionRefusedError:\n"
                    "    print('refused')\n")
            r = subprocess.run(["nsenter", "-t", b, "-n", sys.executable, "-c", code],
                               capture_output=True, text=True, timeout=20)
            return r.stdout.strip() or r.stderr.strip()

        out["port25"] = connect_from_b(25)  # nothing listens in C: a SYN, then a RST
        out["after25"] = rg("status", "--format", "json")
        out["port80"] = connect_from_b(80)
        out["after80"] = rg("status", "--format", "json")
        out["port587"] = connect_from_b(587)
        out["after587"] = rg("status", "--format", "json")
    finally:
        for k in kids:
            k.kill()
            k.wait()

    out["update"] = rg("enable", "--rate", "5/minute", "--prefix", "smtp-direct", "--state",
                       state, "--format", "json")
    out["ruleset_updated"] = ruleset()
    r = CliRunner().invoke(main, ["firewall", "log-smtp", "status"])
    out["status_text"] = r.stdout
    out["disable"] = rg("disable", "--state", state, "--format", "json")
    out["disable_again"] = rg("disable", "--state", state, "--format", "json")
    out["ruleset_after"] = ruleset()
    print(json.dumps(out))
''')


def _namespace_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (unshare -n)"
    for tool in ("unshare", "nsenter", "nft", "ip"):
        if not shutil.which(tool):
            return f"{tool} not installed (apt-get install util-linux nftables iproute2)"
    r = subprocess.run(["unshare", "-n", "nft", "list", "ruleset"], capture_output=True,
                       text=True, check=False)
    if r.returncode != 0:
        return f"cannot use nftables in a private network namespace: {r.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def in_namespace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    why = _namespace_problem()
    if why:
        pytest.skip(why)
    state = tmp_path_factory.mktemp("fw") / "state.db"
    host_ns = os.readlink("/proc/self/ns/net")
    r = subprocess.run(["unshare", "-n", sys.executable, "-c", NS_SCRIPT, host_ns, str(state)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["state"] = str(state)
    return out


def _tables(ruleset: list[dict[str, Any]]) -> list[str]:
    return [f"{o['table']['family']} {o['table']['name']}" for o in ruleset if "table" in o]


def _rules(ruleset: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o["rule"] for o in ruleset if "rule" in o]


def test_enable_installs_one_rule_in_its_own_table(in_namespace: dict[str, Any]) -> None:
    out = in_namespace
    assert out["status_before"]["enabled"] is False and out["ruleset_before"] == []
    assert out["enable"]["outcome"] == "enabled" and out["enable"]["enabled"] is True
    assert _tables(out["ruleset_enabled"]) == ["inet relayguard_log"]
    chain = next(o["chain"] for o in out["ruleset_enabled"] if "chain" in o)
    assert chain["hook"] == "forward" and chain["policy"] == "accept"
    (rule,) = _rules(out["ruleset_enabled"])
    exprs = {next(iter(e)) for e in rule["expr"]}
    assert {"match", "counter", "limit", "log"} <= exprs
    log = next(e["log"] for e in rule["expr"] if "log" in e)
    assert log["prefix"] == "relayguard-smtp: "
    limit = next(e["limit"] for e in rule["expr"] if "limit" in e)
    assert (limit["rate"], limit["per"]) == (10, "second")
    assert out["enable"]["ports"] == [25, 465, 587]


def test_enable_twice_is_still_one_rule(in_namespace: dict[str, Any]) -> None:
    out = in_namespace
    assert out["enable_again"]["outcome"] == "unchanged"
    assert len(_rules(out["ruleset_again"])) == 1
    assert out["update"]["outcome"] == "updated"
    (rule,) = _rules(out["ruleset_updated"])
    assert next(e["log"] for e in rule["expr"] if "log" in e)["prefix"] == "smtp-direct: "
    assert out["update"]["rate"] == "5/minute"
    assert "smtp-direct: " in out["status_text"] and "5/minute" in out["status_text"]


def test_forwarded_smtp_connections_are_counted(in_namespace: dict[str, Any]) -> None:
    out = in_namespace
    assert out["port25"] == "refused"  # the SYN crossed the router; C answered RST
    assert out["after25"]["connections"] == 1
    assert out["port80"] == "refused" and out["after80"]["connections"] == 1  # not SMTP
    assert out["after587"]["connections"] == 2


def test_disable_removes_the_table(in_namespace: dict[str, Any]) -> None:
    out = in_namespace
    assert out["disable"]["removed"] is True and out["disable_again"]["removed"] is False
    assert out["ruleset_after"] == []


def test_changes_are_in_the_audit_trail(in_namespace: dict[str, Any]) -> None:
    from relayguard.state import Store

    with Store(in_namespace["state"]) as s:
        actions = [e["action"] for e in reversed(s.history(None))]
    # "unchanged" is not a change: enable, update, disable (the second disable did nothing).
    assert actions == ["firewall-log-smtp-enable", "firewall-log-smtp-enable",
                       "firewall-log-smtp-disable"]


# ------------------------------------------------------------ the lines it produces

KERNEL_LINES = [
    # Classic syslog (rsyslog's /var/log/kern.log), with the kernel's [uptime] stamp.
    "Jun 21 08:34:30 gw kernel: [123.4] relayguard-smtp: IN=eth1 OUT=eth0 "
    "MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC=192.168.1.50 DST=198.51.100.7 LEN=60 "
    "TOS=0x00 PREC=0x00 TTL=63 ID=54321 DF PROTO=TCP SPT=51234 DPT=25 WINDOW=64240 RES=0x00 "
    "SYN URGP=0 ",
    # Without the uptime stamp (journald's syslog forwarding), port 587.
    "Jun 21 08:34:31 gw kernel: relayguard-smtp: IN=eth1 OUT=eth0 SRC=192.168.1.50 "
    "DST=198.51.100.8 LEN=60 PROTO=TCP SPT=51235 DPT=587 WINDOW=64240 SYN URGP=0",
    # RFC 3339 stamps (rsyslog's high-precision format), IPv6.
    "2026-06-21T08:34:32.123456+00:00 gw kernel: [  123.456789] relayguard-smtp: IN=eth1 "
    "OUT=eth0 MAC=00:11 SRC=2001:db8::5 DST=2001:db8:1::7 LEN=80 TC=0 HOPLIMIT=63 FLOWLBL=0 "
    "PROTO=TCP SPT=51236 DPT=465 WINDOW=64800 RES=0x00 SYN URGP=0",
]


@pytest.mark.parametrize(("line", "src", "dst", "dpt", "spt"), [
    (KERNEL_LINES[0], "192.168.1.50", "198.51.100.7", 25, "51234"),
    (KERNEL_LINES[1], "192.168.1.50", "198.51.100.8", 587, "51235"),
    (KERNEL_LINES[2], "2001:db8::5", "2001:db8:1::7", 465, "51236"),
])
def test_nftables_log_lines_parse_as_firewall_events(line: str, src: str, dst: str, dpt: int,
                                                     spt: str) -> None:
    ev = LineParser(year=2026).parse(line)
    assert ev is not None and ev.event == "firewall"
    f = ev.fields
    assert (f["src"], f["dst"], f["dpt"], f["proto"]) == (src, dst, dpt, "TCP")
    assert f["spt"] == spt and f["in_iface"] == "eth1" and f["out_iface"] == "eth0"
    assert ev.host == "gw" and ev.service == "kernel"


def test_logged_pc_becomes_a_direct_smtp_finding(tmp_path: Path) -> None:
    lines = [f"Jun 21 08:{30 + i // 60:02d}:{i % 60:02d} gw kernel: [{1000 + i}.0] relayguard-smtp: "
             f"IN=eth1 OUT=eth0 SRC=192.168.1.50 DST=198.51.100.{1 + i % 40} LEN=60 PROTO=TCP "
             f"SPT={40000 + i} DPT=25 WINDOW=64240 SYN URGP=0" for i in range(60)]
    log = tmp_path / "kern.log"
    log.write_text("\n".join(lines) + "\n")
    result = analyze([str(log)], defaults(), ["127.0.0.0/8"], 2026)
    found = [f for f in result.findings if f.kind == "direct_smtp"]
    assert [f.subject for f in found] == ["192.168.1.50"]
