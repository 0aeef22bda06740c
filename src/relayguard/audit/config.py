"""The configuration audit: what lets spam out of this server, and the exact fix.

Every finding is ``{"id", "severity", "title", "detail", "fix", "service"}``; ``fix`` holds
``postconf`` command lines (``-e`` for main.cf, ``-P``/``-M`` for master.cf, with ``-c DIR`` when the
audit was run on a configuration directory) and ``#`` comments for what a command cannot do
(create a table, install a certificate).  Applying every command and running ``postfix reload``
is meant to leave no finding of severity ``high`` or ``critical``.

The checks judge the *effective* configuration (:mod:`.postconf`): main.cf with its defaults,
then each smtpd service of master.cf with its ``-o`` overrides, because the port-25 smtpd and the
submission smtpd are usually configured differently and each can leak on its own.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..postfix import restrictions as rx
from ..postfix.mynetworks import Entry, Network, Source
from ..postfix.mynetworks import build as build_mynetworks
from ..postfix.postconf import PostfixConfig, Service, load
from . import dovecot as dovecot_mod

SEVERITIES = ("critical", "high", "medium", "low")
RANK = {s: i for i, s in enumerate(SEVERITIES)}
SCHEMA = "relayguard.audit/1"

#: The relay restrictions every smtpd should start from (Postfix's own recommendation).
SAFE_RELAY = "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
SUBMISSION_CLIENT = "permit_sasl_authenticated,reject"
#: Stands for the names of the services a merged finding is about (see `_merged`).
HERE = "<services>"
#: Networks that are nobody else's: RFC 1918, RFC 4193 (ULA), link-local.  Python's
#: `is_private` also counts the documentation ranges (192.0.2.0/24, ...), which stand for
#: public addresses in examples and tests, so the list is explicit.
PRIVATE = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "fc00::/7", "fe80::/10"))


@dataclass
class Finding:
    id: str
    severity: str
    title: str
    detail: str
    fix: str
    service: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ServiceInfo:
    service: str
    listen: str
    role: str
    exposure: str
    sasl: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AuditReport:
    config_dir: str | None
    mail_version: str
    services: list[ServiceInfo]
    findings: list[Finding]
    warnings: list[str] = field(default_factory=list)
    dovecot: str = "not checked"

    def has_high(self) -> bool:
        return any(RANK[f.severity] <= RANK["high"] for f in self.findings)

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for f in self.findings if f.severity == s) for s in SEVERITIES}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "config_dir": self.config_dir,
            "mail_version": self.mail_version,
            "services": [s.to_dict() for s in self.services],
            "counts": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
            "warnings": self.warnings,
            "dovecot": self.dovecot,
        }


# --------------------------------------------------------------------------- fix commands
class Fixer:
    """Builds the ``postconf`` lines of a fix, aimed at the audited configuration directory."""

    def __init__(self, config_dir: str | None) -> None:
        self.base = ["postconf"] + (["-c", config_dir] if config_dir else [])
        self.config_dir = config_dir or "/etc/postfix"

    def main(self, name: str, value: str) -> str:
        return shlex.join([*self.base, "-e", f"{name} = {value}"])

    def service(self, svc_key: str, name: str, value: str) -> str:
        # `postconf -P` refuses whitespace in values; commas separate list items just as well.
        compact = ",".join(t for t in re.split(r"[\s,]+", value) if t)
        if "{" in value:
            return f"# in master.cf, service {svc_key}: -o {{ {name} = {value} }}"
        return shlex.join([*self.base, "-P", f"{svc_key}/{name}={compact}"])

    def set(self, svc: Service | None, name: str, value: str) -> str:
        """Where the value comes from: the service's ``-o`` override if it has one, else main.cf."""
        if svc is not None and name in svc.overrides:
            return self.service(svc.key, name, value)
        return self.main(name, value)

    def new_service(self, key: str, line: str) -> str:
        return shlex.join([*self.base, "-M", f"{key}={line}"])


