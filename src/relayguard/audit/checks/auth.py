"""SMTP AUTH: not on port 25, never before TLS, never anonymous."""

from __future__ import annotations

from collections.abc import Iterable

from ..context import HERE, ConfigFinding, Ctx, Issue, merged, tokens
from .submission import submission_fix


def check_auth(ctx: Ctx) -> Iterable[ConfigFinding]:
    port25: list[Issue] = []
    plaintext: list[Issue] = []
    anonymous: list[Issue] = []
    for svc in ctx.public:
        if not ctx.sasl(svc):
            continue
        if ctx.role(svc) == "mx":
            if "smtpd_sasl_auth_enable" in svc.overrides:
                fix = [ctx.fix.service(svc.key, "smtpd_sasl_auth_enable", "no")]
            else:
                fix = [ctx.fix.main("smtpd_sasl_auth_enable", "no"), *submission_fix(ctx)]
            port25.append(Issue(svc, "high", (
                f"{HERE} accepts logins. Port 25 is where the internet's MTAs and the brute-force "
                "bots connect; mail clients belong on submission (587) or smtps (465), where "
                "TLS is mandatory and limits can be stricter. Move your users first."),
                "\n".join(fix)))
        level = ctx.tls_level(svc)
        wrapper = ctx.cfg.flag("smtpd_tls_wrappermode", svc)
        auth_only = ctx.cfg.flag("smtpd_tls_auth_only", svc)
        sec_opts = tokens(ctx.cfg.get("smtpd_sasl_security_options", svc).lower())
        if not (wrapper or level == "encrypt" or (auth_only and level != "none")
                or "noplaintext" in sec_opts):
            fix = [ctx.fix.set(svc, "smtpd_tls_auth_only", "yes")]
            if level == "none":
                fix += [ctx.fix.set(svc, "smtpd_tls_security_level", "may"),
                        "# TLS needs a certificate: smtpd_tls_chain_files = "
                        "/etc/ssl/private/mail.pem (key then chain)"]
            why = "TLS is not even offered" if level == "none" else "smtpd_tls_auth_only = no"
            plaintext.append(Issue(svc, "high", (
                f"{HERE} offers AUTH before STARTTLS ({why}, smtpd_tls_security_level = {level}): "
                f"a login from a café Wi-Fi is readable by anyone on the path — the seeds' "
                f"sniffed password."), "\n".join(fix)))
        for opt in ("smtpd_sasl_security_options", "smtpd_sasl_tls_security_options"):
            if "noanonymous" not in tokens(ctx.cfg.get(opt, svc).lower()):
                anonymous.append(Issue(svc, "high", (
                    f"On {HERE}, {opt} = {ctx.cfg.get(opt, svc) or '(empty)'} lacks noanonymous: "
                    f"where the SASL backend offers ANONYMOUS, anyone 'authenticates' and "
                    f"permit_sasl_authenticated lets them relay."),
                    ctx.fix.set(svc, opt, "noanonymous")))
                break
    yield from merged(ctx, "auth_on_port_25", "port 25 offers SMTP AUTH", port25)
    yield from merged(ctx, "plaintext_auth", "passwords may cross the network unencrypted",
                       plaintext)
    yield from merged(ctx, "anonymous_auth", "anonymous SASL logins are allowed", anonymous)

