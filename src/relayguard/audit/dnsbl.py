"""Are our outbound addresses on DNS blocklists?  With dnspython, through any resolver.

A DNSBL lookup for 192.0.2.1 on zen.spamhaus.org asks for the A record of
``1.2.0.192.zen.spamhaus.org`` (IPv6: the 32 reversed nibbles, RFC 5782): NXDOMAIN means "not
listed", an address in 127.0.0.0/8 means "listed" and *which* address says why.  Some answers
are not listings at all: Spamhaus answers 127.255.255.254 to queries that come through public
resolvers (8.8.8.8, 1.1.1.1 …), 127.255.255.255 to resolvers that query too much and
127.255.255.252 to a misspelt zone — a naive checker reports those as "listed".

Every list is also asked about 127.0.0.1, which RFC 5782 says no list may contain: a list that
"lists" it lists everybody (an expired domain with a wildcard, a list shut down on purpose), and
its answers are reported as ``unreliable`` instead of ``listed``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.resolver
import dns.reversename

from ..postfix.postconf import PostconfError, postconf
from ..postfix.programs import find_program

DEFAULT_LISTS = ("zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org",
                 "psbl.surriel.com")
STATUSES = ("listed", "not_listed", "refused", "timeout", "unreliable", "error")


@dataclass(frozen=True)
class BlockList:
    zone: str
    name: str
    codes: dict[str, str]
    #: Answers that are not listings but refusals of the query (with the reason).
    refusals: dict[str, str] = field(default_factory=dict)
    delist: str = ""  # {ip} is replaced by the address
    note: str = ""


_SPAMHAUS_REFUSALS = {
    "127.255.255.252": "typing error in the DNSBL name",
    "127.255.255.254": "query via a public/open resolver (or a resolver Spamhaus cannot "
                       "attribute): use your own recursive resolver or Spamhaus DQS",
    "127.255.255.255": "excessive number of queries from this resolver",
}

KNOWN: dict[str, BlockList] = {
    "zen.spamhaus.org": BlockList(
        "zen.spamhaus.org", "Spamhaus ZEN",
        {
            "127.0.0.2": "SBL: direct spam source or spam service (Spamhaus Block List)",
            "127.0.0.3": "SBL CSS: low-reputation sender, snowshoe spam (automated)",
            "127.0.0.4": "XBL: exploited host — malware, botnet, open proxy (CBL data)",
            "127.0.0.5": "XBL: exploited host",
            "127.0.0.6": "XBL: exploited host",
            "127.0.0.7": "XBL: exploited host",
            "127.0.0.9": "SBL DROP/EDROP: hijacked or criminal network",
            "127.0.0.10": "PBL (ISP maintained): this range should not send mail directly",
            "127.0.0.11": "PBL (Spamhaus maintained): this range should not send mail directly",
            "127.0.0.30": "BCL: botnet controller",
        },
        _SPAMHAUS_REFUSALS,
        "https://check.spamhaus.org/",
        "XBL listings usually mean an infected host or a compromised account sending through "
        "you; PBL means the address is dynamic/end-user space — send through your provider's "
        "smarthost or ask the provider to fix the PBL entry.",
    ),
    "bl.spamcop.net": BlockList(
        "bl.spamcop.net", "SpamCop",
        {"127.0.0.2": "reported as a spam source by SpamCop users"},
        {},
        "https://www.spamcop.net/bl.shtml?{ip}",
        "SpamCop listings expire by themselves about 24 hours after the last report: stop the "
        "spam first.",
    ),
    "b.barracudacentral.org": BlockList(
        "b.barracudacentral.org", "Barracuda Reputation Block List",
        {"127.0.0.2": "poor sending reputation (Barracuda BRBL)"},
        {},
        "https://www.barracudacentral.org/rbl/removal-request",
        "Barracuda answers only resolvers registered at barracudacentral.org.",
    ),
    "psbl.surriel.com": BlockList(
        "psbl.surriel.com", "Passive Spam Block List",
        {"127.0.0.2": "sent mail to PSBL spam traps"},
        {},
        "https://psbl.org/listing?ip={ip}",
    ),
}


def blocklist(zone: str) -> BlockList:
    zone = zone.strip().rstrip(".").lower()
    return KNOWN.get(zone) or BlockList(zone, zone, {}, {})


@dataclass
class DnsblResult:
    ip: str
    zone: str
    name: str
    status: str  # one of STATUSES
    codes: list[str] = field(default_factory=list)
    meanings: list[str] = field(default_factory=list)
    txt: list[str] = field(default_factory=list)
    delist: str | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def query_name(ip: str, zone: str) -> str:
    """``4.3.2.1.zone.`` for 1.2.3.4; reversed nibbles for IPv6 (RFC 5782)."""
    rev = dns.reversename.from_address(ip).to_text(omit_final_dot=True)
    rev = rev.removesuffix(".in-addr.arpa").removesuffix(".ip6.arpa")
    return f"{rev}.{zone.rstrip('.')}."


def parse_resolver(spec: str) -> tuple[str, int]:
    """``127.0.0.1``, ``127.0.0.1:5353``, ``::1`` or ``[::1]:5353`` into (address, port)."""
    spec = spec.strip()
    host, port = spec, "53"
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest.startswith(":"):
            port = rest[1:]
    elif spec.count(":") == 1:
        host, _, port = spec.partition(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(f"bad resolver {spec!r}: use an address, ADDRESS:PORT or [IPv6]:PORT"
                         ) from None
    if not 0 < number < 65536:
        raise ValueError(f"bad resolver port in {spec!r}")
    return host, number


def make_resolver(spec: str | None, timeout: float) -> dns.resolver.Resolver:
    """The system's resolver (/etc/resolv.conf), or only ``spec`` when given."""
    if spec:
        host, port = parse_resolver(spec)
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = [host]
        res.port = port
    else:
        try:
            res = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            raise ValueError("no DNS resolver configured (/etc/resolv.conf): use --resolver"
                             ) from None
    res.timeout = timeout
    res.lifetime = timeout
    res.cache = None  # a blocklist answer changes when we get delisted: always ask
    return res


