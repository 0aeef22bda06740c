"""The one place where `watch` calls the respond package (bans, locks, automatic responses).

Kept apart so that the daemon's loop knows nothing about backends, allowlists or hooks: it
hands over findings, asks for expiry, and counts what is in force. Everything done here is
audited by the respond package itself (`relayguard history`).

The API used: `respond.AutoResponder.from_config(cfg, state_path, config_dir)` with
`.respond(finding) -> list[Done]`, `.mode(kind)`, `.banner` (`Banner.expire()`,
`.shared.bans()/.locks()`) and `.locker.expire()`.
"""

from __future__ import annotations

import logging
from typing import Any

from ..detect import Finding
from ..respond import AutoResponder, Done
from ..state import Store

log = logging.getLogger("relayguard.watch")


class Responder:
    """Opened in the thread that runs the daemon (SQLite connections belong to one thread)."""

    def __init__(self, cfg: dict[str, Any], state_path: str | None = None,
                 config_dir: str | None = None) -> None:
        self.cfg = cfg
        self.state_path = state_path
        self.config_dir = config_dir
        self.auto: AutoResponder | None = None

    def open(self) -> None:
        """Raises RespondError for a bad [respond]/[bruteforce] setting, StateError for an
        unusable state database: the daemon must not start half-armed."""
        self.auto = AutoResponder.from_config(self.cfg, self.state_path, self.config_dir)

    @property
    def store(self) -> Store | None:
        """The local state database the respond package opened (audit trail; also ours)."""
        return self.auto.store if self.auto is not None else None

    @property
    def bans_enabled(self) -> bool:
        """`[respond] auth_bruteforce = "alert"` turns the immediate ban off too."""
        return self.auto is not None and self.auto.mode("auth_bruteforce") == "respond"

    def respond(self, finding: Finding) -> list[Done]:
        """The configured automatic response to a finding (nothing in "alert" mode). Never
        raises: a failure is a Done with ok=False, and logged."""
        assert self.auto is not None
        try:
            return self.auto.respond(finding)
        except Exception as exc:  # noqa: BLE001 — the daemon must survive a failed response
            log.error("automatic response to %s %s failed: %s", finding.kind, finding.subject, exc)
            return [Done("respond", finding.subject, False, str(exc))]

    def expire(self) -> list[Any]:
        """Lift expired bans and locks (backends, maps, audit); the bans lifted."""
        assert self.auto is not None
        banner, locker = self.auto.banner, self.auto.locker
        expired = banner.expire()
        for w in banner.warnings:
            log.warning("ban expiry: %s", w)
        try:
            locker.expire()
            for w in locker.warnings:
                log.warning("lock expiry: %s", w)
        except Exception as exc:  # noqa: BLE001 — expiry must never stop the daemon
            log.warning("lock expiry failed: %s", exc)
        return expired

    def active(self) -> tuple[int, int]:
        """(bans, locks) in force."""
        assert self.auto is not None
        shared = self.auto.banner.shared
        return len(shared.bans()), len(shared.locks())

    def close(self) -> None:
        if self.auto is not None:
            self.auto.close()
            self.auto = None