# --------------------------------------------------------------------------- context
@dataclass
class Ctx:
    cfg: PostfixConfig
    fix: Fixer
    classes: frozenset[str]

    @property
    def smtpd(self) -> list[Service]:
        return self.cfg.smtpd_services()

    @property
    def public(self) -> list[Service]:
        return [s for s in self.smtpd if not self.cfg.is_local_only(s)]

    def role(self, svc: Service) -> str:
        _, port = self.cfg.port_of(svc)
        if port == 25:
            return "mx"
        if port == 587:
            return "submission"
        if port == 465 or self.cfg.flag("smtpd_tls_wrappermode", svc):
            return "smtps"
        return "other"

    def listen(self, svc: Service) -> str:
        host, port = self.cfg.port_of(svc)
        if port is None:
            return f"{svc.type} (not a network listener)"
        return f"{host}:{port}" if host else f"port {port}"

    def lists(self, svc: Service) -> dict[str, str]:
        return {name: self.cfg.get(name, svc) for name in rx.LISTS}

    def sasl(self, svc: Service) -> bool:
        return self.cfg.flag("smtpd_sasl_auth_enable", svc)

    def tls_level(self, svc: Service) -> str:
        level = self.cfg.get("smtpd_tls_security_level", svc).strip().lower()
        if level:
            return level
        # Before security levels: smtpd_enforce_tls / smtpd_use_tls.
        if self.cfg.flag("smtpd_enforce_tls", svc):
            return "encrypt"
        return "may" if self.cfg.flag("smtpd_use_tls", svc) else "none"

    def name(self, svc: Service) -> str:
        return f"{svc.key} ({self.listen(svc)})"


def _tokens(value: str) -> list[str]:
    return [t for t in re.split(r"[\s,]+", value) if t]


# --------------------------------------------------------------------------- mynetworks
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


def check_mynetworks(ctx: Ctx) -> Iterable[Finding]:
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
            yield Finding(
                "wide_mynetworks", "critical",
                f"{where} trusts far more than your own hosts",
                f"{where} contains {', '.join(by_kind['wide'])}: every host there may relay mail "
                f"to anywhere without a password — to spammers this is an open relay.{origin}",
                "\n".join([fix_line, comment]), svc_key)
        if by_kind.get("broad"):
            yield Finding(
                "broad_mynetworks", "medium",
                f"{where} trusts whole private networks",
                f"{where} contains {', '.join(by_kind['broad'])}: any infected PC, printer or "
                f"intranet box in there relays without a password (the seeds' 'compromised "
                f"trusted host').{origin}",
                "\n".join([fix_line, comment]), svc_key)
        if by_kind.get("public"):
            yield Finding(
                "public_mynetworks", "low",
                f"{where} trusts public addresses",
                f"{where} contains {', '.join(by_kind['public'])}: make sure each is a host you "
                f"run and still need; a host you no longer control can relay through you.{origin}",
                "# remove every public entry you do not run yourself:\n" + fix_line, svc_key)
        if unchecked:
            yield Finding(
                "mynetworks_unchecked", "low",
                f"{where} has entries the audit cannot read",
                f"{', '.join(unchecked)}: tables, files or host names; check by hand that they "
                f"hold only your own relay hosts.",
                "# postmap -s TABLE lists a table's entries", svc_key)


def check_implicit_mynetworks(ctx: Ctx) -> Iterable[Finding]:
    cfg = ctx.cfg
    if "mynetworks" in cfg.explicit or not ctx.public:
        return
    style = cfg.get("mynetworks_style").strip().lower()
    if style not in ("subnet", "class"):
        return
    yield Finding(
        "implicit_mynetworks", "high" if style == "class" else "medium",
        f"trusted networks follow the interfaces (mynetworks_style = {style})",
        f"mynetworks is not set, so Postfix trusts every {'class A/B/C network' if style == 'class' else 'subnet'} "
        f"of this machine's interfaces (now: {cfg.get('mynetworks')}). On a public interface that "
        f"is your hosting neighbours; a new interface silently widens it.",
        "\n".join([ctx.fix.main("mynetworks", "127.0.0.0/8 [::1]/128"),
                   "# add the LAN hosts that must relay without logging in, one address each"]))


# --------------------------------------------------------------------------- relaying
def _describe(decisions: list[rx.ListDecision], values: dict[str, str]) -> str:
    parts = []
    for d in decisions:
        if not values.get(d.list_name) and d.result == "dunno":
            continue
        verdict = {"permit": f"permits ({d.item})", "block": f"refuses ({d.item})",
                   "dunno": "does not decide"}[d.result]
        parts.append(f"{d.list_name} = {values.get(d.list_name) or '(empty)'} → {verdict}")
    return "; ".join(parts) or "every restriction list is empty"


