"""Does each smtpd refuse to relay for strangers, and is nothing forgeable asked first?"""

from __future__ import annotations

from collections.abc import Iterable

from ...postfix import restrictions as rx
from ..context import HERE, ConfigFinding, Ctx, Issue, merged

#: The relay restrictions every smtpd should start from (Postfix's own recommendation).
SAFE_RELAY = "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"


def _describe(decisions: list[rx.ListDecision], values: dict[str, str]) -> str:
    parts = []
    for d in decisions:
        if not values.get(d.list_name) and d.result == "dunno":
            continue
        verdict = {"permit": f"permits ({d.item})", "block": f"refuses ({d.item})",
                   "dunno": "does not decide"}[d.result]
        parts.append(f"{d.list_name} = {values.get(d.list_name) or '(empty)'} → {verdict}")
    return "; ".join(parts) or "every restriction list is empty"


def check_relay(ctx: Ctx) -> Iterable[ConfigFinding]:
    found: dict[str, list[Issue]] = {}
    titles = {
        "no_relay_check": "no relay check at all — smtpd will refuse to start",
        "open_relay": "relays mail for anyone",
        "spoofable_relay_permit": "a forgeable lookup comes before the relay check",
        "policy_before_relay_check": "the policy service is asked before the relay check",
        "relay_list_permits": "smtpd_relay_restrictions lets strangers through",
    }

    def add(fid: str, issue: Issue) -> None:
        found.setdefault(fid, []).append(issue)

    for svc in ctx.smtpd:
        values = ctx.lists(svc)
        local = ctx.cfg.is_local_only(svc)
        relay_fix = ctx.fix.set(svc, "smtpd_relay_restrictions", SAFE_RELAY)
        if not rx.has_working_relay_check(values):
            add("no_relay_check", Issue(svc, "high", (
                f"Neither smtpd_relay_restrictions nor smtpd_recipient_restrictions of {HERE} "
                "contains reject_unauth_destination (or reject/defer): Postfix refuses to run "
                "such an smtpd, so no mail is received there."), relay_fix))
            continue
        each = [rx.decide(n, values[n], rx.STRANGER, ctx.classes) for n in rx.LISTS]
        if rx.accepted(rx.walk(values, rx.STRANGER, ctx.classes)):
            add("open_relay", Issue(svc, "low" if local else "critical", (
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
            add("spoofable_relay_permit", Issue(svc, "high", (
                f"On {HERE}, {items} is consulted before the restriction that refuses relaying "
                f"({refusers}). An OK in that table opens the relay to anyone who claims that "
                f"sender or HELO name — strangers choose both."),
                "\n".join(["# move these lookups after reject_unauth_destination, and:",
                           relay_fix])))
        elif blocking and all(policies):
            items = ", ".join(sorted({i for group in policies for i in group}))
            add("policy_before_relay_check", Issue(svc, "medium", (
                f"On {HERE}, {items} comes before the relay check ({refusers}): a policy server "
                f"answering OK, by mistake or by design, permits relaying. Postfix documents "
                f"check_policy_service after reject_unauth_destination."),
                "\n".join(["# put check_policy_service after reject_unauth_destination in "
                           "smtpd_recipient_restrictions, and:", relay_fix])))
        relay = each[rx.LISTS.index("smtpd_relay_restrictions")]
        if relay.result == "permit" and values["smtpd_relay_restrictions"]:
            add("relay_list_permits", Issue(svc, "medium", (
                f"On {HERE}, smtpd_relay_restrictions permits an unauthenticated outside client "
                f"({relay.item}); only {refusers} stops relaying now, and one edit there opens "
                f"the relay."), relay_fix))
    for fid, issues in found.items():
        yield from merged(ctx, fid, titles[fid], issues)

