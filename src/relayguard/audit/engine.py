"""The config audit: what lets spam out of this server, and the exact fix.

Every finding is ``{"id", "severity", "title", "detail", "fix", "service"}``; ``fix`` holds
``postconf`` command lines (``-e`` for main.cf, ``-P``/``-M`` for master.cf, with ``-c DIR`` when the
audit was run on a configuration directory) and ``#`` comments for what a command cannot do
(create a table, install a certificate).  Applying every command and running ``postfix reload``
is meant to leave no finding of severity ``high`` or ``critical``.

The checks (:mod:`.checks`) judge the *effective* configuration
(:mod:`relayguard.postfix.postconf`): main.cf with its defaults, then each smtpd service of
master.cf with its ``-o`` overrides, because the port-25 smtpd and the submission smtpd are
usually configured differently and each can leak on its own.  This module runs them and builds
the report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import SEVERITIES
from ..postfix.postconf import load
from . import dovecot as dovecot_mod
from .checks import CHECKS, check_dovecot
from .context import ConfigFinding, Ctx, Fixer, tokens

RANK = {s: i for i, s in enumerate(SEVERITIES)}  # critical 0 … low 3
SCHEMA = "relayguard.audit/1"


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
class ConfigAuditReport:
    config_dir: str | None
    mail_version: str
    services: list[ServiceInfo]
    findings: list[ConfigFinding]
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


def audit_config(config_dir: str | None = None, dovecot: str | None = "auto",
                 ignore: Iterable[str] = ()) -> ConfigAuditReport:
    """Audit the Postfix configuration in ``config_dir`` (default: Postfix's own).

    ``dovecot``: ``"auto"`` checks the system's Dovecot when ``doveconf`` exists, ``None`` skips
    it, anything else is a dovecot.conf path.  ``ignore``: finding ids to leave out (accepted
    risks).  Raises :class:`~relayguard.postfix.postconf.PostconfError` or
    :class:`~relayguard.audit.dovecot.DoveconfError` with a message for the user.
    """
    cfg = load(config_dir)
    classes = frozenset(tokens(cfg.get("smtpd_restriction_classes")))
    ctx = Ctx(cfg, Fixer(config_dir), classes)
    findings: list[ConfigFinding] = [f for check in CHECKS for f in check(ctx)]
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
    return ConfigAuditReport(config_dir, cfg.get("mail_version"), services, findings, warnings,
                             status)