@dataclass
class _Issue:
    """One service's instance of a problem, before services sharing the same fix are merged."""

    svc: Service
    severity: str
    detail: str
    fix: str


def _merged(ctx: Ctx, fid: str, title: str, issues: list[_Issue]) -> Iterable[Finding]:
    """One finding per distinct fix: a main.cf cause shared by every smtpd is reported once.

    ``title`` gets the services' names in front; the first issue's detail stands for the group
    (services sharing a fix share the value that causes it).
    """
    groups: dict[tuple[str, str], list[_Issue]] = {}
    for issue in issues:
        groups.setdefault((issue.fix, issue.severity), []).append(issue)
    for (fix, severity), group in groups.items():
        keys = ", ".join(i.svc.key for i in group)
        names = ", ".join(ctx.name(i.svc) for i in group)
        yield Finding(fid, severity, f"{keys}: {title}", group[0].detail.replace(HERE, names),
                      fix, keys)


def check_relay(ctx: Ctx) -> Iterable[Finding]:
    found: dict[str, list[_Issue]] = {}
    titles = {
        "no_relay_check": "no relay check at all — smtpd will refuse to start",
        "open_relay": "relays mail for anyone",
        "spoofable_relay_permit": "a forgeable lookup comes before the relay check",
        "policy_before_relay_check": "the policy service is asked before the relay check",
        "relay_list_permits": "smtpd_relay_restrictions lets strangers through",
    }

    def add(fid: str, issue: _Issue) -> None:
        found.setdefault(fid, []).append(issue)

    for svc in ctx.smtpd:
        values = ctx.lists(svc)
        local = ctx.cfg.is_local_only(svc)
        relay_fix = ctx.fix.set(svc, "smtpd_relay_restrictions", SAFE_RELAY)
        if not rx.has_working_relay_check(values):
            add("no_relay_check", _Issue(svc, "high", (
                f"Neither smtpd_relay_restrictions nor smtpd_recipient_restrictions of {HERE} "
                "contains reject_unauth_destination (or reject/defer): Postfix refuses to run "
                "such an smtpd, so no mail is received there."), relay_fix))
            continue
        each = [rx.decide(n, values[n], rx.STRANGER, ctx.classes) for n in rx.LISTS]
        if rx.accepted(rx.walk(values, rx.STRANGER, ctx.classes)):
            add("open_relay", _Issue(svc, "low" if local else "critical", (
                f"On {HERE}, for a client outside mynetworks that did not log in, writing to an "
                f"outside domain: {_describe(each, values)}. Nothing refuses the recipient, so "
                + ("any process on this machine can relay through it (loopback listener)."
                   if local else "anyone on the internet can send spam through this server.")),
                relay_fix))
            continue
        if local:
            continue
        blocking = [d for d in each if d.result == "block"]
        spoofable = [[i for i in d.unknown_before if rx.name_of(i) in rx.SPOOFABLE_PERMITS]
                     for d in blocking]
        policies = [[i for i in d.unknown_before if rx.name_of(i) in rx.POLICY] for d in blocking]
        refusers = ", ".join(f"{d.item} in {d.list_name}" for d in blocking)
        if blocking and all(spoofable):
            items = ", ".join(sorted({i for group in spoofable for i in group}))
            add("spoofable_relay_permit", _Issue(svc, "high", (
                f"On {HERE}, {items} is consulted before the restriction that refuses relaying "
                f"({refusers}). An OK in that table opens the relay to anyone who claims that "
                f"sender or HELO name — strangers choose both."),
                "\n".join(["# move these lookups after reject_unauth_destination, and:",
                           relay_fix])))
        elif blocking and all(policies):
            items = ", ".join(sorted({i for group in policies for i in group}))
            add("policy_before_relay_check", _Issue(svc, "medium", (
                f"On {HERE}, {items} comes before the relay check ({refusers}): a policy server "
                f"answering OK, by mistake or by design, permits relaying. Postfix documents "
                f"check_policy_service after reject_unauth_destination."),
                "\n".join(["# put check_policy_service after reject_unauth_destination in "
                           "smtpd_recipient_restrictions, and:", relay_fix])))
        relay = each[rx.LISTS.index("smtpd_relay_restrictions")]
        if relay.result == "permit" and values["smtpd_relay_restrictions"]:
            add("relay_list_permits", _Issue(svc, "medium", (
                f"On {HERE}, smtpd_relay_restrictions permits an unauthenticated outside client "
                f"({relay.item}); only {refusers} stops relaying now, and one edit there opens "
                f"the relay."), relay_fix))
    for fid, issues in found.items():
        yield from _merged(ctx, fid, titles[fid], issues)


