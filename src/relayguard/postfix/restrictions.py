"""What smtpd's restriction lists decide for one kind of client.

smtpd evaluates, at RCPT TO (``smtpd_delay_reject = yes``), the lists client → helo → sender →
relay → recipient.  Within one list the first ``permit``/``reject``-type decision ends *that list*;
a permit does not skip the lists after it, a reject ends everything.  So a recipient is accepted
when no list rejects it, and a server is an open relay exactly when no list rejects an
unauthenticated, untrusted client writing to an outside domain.

We cannot look inside tables (``check_sender_access hash:...``) or ask a policy server, so those
restrictions are "unknown"; what matters for the config audit is whether they come *before* the
restriction that would refuse relaying, where an ``OK`` from them would open the relay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

LISTS = (
    "smtpd_client_restrictions",
    "smtpd_helo_restrictions",
    "smtpd_sender_restrictions",
    "smtpd_relay_restrictions",
    "smtpd_recipient_restrictions",
)

#: Postfix refuses to start smtpd unless the relay or the recipient list has one of these
#: (``fatal: in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify
#: at least one working instance of: ...``).
WORKING_RELAY_CHECKS = frozenset({
    "reject_unauth_destination", "defer_unauth_destination", "reject", "defer",
    "defer_if_permit", "check_relay_domains",
})

# Decisions that do not depend on the client.
_ALWAYS_PERMIT = frozenset({"permit", "ok"})
_ALWAYS_BLOCK = frozenset({"reject", "defer", "defer_if_permit"})
_RELAY_BLOCK = frozenset({"reject_unauth_destination", "defer_unauth_destination",
                          "check_relay_domains"})

#: Permits a stranger can make match with data it chooses (HELO name, envelope sender, a
#: domain whose MX points at us, any certificate signed by a public CA).
SPOOFABLE_PERMITS = frozenset({
    "check_sender_access", "check_sender_mx_access", "check_sender_ns_access",
    "check_sender_a_access", "check_helo_access", "check_helo_mx_access",
    "check_helo_ns_access", "check_helo_a_access", "permit_mx_backup",
    "permit_tls_all_clientcerts",
})
#: Answered by something outside Postfix: an OK from it permits like ``permit``.
POLICY = frozenset({"check_policy_service"})

_TOKEN = re.compile(r"\{[^{}]*\}|[^\s,{}]+")
#: Restrictions followed by one argument (a table, a DNS list, a number of seconds).
_TAKES_ARG = frozenset({
    "reject_rbl_client", "reject_rhsbl_client", "reject_rhsbl_sender", "reject_rhsbl_helo",
    "reject_rhsbl_recipient", "reject_rhsbl_reverse_client", "permit_dnswl_client",
    "permit_rhswl_client", "sleep",
})


def split(value: str) -> list[str]:
    """A restriction list into restrictions, each with its argument.

    ``check_sender_access hash:/etc/postfix/x``, ``reject_rbl_client zen.spamhaus.org`` and
    ``check_policy_service { inet:127.0.0.1:10031, default_action=DUNNO }`` are one item each.
    """
    items: list[str] = []
    wants_arg = False
    for tok in _TOKEN.findall(value):
        if items and (wants_arg or tok.startswith("{")):
            items[-1] = f"{items[-1]} {tok}"
            wants_arg = False
            continue
        items.append(tok)
        low = tok.lower()
        wants_arg = low.startswith("check_") or low in _TAKES_ARG
    return items


def name_of(item: str) -> str:
    return item.split(None, 1)[0].lower() if item.strip() else ""


@dataclass(frozen=True)
class Client:
    """The kind of client whose fate we ask about."""

    trusted: bool = False        # inside mynetworks
    authenticated: bool = False  # logged in with SASL
    local_destination: bool = False  # the recipient is one of our domains


STRANGER = Client()


@dataclass
class ListDecision:
    """What one list decided: ``permit``, ``block`` or ``dunno``, and by which restriction."""

    list_name: str
    result: str
    item: str | None = None
    #: Restrictions met before the decision whose answer we cannot know (tables, policy).
    unknown_before: list[str] = field(default_factory=list)


def decide(list_name: str, value: str, client: Client, classes: frozenset[str] = frozenset()
           ) -> ListDecision:
    """Walk one restriction list for ``client`` the way smtpd does."""
    unknown: list[str] = []
    skip_next = False
    for item in split(value):
        name = name_of(item)
        if skip_next:
            # warn_if_reject: the next restriction only logs what it would have rejected.
            skip_next = False
            unknown.append(f"warn_if_reject {item}")
            continue
        if name == "warn_if_reject":
            skip_next = True
            continue
        if name in _ALWAYS_PERMIT:
            return ListDecision(list_name, "permit", item, unknown)
        if name in _ALWAYS_BLOCK:
            return ListDecision(list_name, "block", item, unknown)
        if name in _RELAY_BLOCK:
            if not client.local_destination:
                return ListDecision(list_name, "block", item, unknown)
            continue
        if name == "permit_auth_destination" and client.local_destination:
            return ListDecision(list_name, "permit", item, unknown)
        if name == "permit_mynetworks" and client.trusted:
            return ListDecision(list_name, "permit", item, unknown)
        if name == "permit_sasl_authenticated" and client.authenticated:
            return ListDecision(list_name, "permit", item, unknown)
        if name == "permit_naked_ip_address":
            # Matches any client that says "HELO 1.2.3.4": a stranger's choice.
            return ListDecision(list_name, "permit", item, unknown)
        if name in SPOOFABLE_PERMITS or name in POLICY or name.startswith("check_") \
                or name in classes:
            unknown.append(item)
    return ListDecision(list_name, "dunno", None, unknown)


def walk(values: dict[str, str], client: Client, classes: frozenset[str] = frozenset()
         ) -> list[ListDecision]:
    """Every list's decision, in smtpd's order, stopping after the first block."""
    out = []
    for name in LISTS:
        d = decide(name, values.get(name, ""), client, classes)
        out.append(d)
        if d.result == "block":
            break
    return out


def accepted(decisions: list[ListDecision]) -> bool:
    return not any(d.result == "block" for d in decisions)


def has_working_relay_check(values: dict[str, str]) -> bool:
    for name in ("smtpd_relay_restrictions", "smtpd_recipient_restrictions"):
        if any(name_of(i) in WORKING_RELAY_CHECKS for i in split(values.get(name, ""))):
            return True
    return False


def items_named(values: dict[str, str], names: frozenset[str] | set[str]) -> list[str]:
    """Every restriction in any list whose name is in ``names``."""
    return [i for n in LISTS for i in split(values.get(n, "")) if name_of(i) in names]
