"""Submission ports (587, 465): for logged-in users only."""

from __future__ import annotations

from collections.abc import Iterable

from ...postfix import restrictions as rx
from ..context import ConfigFinding, Ctx

SUBMISSION_CLIENT = "permit_sasl_authenticated,reject"


def submission_fix(ctx: Ctx) -> list[str]:
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


def check_submission(ctx: Ctx) -> Iterable[ConfigFinding]:
    for svc in ctx.public:
        if ctx.role(svc) not in ("submission", "smtps"):
            continue
        name = ctx.name(svc)
        values = ctx.lists(svc)
        if not ctx.sasl(svc):
            yield ConfigFinding(
                "submission_without_auth", "low",
                f"{svc.key}: submission port without SMTP AUTH",
                f"{name} does not offer AUTH (smtpd_sasl_auth_enable = no): your users cannot "
                f"log in there, so they will be pushed to port 25.",
                ctx.fix.service(svc.key, "smtpd_sasl_auth_enable", "yes"), svc.key)
        stranger_local = rx.Client(local_destination=True)
        if rx.accepted(rx.walk(values, stranger_local, ctx.classes)):
            yield ConfigFinding(
                "submission_accepts_unauthenticated", "medium",
                f"{svc.key}: accepts mail without a login",
                f"{name} takes mail for your own domains from anyone, without AUTH: it bypasses "
                f"postscreen and port 25's checks. Submission is for logged-in users "
                f"(smtpd_client_restrictions = {values['smtpd_client_restrictions'] or '(empty)'}).",
                ctx.fix.service(svc.key, "smtpd_client_restrictions", SUBMISSION_CLIENT),
                svc.key)
        elif rx.accepted(rx.walk(values, rx.Client(trusted=True), ctx.classes)):
            yield ConfigFinding(
                "permit_mynetworks_on_submission", "low",
                f"{svc.key}: trusted hosts relay without logging in",
                f"{name} permits mynetworks without AUTH: a compromised trusted host can use the "
                f"submission port too, and its mail carries no account name to trace.",
                ctx.fix.service(svc.key, "smtpd_client_restrictions", SUBMISSION_CLIENT),
                svc.key)