# --------------------------------------------------------------------------- authentication
def _submission_fix(ctx: Ctx) -> list[str]:
    """Lines that keep AUTH available on submission ports once port 25 stops offering it."""
    subs = [s for s in ctx.public if ctx.role(s) in ("submission", "smtps")]
    lines = [ctx.fix.service(s.key, "smtpd_sasl_auth_enable", "yes") for s in subs
             if "smtpd_sasl_auth_enable" not in s.overrides]
    if not subs:
        f = ctx.fix
        lines += [
            "# no submission service yet: add port 587 with mandatory TLS and AUTH",
            f.new_service("submission/inet", "submission inet n - y - - smtpd"),
            f.service("submission/inet", "syslog_name", "postfix/submission"),
            f.service("submission/inet", "smtpd_tls_security_level", "encrypt"),
            f.service("submission/inet", "smtpd_sasl_auth_enable", "yes"),
            f.service("submission/inet", "smtpd_tls_auth_only", "yes"),
            f.service("submission/inet", "smtpd_client_restrictions", SUBMISSION_CLIENT),
            "# TLS needs a certificate: smtpd_tls_chain_files = /etc/ssl/private/mail.pem",
        ]
    return lines


def check_auth(ctx: Ctx) -> Iterable[Finding]:
    port25: list[_Issue] = []
    plaintext: list[_Issue] = []
    anonymous: list[_Issue] = []
    for svc in ctx.public:
        if not ctx.sasl(svc):
            continue
        if ctx.role(svc) == "mx":
            if "smtpd_sasl_auth_enable" in svc.overrides:
                fix = [ctx.fix.service(svc.key, "smtpd_sasl_auth_enable", "no")]
            else:
                fix = [ctx.fix.main("smtpd_sasl_auth_enable", "no"), *_submission_fix(ctx)]
            port25.append(_Issue(svc, "high", (
                f"{HERE} accepts logins. Port 25 is where the internet's MTAs and the brute-force "
                "bots connect; mail clients belong on submission (587) or smtps (465), where "
                "TLS is mandatory and limits can be stricter. Move your users first."),
                "\n".join(fix)))
        level = ctx.tls_level(svc)
        wrapper = ctx.cfg.flag("smtpd_tls_wrappermode", svc)
        auth_only = ctx.cfg.flag("smtpd_tls_auth_only", svc)
        sec_opts = _tokens(ctx.cfg.get("smtpd_sasl_security_options", svc).lower())
        if not (wrapper or level == "encrypt" or (auth_only and level != "none")
                or "noplaintext" in sec_opts):
            fix = [ctx.fix.set(svc, "smtpd_tls_auth_only", "yes")]
            if level == "none":
                fix += [ctx.fix.set(svc, "smtpd_tls_security_level", "may"),
                        "# TLS needs a certificate: smtpd_tls_chain_files = "
                        "/etc/ssl/private/mail.pem (key then chain)"]
            why = "TLS is not even offered" if level == "none" else "smtpd_tls_auth_only = no"
            plaintext.append(_Issue(svc, "high", (
                f"{HERE} offers AUTH before STARTTLS ({why}, smtpd_tls_security_level = {level}): "
                f"a login from a café Wi-Fi is readable by anyone on the path — the seeds' "
                f"sniffed password."), "\n".join(fix)))
        for opt in ("smtpd_sasl_security_options", "smtpd_sasl_tls_security_options"):
            if "noanonymous" not in _tokens(ctx.cfg.get(opt, svc).lower()):
                anonymous.append(_Issue(svc, "high", (
                    f"On {HERE}, {opt} = {ctx.cfg.get(opt, svc) or '(empty)'} lacks noanonymous: "
                    f"where the SASL backend offers ANONYMOUS, anyone 'authenticates' and "
                    f"permit_sasl_authenticated lets them relay."),
                    ctx.fix.set(svc, opt, "noanonymous")))
                break
    yield from _merged(ctx, "auth_on_port_25", "port 25 offers SMTP AUTH", port25)
    yield from _merged(ctx, "plaintext_auth", "passwords may cross the network unencrypted",
                       plaintext)
    yield from _merged(ctx, "anonymous_auth", "anonymous SASL logins are allowed", anonymous)


