"""`relayguard dnsbl` against a real DNS server on loopback (dnspython's wire format, UDP).

The server plays the blocklists: NXDOMAIN for addresses that are not listed, 127.0.0.x codes for
listed ones, Spamhaus' 127.255.255.254 "public resolver" answer, a REFUSED rcode, a zone that
never answers (timeout) and a dead list that "lists" everything.  Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from relayguard.audit.dnsbl import (
    check_addresses,
    default_addresses,
    parse_resolver,
    query_name,
)
from relayguard.postfix.programs import find_program

LISTED = "192.0.2.99"       # on zen (XBL) and spamcop
CLEAN = "192.0.2.1"         # nowhere
PBL = "198.51.100.20"       # zen PBL only
PUBLIC_RESOLVER = "203.0.113.7"  # zen answers "you asked through a public resolver"
V6 = "2001:db8::25"         # listed on zen (SBL)


class FakeDNS:
    """A UDP DNS server on 127.0.0.1:<free port> answering from a table."""

    def __init__(self) -> None:
        self.a: dict[str, list[str]] = {}
        self.txt: dict[str, list[str]] = {}
        self.refused_zones: set[str] = set()
        self.silent_zones: set[str] = set()
        self.wildcard_zones: dict[str, str] = {}
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def list(self, ip: str, zone: str, *codes: str, txt: str | None = None) -> None:
        name = query_name(ip, zone).lower()
        self.a[name] = list(codes)
        if txt:
            self.txt[name] = [txt]

    def _zone_of(self, name: str, zones: Iterator[str] | set[str] | dict[str, str]) -> str | None:
        return next((z for z in zones if name.endswith(f".{z}.")), None)

    def _answer(self, query: dns.message.Message) -> dns.message.Message | None:
        q = query.question[0]
        name = q.name.to_text().lower()
        self.queries.append(name)
        if self._zone_of(name, self.silent_zones):
            return None
        resp = dns.message.make_response(query)
        if self._zone_of(name, self.refused_zones):
            resp.set_rcode(dns.rcode.REFUSED)
            return resp
        wildcard = self._zone_of(name, self.wildcard_zones)
        records = ([self.wildcard_zones[wildcard]] if wildcard else self.a.get(name))
        if records is None:
            resp.set_rcode(dns.rcode.NXDOMAIN)
            return resp
        if q.rdtype == dns.rdatatype.A:
            resp.answer.append(dns.rrset.from_text(name, 60, "IN", "A", *records))
        elif q.rdtype == dns.rdatatype.TXT and name in self.txt:
            resp.answer.append(dns.rrset.from_text(
                name, 60, "IN", "TXT", *[f'"{t}"' for t in self.txt[name]]))
        return resp

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                resp = self._answer(dns.message.from_wire(data))
            except Exception:  # a malformed packet must not kill the server
                continue
            if resp is not None:
                self.sock.sendto(resp.to_wire(), peer)

    def start(self) -> FakeDNS:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture(scope="module")
def fake_dns() -> Iterator[FakeDNS]:
    srv = FakeDNS()
    srv.list(LISTED, "zen.spamhaus.org", "127.0.0.4",
             txt="https://check.spamhaus.org/query/ip/192.0.2.99")
    srv.list(LISTED, "bl.spamcop.net", "127.0.0.2")
    srv.list(PBL, "zen.spamhaus.org", "127.0.0.10", "127.0.0.11")
    srv.list(PUBLIC_RESOLVER, "zen.spamhaus.org", "127.255.255.254")
    srv.list(V6, "zen.spamhaus.org", "127.0.0.2")
    srv.refused_zones.add("refusing.example")
    srv.silent_zones.add("silent.example")
    srv.wildcard_zones["dead.example"] = "127.0.0.2"
    srv.start()
    yield srv
    srv.stop()


def rg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relayguard", *args], capture_output=True,
                          text=True, timeout=60)


def by_key(results):
    return {(r.ip, r.zone): r for r in results}


def test_query_names() -> None:
    assert query_name("192.0.2.99", "zen.spamhaus.org") == "99.2.0.192.zen.spamhaus.org."
    v6 = query_name("2001:db8::25", "zen.spamhaus.org")
    assert v6.startswith("5.2.0.0.0.0.0.0") and v6.endswith(".8.b.d.0.1.0.0.2.zen.spamhaus.org.")
    assert len(v6.split(".")) == 32 + 4  # 32 nibbles, 3 zone labels, the root


def test_listed_not_listed_refused(fake_dns: FakeDNS) -> None:
    results = by_key(check_addresses(
        [LISTED, CLEAN, PBL, PUBLIC_RESOLVER, V6], ["zen.spamhaus.org", "bl.spamcop.net"],
        resolver=fake_dns.address, timeout=2))
    xbl = results[(LISTED, "zen.spamhaus.org")]
    assert xbl.status == "listed"
    assert xbl.codes == ["127.0.0.4"]
    assert "XBL" in xbl.meanings[0]
    assert xbl.delist == "https://check.spamhaus.org/"
    assert xbl.txt == ["https://check.spamhaus.org/query/ip/192.0.2.99"]
    spamcop = results[(LISTED, "bl.spamcop.net")]
    assert spamcop.status == "listed"
    assert spamcop.delist == f"https://www.spamcop.net/bl.shtml?{LISTED}"
    assert results[(CLEAN, "zen.spamhaus.org")].status == "not_listed"
    assert results[(CLEAN, "bl.spamcop.net")].status == "not_listed"
    pbl = results[(PBL, "zen.spamhaus.org")]
    assert pbl.status == "listed" and pbl.codes == ["127.0.0.10", "127.0.0.11"]
    assert all("PBL" in m for m in pbl.meanings)
    refused = results[(PUBLIC_RESOLVER, "zen.spamhaus.org")]
    assert refused.status == "refused"  # not "listed": that is the classic misreading
    assert "public/open resolver" in refused.detail
    assert results[(V6, "zen.spamhaus.org")].status == "listed"


def test_refused_rcode_timeout_and_dead_list(fake_dns: FakeDNS) -> None:
    results = by_key(check_addresses(
        [CLEAN, LISTED], ["refusing.example", "silent.example", "dead.example"],
        resolver=fake_dns.address, timeout=0.5))
    assert results[(CLEAN, "refusing.example")].status == "refused"
    assert "REFUSED" in results[(CLEAN, "refusing.example")].detail
    assert results[(CLEAN, "silent.example")].status == "timeout"
    assert results[(LISTED, "silent.example")].status == "timeout"
    # dead.example "lists" 127.0.0.1 too, so its answers mean nothing.
    assert results[(CLEAN, "dead.example")].status == "unreliable"
    assert "1.0.0.127.dead.example." in fake_dns.queries


def test_cli_listed_exit_1_with_meaning_and_delisting(fake_dns: FakeDNS) -> None:
    r = rg("dnsbl", LISTED, CLEAN, "--resolver", fake_dns.address, "--list", "zen.spamhaus.org",
           "--list", "bl.spamcop.net", "--timeout", "2", "--format", "json")
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    assert data["schema"] == "relayguard.dnsbl/1" and data["listed"] is True
    statuses = {(x["ip"], x["zone"]): x["status"] for x in data["results"]}
    assert statuses[(LISTED, "zen.spamhaus.org")] == "listed"
    assert statuses[(CLEAN, "zen.spamhaus.org")] == "not_listed"
    text = rg("dnsbl", LISTED, "--resolver", fake_dns.address, "--list", "zen.spamhaus.org",
              "--timeout", "2")
    assert text.returncode == 1
    assert "XBL" in text.stdout and "https://check.spamhaus.org/" in text.stdout


def test_cli_clean_exit_0_even_with_a_timeout(fake_dns: FakeDNS) -> None:
    r = rg("dnsbl", CLEAN, "--resolver", fake_dns.address, "--list", "zen.spamhaus.org",
           "--list", "silent.example", "--timeout", "0.5")
    assert r.returncode == 0, r.stderr
    assert "not listed" in r.stdout and "timeout" in r.stdout


def test_cli_nothing_answered_is_an_error(fake_dns: FakeDNS) -> None:
    r = rg("dnsbl", CLEAN, "--resolver", fake_dns.address, "--list", "silent.example",
           "--list", "refusing.example", "--timeout", "0.3")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("relayguard: error: no blocklist")


def test_cli_resolver_from_config_file(fake_dns: FakeDNS, tmp_path: Path) -> None:
    conf = tmp_path / "relayguard.toml"
    conf.write_text(f'[dnsbl]\nresolver = "{fake_dns.address}"\nlists = ["zen.spamhaus.org"]\n'
                    f'timeout = 2.0\naddresses = ["{PBL}"]\n')
    r = rg("dnsbl", "--config", str(conf), "--format", "json")
    assert r.returncode == 1, r.stderr
    (only,) = json.loads(r.stdout)["results"]
    assert only["ip"] == PBL and only["status"] == "listed"


@pytest.mark.parametrize("args, message", [
    (["not-an-ip", "--resolver", "127.0.0.1:53"], "not an IP address"),
    (["192.0.2.1", "--resolver", "dns.example:53"], "bad resolver"),
])
def test_cli_bad_input(args: list[str], message: str) -> None:
    r = rg("dnsbl", *args, "--list", "zen.spamhaus.org")
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


def test_parse_resolver() -> None:
    assert parse_resolver("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_resolver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_resolver("[::1]:5353") == ("::1", 5353)
    assert parse_resolver("::1") == ("::1", 53)
    with pytest.raises(ValueError):
        parse_resolver("127.0.0.1:0")


@pytest.mark.skipif(find_program("postconf") is None, reason="postfix not installed")
def test_default_addresses_from_smtp_bind_address(tmp_path: Path, fake_dns: FakeDNS) -> None:
    (tmp_path / "main.cf").write_text("myhostname = mx.example.com\nsmtp_bind_address = 192.0.2.99\n")
    (tmp_path / "master.cf").write_text("")
    # postconf re-reads a file changed within the last second until it is older (up to ~2 s).
    for name in ("main.cf", "master.cf"):
        os.utime(tmp_path / name, (time.time() - 60, time.time() - 60))
    assert default_addresses(str(tmp_path)) == (["192.0.2.99"], "postconf smtp_bind_address")
    r = rg("dnsbl", "--config-dir", str(tmp_path), "--resolver", fake_dns.address,
           "--list", "zen.spamhaus.org", "--timeout", "2", "--format", "json")
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    assert data["addresses"] == [LISTED] and data["source"] == "postconf smtp_bind_address"
