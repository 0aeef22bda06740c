"""What every config-audit check shares: the finding it reports, the effective
configuration it judges (:class:`Ctx`), and the ``postconf`` lines of a fix (:class:`Fixer`).

The checks themselves are in :mod:`.checks`, one module per family; :mod:`.engine` runs them.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ..postfix import restrictions as rx
from ..postfix.postconf import PostfixConfig, Service

#: Stands for the names of the services a merged finding is about (see `merged`).
HERE = "<services>"


@dataclass
class ConfigFinding:
    """One way the configuration lets spam out, with its fix. (Log findings — who *is* sending
    spam — are :class:`relayguard.detect.finding.Finding`.)"""

    id: str
    severity: str
    title: str
    detail: str
    fix: str
    service: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tokens(value: str) -> list[str]:
    """The items of a Postfix list value (white space or commas between them)."""
    return [t for t in re.split(r"[\s,]+", value) if t]


class Fixer:
    """Builds the ``postconf`` lines of a fix, aimed at the audited configuration directory."""

    def __init__(self, config_dir: str | None) -> None:
        self.base = ["postconf"] + (["-c", config_dir] if config_dir else [])
        self.config_dir = config_dir or "/etc/postfix"

    def main(self, name: str, value: str) -> str:
        return shlex.join([*self.base, "-e", f"{name} = {value}"])

    def service(self, svc_key: str, name: str, value: str) -> str:
        # `postconf -P` refuses whitespace in values; commas separate list items just as well.
        compact = ",".join(tokens(value))
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


@dataclass
class Ctx:
    """The effective configuration one config audit judges, and what the checks ask of it."""

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


#: A check family's entry point: every finding it has about one configuration.
Check = Callable[[Ctx], Iterable[ConfigFinding]]


@dataclass
class Issue:
    """One service's instance of a problem, before services sharing the same fix are merged."""

    svc: Service
    severity: str
    detail: str
    fix: str


def merged(ctx: Ctx, fid: str, title: str, issues: list[Issue]) -> Iterable[ConfigFinding]:
    """One finding per distinct fix: a main.cf cause shared by every smtpd is reported once.

    ``title`` gets the services' names in front; the first issue's detail stands for the group
    (services sharing a fix share the value that causes it).
    """
    groups: dict[tuple[str, str], list[Issue]] = {}
    for issue in issues:
        groups.setdefault((issue.fix, issue.severity), []).append(issue)
    for (fix, severity), group in groups.items():
        keys = ", ".join(i.svc.key for i in group)
        names = ", ".join(ctx.name(i.svc) for i in group)
        yield ConfigFinding(fid, severity, f"{keys}: {title}",
                            group[0].detail.replace(HERE, names), fix, keys)