_LOGIN_CHECKS = frozenset({"reject_sender_login_mismatch",
                           "reject_authenticated_sender_login_mismatch",
                           "reject_known_sender_login_mismatch"})


def check_sender_login(ctx: Ctx) -> Iterable[Finding]:
    lacking = []
    for svc in ctx.public:
        if not ctx.sasl(svc):
            continue
        maps = ctx.cfg.get("smtpd_sender_login_maps", svc).strip()
        if not maps or not rx.items_named(ctx.lists(svc), _LOGIN_CHECKS):
            lacking.append(svc)
    if not lacking:
        return
    fix = []
    if not ctx.cfg.get("smtpd_sender_login_maps").strip():
        table = f"hash:{ctx.fix.config_dir}/sender_login"
        fix += [ctx.fix.main("smtpd_sender_login_maps", table),
                f"# {table.partition(':')[2]}: one 'address login' line per address "
                f"(alice@example.com alice@example.com), then: postmap {table}"]
    for svc in lacking:
        current = ctx.cfg.get("smtpd_sender_restrictions", svc)
        value = ", ".join(v for v in ("reject_authenticated_sender_login_mismatch", current) if v)
        fix.append(ctx.fix.set(svc, "smtpd_sender_restrictions", value))
    yield Finding(
        "no_sender_login_check", "medium",
        "logged-in users can send as anyone",
        f"On {', '.join(ctx.name(s) for s in lacking)} nothing ties the envelope sender to the "
        f"login (smtpd_sender_login_maps with reject_authenticated_sender_login_mismatch): a "
        f"stolen account sends as ceo@, paypal@ or any forged address.",
        "\n".join(dict.fromkeys(fix)))


def check_rate_limits(ctx: Ctx) -> Iterable[Finding]:
    if not ctx.public:
        return
    limited = any(
        ctx.cfg.get(p, s).strip() not in ("", "0")
        for s in ctx.public
        for p in ("smtpd_client_message_rate_limit", "smtpd_client_recipient_rate_limit"))
    policy = any(rx.items_named(ctx.lists(s), rx.POLICY) for s in ctx.public)
    if not limited and not policy:
        yield Finding(
            "no_rate_limit", "medium",
            "nothing limits how fast one client sends",
            "smtpd_client_message_rate_limit and smtpd_client_recipient_rate_limit are 0 and no "
            "check_policy_service is configured: a stolen account or an infected host sends "
            "tens of thousands of messages before anyone notices. (Anvil limits are per client "
            "address per anvil_rate_time_unit and skip smtpd_client_event_limit_exceptions, "
            "$mynetworks by default; per-account limits need a policy service such as "
            "`relayguard policy serve`.)",
            "\n".join([ctx.fix.main("smtpd_client_message_rate_limit", "60"),
                       ctx.fix.main("smtpd_client_recipient_rate_limit", "300"),
                       "# per SASL account: check_policy_service inet:127.0.0.1:10031 after "
                       "reject_unauth_destination (relayguard policy serve)"]))
    sasl = [s for s in ctx.public if ctx.sasl(s)]
    if sasl and all(ctx.cfg.get("smtpd_client_auth_rate_limit", s).strip() in ("", "0")
                    for s in sasl):
        yield Finding(
            "no_auth_rate_limit", "low",
            "unlimited login attempts per client",
            "smtpd_client_auth_rate_limit = 0: one address may try passwords as fast as it "
            "likes. Ban brute-forcers (relayguard watch, fail2ban) and cap AUTH commands.",
            ctx.fix.main("smtpd_client_auth_rate_limit", "30"))


