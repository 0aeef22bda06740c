"""Port 25 hygiene: sender routing, VRFY, HELO, backscatter, inbound TLS."""

from __future__ import annotations

from collections.abc import Iterable

from ..context import ConfigFinding, Ctx


def check_hygiene(ctx: Ctx) -> Iterable[ConfigFinding]:
    cfg = ctx.cfg
    if not ctx.public:
        return
    if cfg.get("allow_untrusted_routing").strip().lower() == "yes":
        yield ConfigFinding(
            "untrusted_routing", "high",
            "sender-specified routing is allowed from strangers",
            "allow_untrusted_routing = yes: addresses like user%other.example@yourdomain or "
            "user@other.example@yourdomain from untrusted clients are forwarded onward — a "
            "classic way around relay checks.",
            ctx.fix.main("allow_untrusted_routing", "no"))
    if any(not cfg.flag("disable_vrfy_command", s) for s in ctx.public):
        yield ConfigFinding(
            "vrfy_enabled", "low", "VRFY tells strangers which addresses exist",
            "disable_vrfy_command = no: spammers harvest valid addresses (and your account names "
            "for brute force) with VRFY.",
            ctx.fix.main("disable_vrfy_command", "yes"))
    mx = [s for s in ctx.public if ctx.role(s) == "mx"]
    if any(not cfg.flag("smtpd_helo_required", s) for s in mx):
        yield ConfigFinding(
            "helo_not_required", "low", "clients may skip HELO/EHLO",
            "smtpd_helo_required = no: ratware that skips the greeting is accepted, and HELO "
            "restrictions never run for it.",
            ctx.fix.main("smtpd_helo_required", "yes"))
    for s in mx:
        if not cfg.flag("smtpd_reject_unlisted_recipient", s):
            yield ConfigFinding(
                "backscatter", "medium", "mail to unknown local users is accepted, then bounced",
                "smtpd_reject_unlisted_recipient = no: Postfix accepts mail for non-existent "
                "users and bounces it to the forged sender — backscatter spam that gets *you* "
                "blocklisted.",
                ctx.fix.set(s, "smtpd_reject_unlisted_recipient", "yes"), s.key)
            break
    else:
        if mx and cfg.get("mydestination").strip() and not cfg.get("local_recipient_maps").strip():
            yield ConfigFinding(
                "backscatter", "medium", "local recipients are not verified",
                "local_recipient_maps is empty: every address at your domains is accepted and "
                "undeliverable ones bounce to the forged sender (backscatter).",
                ctx.fix.main("local_recipient_maps", "proxy:unix:passwd.byname $alias_maps"))
    for s in mx:
        if ctx.tls_level(s) == "none":
            yield ConfigFinding(
                "no_inbound_tls", "low", f"{s.key}: no STARTTLS on port 25",
                "Incoming mail travels in clear, and receiving sites' reputation systems score "
                "servers without TLS lower.",
                "\n".join([ctx.fix.set(s, "smtpd_tls_security_level", "may"),
                           "# needs a certificate: smtpd_tls_chain_files = /etc/ssl/private/mail.pem"]),
                s.key)
            break

