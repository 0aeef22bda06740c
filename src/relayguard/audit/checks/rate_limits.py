"""How fast one client (or one login) may send and try passwords."""

from __future__ import annotations

from collections.abc import Iterable

from ...postfix import restrictions as rx
from ..context import ConfigFinding, Ctx


def check_rate_limits(ctx: Ctx) -> Iterable[ConfigFinding]:
    if not ctx.public:
        return
    limited = any(
        ctx.cfg.get(p, s).strip() not in ("", "0")
        for s in ctx.public
        for p in ("smtpd_client_message_rate_limit", "smtpd_client_recipient_rate_limit"))
    policy = any(rx.items_named(ctx.lists(s), rx.POLICY) for s in ctx.public)
    if not limited and not policy:
        yield ConfigFinding(
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
        yield ConfigFinding(
            "no_auth_rate_limit", "low",
            "unlimited login attempts per client",
            "smtpd_client_auth_rate_limit = 0: one address may try passwords as fast as it "
            "likes. Ban brute-forcers (relayguard watch, fail2ban) and cap AUTH commands.",
            ctx.fix.main("smtpd_client_auth_rate_limit", "30"))