def check_submission(ctx: Ctx) -> Iterable[Finding]:
    for svc in ctx.public:
        if ctx.role(svc) not in ("submission", "smtps"):
            continue
        name = ctx.name(svc)
        values = ctx.lists(svc)
        if not ctx.sasl(svc):
            yield Finding(
                "submission_without_auth", "low",
                f"{svc.key}: submission port without SMTP AUTH",
                f"{name} does not offer AUTH (smtpd_sasl_auth_enable = no): your users cannot "
                f"log in there, so they will be pushed to port 25.",
                ctx.fix.service(svc.key, "smtpd_sasl_auth_enable", "yes"), svc.key)
        stranger_local = rx.Client(local_destination=True)
        if rx.accepted(rx.walk(values, stranger_local, ctx.classes)):
            yield Finding(
                "submission_accepts_unauthenticated", "medium",
                f"{svc.key}: accepts mail without a login",
                f"{name} takes mail for your own domains from anyone, without AUTH: it bypasses "
                f"postscreen and port 25's checks. Submission is for logged-in users "
                f"(smtpd_client_restrictions = {values['smtpd_client_restrictions'] or '(empty)'}).",
                ctx.fix.service(svc.key, "smtpd_client_restrictions", SUBMISSION_CLIENT),
                svc.key)
        elif rx.accepted(rx.walk(values, rx.Client(trusted=True), ctx.classes)):
            yield Finding(
                "permit_mynetworks_on_submission", "low",
                f"{svc.key}: trusted hosts relay without logging in",
                f"{name} permits mynetworks without AUTH: a compromised trusted host can use the "
                f"submission port too, and its mail carries no account name to trace.",
                ctx.fix.service(svc.key, "smtpd_client_restrictions", SUBMISSION_CLIENT),
                svc.key)


# --------------------------------------------------------------------------- hygiene
def check_hygiene(ctx: Ctx) -> Iterable[Finding]:
    cfg = ctx.cfg
    if not ctx.public:
        return
    if cfg.get("allow_untrusted_routing").strip().lower() == "yes":
        yield Finding(
            "untrusted_routing", "high",
            "sender-specified routing is allowed from strangers",
            "allow_untrusted_routing = yes: addresses like user%other.example@yourdomain or "
            "user@other.example@yourdomain from untrusted clients are forwarded onward — a "
            "classic way around relay checks.",
            ctx.fix.main("allow_untrusted_routing", "no"))
    if any(not cfg.flag("disable_vrfy_command", s) for s in ctx.public):
        yield Finding(
            "vrfy_enabled", "low", "VRFY tells strangers which addresses exist",
            "disable_vrfy_command = no: spammers harvest valid addresses (and your account names "
            "for brute force) with VRFY.",
            ctx.fix.main("disable_vrfy_command", "yes"))
    mx = [s for s in ctx.public if ctx.role(s) == "mx"]
    if any(not cfg.flag("smtpd_helo_required", s) for s in mx):
        yield Finding(
            "helo_not_required", "low", "clients may skip HELO/EHLO",
            "smtpd_helo_required = no: ratware that skips the greeting is accepted, and HELO "
            "restrictions never run for it.",
            ctx.fix.main("smtpd_helo_required", "yes"))
    for s in mx:
        if not cfg.flag("smtpd_reject_unlisted_recipient", s):
            yield Finding(
                "backscatter", "medium", "mail to unknown local users is accepted, then bounced",
                "smtpd_reject_unlisted_recipient = no: Postfix accepts mail for non-existent "
                "users and bounces it to the forged sender — backscatter spam that gets *you* "
                "blocklisted.",
                ctx.fix.set(s, "smtpd_reject_unlisted_recipient", "yes"), s.key)
            break
    else:
        if mx and cfg.get("mydestination").strip() and not cfg.get("local_recipient_maps").strip():
            yield Finding(
                "backscatter", "medium", "local recipients are not verified",
                "local_recipient_maps is empty: every address at your domains is accepted and "
                "undeliverable ones bounce to the forged sender (backscatter).",
                ctx.fix.main("local_recipient_maps", "proxy:unix:passwd.byname $alias_maps"))
    for s in mx:
        if ctx.tls_level(s) == "none":
            yield Finding(
                "no_inbound_tls", "low", f"{s.key}: no STARTTLS on port 25",
                "Incoming mail travels in clear, and receiving sites' reputation systems score "
                "servers without TLS lower.",
                "\n".join([ctx.fix.set(s, "smtpd_tls_security_level", "may"),
                           "# needs a certificate: smtpd_tls_chain_files = /etc/ssl/private/mail.pem"]),
                s.key)
            break


