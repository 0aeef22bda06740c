"""The nftables ban backend, for real, inside a private network namespace (`unshare -n`): the
table, sets and rules are created by the backend's code, a banned source address can no longer
reach port 25 there while another one can, timeouts are the kernel's, and the host's own
ruleset is never touched."""

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

NFT = shutil.which("nft") or ("/usr/sbin/nft" if os.path.exists("/usr/sbin/nft") else None)
UNSHARE = shutil.which("unshare")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or NFT is None or UNSHARE is None or shutil.which("ip") is None,
    reason="needs root, nft (apt-get install nftables), unshare and ip (iproute2)")

# Runs inside the namespace; prints one JSON object of observations.
SCRIPT = textwrap.dedent(r'''
    import json, socket, subprocess, sys, threading, time
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    from relayguard.respond import Banner, NftablesBackend
    from relayguard.state.shared import SqliteShared
    from relayguard.state.store import Store

    out = {}
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 25))
    srv.listen(64)

    def serve():
        while True:
            c, _ = srv.accept()
            c.sendall(b"220 test ESMTP\r\n")
            c.close()

    threading.Thread(target=serve, daemon=True).start()

    def reaches(src):
        try:
            with socket.create_connection(("127.0.0.1", 25), timeout=0.4,
                                          source_address=(src, 0)) as s:
                return s.recv(4).startswith(b"220")
        except OSError:
            return False

    def nft_json(*args):
        r = subprocess.run(["nft", "-j", *args], capture_output=True, text=True)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def elements(name):
        data = nft_json("list", "set", "inet", "relayguard", name)
        for item in data["nftables"]:
            if "set" in item:
                return item["set"].get("elem", [])

    shared = SqliteShared(Store(sys.argv[1]))
    cfg = {"bruteforce": {"ban_backend": "nftables", "allow": ["127.0.0.1/32"]}}
    b = Banner(shared, cfg)
    out["before"] = {"127.0.0.2": reaches("127.0.0.2"), "127.0.0.1": reaches("127.0.0.1")}

    b.ban("127.0.0.2", "test", 600, source="test")
    out["set_v4"] = elements("banned_v4")
    out["banned"] = {"127.0.0.2": reaches("127.0.0.2"), "127.0.0.1": reaches("127.0.0.1"),
                     "127.0.0.4": reaches("127.0.0.4")}

    # a network, and an overlapping wider one (interval sets refuse overlaps: the widest wins)
    b.ban("127.0.1.0/24", "net", 600)
    b.ban("127.0.2.0/24", "net", 600)
    b.ban("127.0.2.128/25", "inside", None)
    out["set_net_v4"] = elements("banned_net_v4")
    out["net"] = {"127.0.1.9": reaches("127.0.1.9"), "127.0.2.200": reaches("127.0.2.200"),
                  "127.0.3.1": reaches("127.0.3.1")}

    # re-banning replaces the timeout; creating the table again adds no duplicate rule
    b.ban("127.0.0.2", "again", 1200)
    Banner(SqliteShared(Store(sys.argv[1])), cfg).ban("127.0.0.5", "x", 60)
    table = nft_json("list", "table", "inet", "relayguard")
    out["rules"] = [r["rule"]["chain"] for r in table["nftables"] if "rule" in r]
    out["chains"] = {c["chain"]["name"]: [c["chain"].get("hook"), c["chain"].get("policy")]
                     for c in table["nftables"] if "chain" in c}
    out["set_v4_again"] = elements("banned_v4")

    # the kernel expires a ban by itself; expire() then reports it and cleans the state
    b.ban("127.0.0.3", "short", 1)
    out["short_banned"] = reaches("127.0.0.3")
    time.sleep(1.6)
    out["short_after"] = reaches("127.0.0.3")
    out["expired"] = [x.network for x in b.expire()]

    # unban; then the table vanishes (reboot, flush ruleset) and sync() restores every ban
    b.unban("127.0.0.2")
    out["unbanned"] = reaches("127.0.0.2")
    b.unban("127.0.2.0/24")
    out["after_net_unban"] = {"127.0.2.10": reaches("127.0.2.10"),
                              "127.0.2.200": reaches("127.0.2.200")}
    subprocess.run(["nft", "delete", "table", "inet", "relayguard"], check=True)
    out["gone"] = reaches("127.0.1.9")
    out["synced"] = b.sync()
    out["after_sync"] = {"127.0.1.9": reaches("127.0.1.9"), "127.0.0.5": reaches("127.0.0.5"),
                         "127.0.2.200": reaches("127.0.2.200")}
    try:
        b.ban("127.0.0.1", "never", 60)
    except Exception as exc:
        out["refused"] = type(exc).__name__
    print(json.dumps(out))
''')


def _host_ruleset() -> str:
    r = subprocess.run([NFT, "list", "ruleset"], capture_output=True, text=True, check=False)
    return r.stdout + r.stderr


def test_nftables_backend_in_private_namespace(tmp_path: Path) -> None:
    script = tmp_path / "ns.py"
    script.write_text(SCRIPT)
    before = _host_ruleset()
    r = subprocess.run([UNSHARE, "-n", sys.executable, str(script), str(tmp_path / "s.db")],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    assert _host_ruleset() == before  # the host's firewall is untouched

    assert out["before"] == {"127.0.0.2": True, "127.0.0.1": True}
    # the element carries its timeout
    (elem,) = out["set_v4"]
    assert elem["elem"]["val"] == "127.0.0.2"
    assert elem["elem"]["timeout"] == 600 and 590 <= elem["elem"]["expires"] <= 600
    # dropped from the banned source only
    assert out["banned"] == {"127.0.0.2": False, "127.0.0.1": True, "127.0.0.4": True}
    nets = {e["elem"]["val"]["prefix"]["addr"] + "/" + str(e["elem"]["val"]["prefix"]["len"])
            for e in out["set_net_v4"]}
    assert nets == {"127.0.1.0/24", "127.0.2.0/24"}  # the /25 inside the /24 is not loaded twice
    assert out["net"] == {"127.0.1.9": False, "127.0.2.200": False, "127.0.3.1": True}
    assert sorted(out["rules"]) == ["forward"] * 4 + ["input"] * 4
    assert out["chains"] == {"input": ["input", "accept"], "forward": ["forward", "accept"]}
    again = {e["elem"]["val"]: e["elem"] for e in out["set_v4_again"]}
    assert again["127.0.0.2"]["timeout"] == 1200 and again["127.0.0.5"]["timeout"] == 60
    assert out["short_banned"] is False and out["short_after"] is True
    assert out["expired"] == ["127.0.0.3"]
    assert out["unbanned"] is True
    # the /25 ban (until removed) comes back into the set once the /24 is lifted
    assert out["after_net_unban"] == {"127.0.2.10": True, "127.0.2.200": False}
    assert out["gone"] is True
    assert out["synced"] == 3  # 127.0.1.0/24, 127.0.2.128/25, 127.0.0.5
    assert out["after_sync"] == {"127.0.1.9": False, "127.0.0.5": False, "127.0.2.200": False}
    assert out["refused"] == "Refused"
