"""Who may relay without logging in: mynetworks, set or computed from the interfaces."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from ...postfix.mynetworks import Entry, Network, Source
from ...postfix.mynetworks import build as build_mynetworks
from ...postfix.postconf import Service
from ..context import ConfigFinding, Ctx

#: Networks that are nobody else's: RFC 1918, RFC 4193 (ULA), link-local.  Python's
#: `is_private` also counts the documentation ranges (192.0.2.0/24, ...), which stand for
#: public addresses in examples and tests, so the list is explicit.
PRIVATE = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "fc00::/7", "fe80::/10"))


def listed_networks(value: str) -> tuple[list[tuple[str, Network]], list[str]]:
    """The networks a mynetworks value trusts (inline, pattern files, cidr and exact-address
    tables, read by the one model), and the entries that cannot be read (other tables, missing
    files, host names). Exclusions are left out: they only narrow the list."""
    model = build_mynetworks(value)
    nets: list[tuple[str, Network]] = []
    unchecked: list[str] = []
    for slot in model.order:
        entries = [slot] if isinstance(slot, Entry) else model.source_entries(slot)
        if not isinstance(slot, Entry) and (slot.path is None or slot.path not in model.texts):
            unchecked.append(slot.spec)
        for e in entries:
            if e.negated or (isinstance(slot, Source) and slot.negated):
                continue
            if e.network is None:
                unchecked.append(e.pattern)
            else:
                nets.append((e.pattern, e.network))
    return nets, unchecked


def classify(net: Any) -> str:
    """``ok`` (loopback, narrow private), ``broad`` (private but huge), ``public`` (someone
    else's addresses, narrow), ``wide`` (more of the internet than anyone means to trust)."""
    v4 = net.version == 4
    if net.is_loopback:
        return "ok"
    if any(net.version == p.version and net.subnet_of(p) for p in PRIVATE):
        return "broad" if net.prefixlen < (16 if v4 else 48) else "ok"
    if net.prefixlen < (8 if v4 else 16):
        return "wide"
    # Public, shared (100.64.0.0/10: the ISP's other customers) or reserved space.
    return "wide" if net.prefixlen < (24 if v4 else 56) else "public"


def check_mynetworks(ctx: Ctx) -> Iterable[ConfigFinding]:
    cfg = ctx.cfg
    sources: list[tuple[Service | None, str]] = [(None, cfg.get("mynetworks"))]
    sources += [(s, s.overrides["mynetworks"]) for s in ctx.public if "mynetworks" in s.overrides]
    explicit = "mynetworks" in cfg.explicit
    safe = "127.0.0.0/8 [::1]/128"
    for svc, value in sources:
        nets, unchecked = listed_networks(value)
        where = f"service {svc.key} (-o mynetworks)" if svc else "mynetworks"
        origin = "" if explicit or svc else (
            f" mynetworks is not set, so Postfix computed it from mynetworks_style = "
            f"{cfg.get('mynetworks_style')} and this machine's interfaces.")
        by_kind: dict[str, list[str]] = {}
        for text, net in nets:
            by_kind.setdefault(classify(net), []).append(text)
        # The fix keeps loopback, narrow private and narrow public entries (those have findings
        # of their own); wide and broad ones go, and the admin adds back single hosts.
        keep = " ".join(t for t, n in nets if classify(n) in ("ok", "public")) or safe
        fix_line = (ctx.fix.service(svc.key, "mynetworks", keep) if svc
                    else ctx.fix.main("mynetworks", keep))
        comment = ("# then add only the hosts that must relay without logging in, one address "
                   "each (e.g. 192.0.2.10/32); everyone else uses SMTP AUTH on port 587")
        svc_key = svc.key if svc else None
        if by_kind.get("wide"):
            yield ConfigFinding(
                "wide_mynetworks", "critical",
                f"{where} trusts far more than your own hosts",
                f"{where} contains {', '.join(by_kind['wide'])}: every host there may relay mail "
                f"to anywhere without a password — to spammers this is an open relay.{origin}",
                "\n".join([fix_line, comment]), svc_key)
        if by_kind.get("broad"):
            yield ConfigFinding(
                "broad_mynetworks", "medium",
                f"{where} trusts whole private networks",
                f"{where} contains {', '.join(by_kind['broad'])}: any infected PC, printer or "
                f"intranet box in there relays without a password (the seeds' 'compromised "
                f"trusted host').{origin}",
                "\n".join([fix_line, comment]), svc_key)
        if by_kind.get("public"):
            yield ConfigFinding(
                "public_mynetworks", "low",
                f"{where} trusts public addresses",
                f"{where} contains {', '.join(by_kind['public'])}: make sure each is a host you "
                f"run and still need; a host you no longer control can relay through you.{origin}",
                "# remove every public entry you do not run yourself:\n" + fix_line, svc_key)
        if unchecked:
            yield ConfigFinding(
                "mynetworks_unchecked", "low",
                f"{where} has entries the audit cannot read",
                f"{', '.join(unchecked)}: tables, files or host names; check by hand that they "
                f"hold only your own relay hosts.",
                "# postmap -s TABLE lists a table's entries", svc_key)


def check_implicit_mynetworks(ctx: Ctx) -> Iterable[ConfigFinding]:
    cfg = ctx.cfg
    if "mynetworks" in cfg.explicit or not ctx.public:
        return
    style = cfg.get("mynetworks_style").strip().lower()
    if style not in ("subnet", "class"):
        return
    yield ConfigFinding(
        "implicit_mynetworks", "high" if style == "class" else "medium",
        f"trusted networks follow the interfaces (mynetworks_style = {style})",
        f"mynetworks is not set, so Postfix trusts every {'class A/B/C network' if style == 'class' else 'subnet'} "
        f"of this machine's interfaces (now: {cfg.get('mynetworks')}). On a public interface that "
        f"is your hosting neighbours; a new interface silently widens it.",
        "\n".join([ctx.fix.main("mynetworks", "127.0.0.0/8 [::1]/128"),
                   "# add the LAN hosts that must relay without logging in, one address each"]))