# --------------------------------------------------------------------------- dovecot
def check_dovecot(facts: dovecot_mod.DovecotFacts) -> Iterable[Finding]:
    protos = [p for p in ("imap", "pop3") if p in facts.protocols]
    if not protos:
        return
    clear = [lst for lst in facts.listeners
             if lst.protocol in protos and lst.port and not lst.ssl
             and not dovecot_mod.is_local_address(lst.address)]
    if not clear:
        return
    ports = ", ".join(f"{lst.protocol} {lst.port}" for lst in clear)
    snippet = "\n".join([
        "# /etc/dovecot/conf.d/10-ssl.conf and 10-auth.conf (then: doveadm reload)",
        "ssl = required",
        "disable_plaintext_auth = yes   # Dovecot 2.4: auth_allow_cleartext = no",
        *[line for lst in clear for line in (
            f"service {lst.protocol}-login {{", f"  inet_listener {lst.name} {{",
            "    port = 0", "  }", "}")],
        "# and use imaps 993 / pop3s 995 in the mail clients",
    ])
    if facts.ssl == "no" or facts.cleartext_allowed:
        why = "ssl = no" if facts.ssl == "no" else "plaintext authentication is allowed"
        yield Finding(
            "plaintext_imap_pop", "high",
            "IMAP/POP passwords can travel in clear",
            f"Dovecot listens on {ports} without TLS and {why}: a user on an open network "
            f"sends the password readable — how the seeds' accounts were stolen.",
            snippet)
    else:
        yield Finding(
            "imap_pop_plain_ports", "low",
            "unencrypted IMAP/POP ports are open",
            f"Dovecot listens on {ports}; passwords are safe only because TLS is required before "
            f"login (ssl = {facts.ssl}). Close these ports when the clients can use 993/995.",
            snippet)


# --------------------------------------------------------------------------- entry point
CHECKS: tuple[Callable[[Ctx], Iterable[Finding]], ...] = (
    check_mynetworks, check_implicit_mynetworks, check_relay, check_auth, check_sender_login,
    check_rate_limits, check_submission, check_hygiene,
)


def audit_config(config_dir: str | None = None, dovecot: str | None = "auto",
                 ignore: Iterable[str] = ()) -> AuditReport:
    """Audit the Postfix configuration in ``config_dir`` (default: Postfix's own).

    ``dovecot``: ``"auto"`` checks the system's Dovecot when ``doveconf`` exists, ``None`` skips
    it, anything else is a dovecot.conf path.  ``ignore``: finding ids to leave out (accepted
    risks).  Raises :class:`~relayguard.postfix.postconf.PostconfError` or
    :class:`~relayguard.audit.dovecot.DoveconfError` with a message for the user.
    """
    cfg = load(config_dir)
    classes = frozenset(_tokens(cfg.get("smtpd_restriction_classes")))
    ctx = Ctx(cfg, Fixer(config_dir), classes)
    findings: list[Finding] = [f for check in CHECKS for f in check(ctx)]
    warnings = list(cfg.warnings)
    status = "skipped"
    if dovecot is not None:
        if dovecot == "auto" and not dovecot_mod.available():
            status = "doveconf not installed"
        else:
            path = None if dovecot == "auto" else dovecot
            try:
                root = dovecot_mod.load(path)
            except dovecot_mod.DoveconfError as exc:
                if path is not None:
                    raise
                warnings.append(str(exc))
                status = f"error: {exc}"
            else:
                findings += check_dovecot(dovecot_mod.facts(root))
                status = f"checked ({path or 'doveconf'})"
    skip = set(ignore)
    findings = [f for f in findings if f.id not in skip]
    findings.sort(key=lambda f: (RANK[f.severity], f.id, f.service or ""))
    services = [ServiceInfo(s.key, ctx.listen(s), ctx.role(s),
                            "local" if cfg.is_local_only(s) else "public", ctx.sasl(s))
                for s in ctx.smtpd]
    return AuditReport(config_dir, cfg.get("mail_version"), services, findings, warnings, status)