def _failure(exc: dns.exception.DNSException) -> tuple[str, str]:
    """(status, detail) for a query that got no usable answer."""
    if isinstance(exc, dns.exception.Timeout):
        return "timeout", "no answer before the timeout"
    if isinstance(exc, dns.resolver.NoNameservers):
        errors = exc.kwargs.get("errors") or []
        for err in errors:
            response = err[4] if len(err) > 4 else None
            if isinstance(response, dns.message.Message) and \
                    response.rcode() == dns.rcode.REFUSED:
                return "refused", f"the resolver {err[0]} refused the query (REFUSED)"
        if errors:
            return "error", f"the resolver answered {errors[0][3]}"
        return "error", "no resolver answered"
    return "error", str(exc) or type(exc).__name__


def _lookup(res: dns.resolver.Resolver, qname: str, rdtype: str) -> list[str] | None:
    """The answers, or None for NXDOMAIN / no data (not listed)."""
    try:
        answer = res.resolve(qname, rdtype, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    if rdtype == "TXT":
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
    return sorted({r.to_text() for r in answer})


def check_one(res: dns.resolver.Resolver, ip: str, bl: BlockList) -> DnsblResult:
    """``ip`` on one list."""
    result = DnsblResult(ip, bl.zone, bl.name, "not_listed")
    qname = query_name(ip, bl.zone)
    try:
        codes = _lookup(res, qname, "A")
    except dns.exception.DNSException as exc:
        result.status, result.detail = _failure(exc)
        return result
    if not codes:
        result.detail = "NXDOMAIN: not listed"
        return result
    result.codes = codes
    refused = [c for c in codes if c in bl.refusals]
    if refused:
        result.status = "refused"
        result.meanings = [f"{c}: {bl.refusals[c]}" for c in refused]
        result.detail = "the list refused to answer: " + "; ".join(result.meanings)
        return result
    odd = [c for c in codes if not c.startswith("127.")]
    if odd:
        result.status = "error"
        result.detail = f"answer outside 127.0.0.0/8 ({', '.join(odd)}): not a DNSBL answer"
        return result
    result.status = "listed"
    result.meanings = [f"{c}: {bl.codes.get(c, 'listed (meaning not documented here)')}"
                       for c in codes]
    result.delist = bl.delist.replace("{ip}", ip) or None
    # The reason text is a courtesy; the A record decided.
    with contextlib.suppress(dns.exception.DNSException):
        result.txt = _lookup(res, qname, "TXT") or []
    result.detail = bl.note
    return result


def _sane(res: dns.resolver.Resolver, bl: BlockList) -> bool | None:
    """False when the list 'lists' 127.0.0.1 (RFC 5782 test address that must be absent)."""
    try:
        codes = _lookup(res, query_name("127.0.0.1", bl.zone), "A")
    except dns.exception.DNSException:
        return None  # unknown: the real query will report the failure
    return not codes or all(c in bl.refusals for c in codes)


def check_addresses(ips: Sequence[str], zones: Iterable[str] = DEFAULT_LISTS,
                    resolver: str | None = None, timeout: float = 5.0) -> list[DnsblResult]:
    """Every address on every list, queried in parallel (total time ≈ one timeout).

    Raises ValueError for a bad address or resolver (message for the user).
    """
    for ip in ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(f"{ip!r} is not an IP address") from None
    lists = [blocklist(z) for z in dict.fromkeys(zones)]
    res = make_resolver(resolver, timeout)
    jobs = [(ip, bl) for ip in ips for bl in lists]
    # Sanity probes and real queries run side by side, so a dead list costs one timeout.
    with ThreadPoolExecutor(max_workers=max(1, min(32, len(lists) + len(jobs)))) as pool:
        sanity = {bl.zone: pool.submit(_sane, res, bl) for bl in lists}
        futures = [pool.submit(check_one, res, ip, bl) for ip, bl in jobs]
        results = [f.result() for f in futures]
        insane = {zone for zone, f in sanity.items() if f.result() is False}
    for r in results:
        if r.zone in insane and r.status == "listed":
            r.status, r.meanings, r.delist, r.txt = "unreliable", [], None, []
            r.detail = ("the list also 'lists' 127.0.0.1, i.e. everybody: it is dead or refuses "
                        "this resolver; its answer means nothing")
    return results


# --------------------------------------------------------------------------- our addresses
def _public(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    private = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
    return not (addr.is_loopback or addr.is_link_local or addr.is_multicast
                or addr.is_unspecified
                or any(addr in ipaddress.ip_network(n) for n in private
                       if ipaddress.ip_network(n).version == addr.version))


def host_addresses() -> list[str]:
    """This machine's interface addresses (``ip -j address``)."""
    exe = find_program("ip")
    if exe is None:
        return []
    try:
        r = subprocess.run([exe, "-j", "address", "show"], capture_output=True, text=True,
                           timeout=10, check=False)
        data = json.loads(r.stdout or "[]")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return []
    return [a["local"] for iface in data for a in iface.get("addr_info", []) if a.get("local")]


def default_addresses(config_dir: str | None = None) -> tuple[list[str], str]:
    """Our outbound addresses and where they came from.

    Postfix's ``smtp_bind_address``/``smtp_bind_address6`` when set (mail leaves from there),
    else the machine's public interface addresses.  Private ones are left out: blocklists see
    the address after NAT, which only the administrator knows.
    """
    try:
        out, _ = postconf(["-h", "smtp_bind_address", "smtp_bind_address6"], config_dir)
        bound = [ln.strip() for ln in out.splitlines() if ln.strip()]
    except PostconfError:
        if config_dir is not None:
            raise
        bound = []
    if bound:
        return bound, "postconf smtp_bind_address"
    found = host_addresses()
    public = [a for a in found if _public(a)]
    if public:
        return public, "this machine's public interface addresses"
    return [], ("no public address found (" + (", ".join(found) or "no addresses") + "); "
                "behind NAT, name the public address: relayguard dnsbl 203.0.113.5")
