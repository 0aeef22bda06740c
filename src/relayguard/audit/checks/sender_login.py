"""Logged-in users may send only as the addresses their login owns."""

from __future__ import annotations

from collections.abc import Iterable

from ...postfix import restrictions as rx
from ..context import ConfigFinding, Ctx

_LOGIN_CHECKS = frozenset({"reject_sender_login_mismatch",
                           "reject_authenticated_sender_login_mismatch",
                           "reject_known_sender_login_mismatch"})


def check_sender_login(ctx: Ctx) -> Iterable[ConfigFinding]:
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
    yield ConfigFinding(
        "no_sender_login_check", "medium",
        "logged-in users can send as anyone",
        f"On {', '.join(ctx.name(s) for s in lacking)} nothing ties the envelope sender to the "
        f"login (smtpd_sender_login_maps with reject_authenticated_sender_login_mismatch): a "
        f"stolen account sends as ceo@, paypal@ or any forged address.",
        "\n".join(dict.fromkeys(fix)))

