"""Bans: refuse an address or a network, for a while or until removed.

The shared state (`state.shared`: SQLite, or Redis for a fleet) holds the decision; a backend
(:mod:`.backends`, `[bruteforce] ban_backend`) enforces it on this machine: `state` (recorded
only, the policy server refuses the client), `nftables`, `postfix-access` (a `cidr:` map) or
`command` (e.g. fail2ban-client, no shell).

Networks in `[bruteforce] allow` (default 127.0.0.0/8 and ::1) are never banned: a ban that
touches them is refused with `Refused`. Every ban and unban is written to the audit trail.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ..sanitize import one_line
from ..state import audit_trail
from ..state.shared import Ban, SharedState, normalise_network
from ..state.store import StateError, Store
from .backends import BanBackend, make_backend
from .backends.base import Network, as_network
from .common import Refused, RespondError, config_section, duration, log
from .holder import StateHolder, argv_if_cli

DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128")
# Wider than this is refused outright: "ban 0.0.0.0/1" is a typo, not a decision.
MIN_PREFIX = {4: 8, 6: 16}


def parse_allow(values: Iterable[str]) -> list[Network]:
    nets = []
    for v in values:
        try:
            nets.append(as_network(str(v).strip()))
        except ValueError:
            raise RespondError(f"[bruteforce] allow: bad network {v!r}") from None
    return nets


class Banner(StateHolder):
    """Ban and unban addresses or networks: shared state + the configured backend + audit trail.

    Used by `relayguard ban`, `watch` (automatic responses) and the dashboard. Notes for people
    from the last call (postponed reload, failed cleanup) are in `self.warnings`.
    """

    def __init__(self, shared: SharedState, cfg: dict[str, Any] | None = None, *,
                 store: Store | None = None, backend: BanBackend | None = None,
                 config_dir: str | None = None) -> None:
        super().__init__(shared, cfg, store)
        bf = config_section(cfg, "bruteforce")
        self.backend: BanBackend = backend or make_backend(cfg, config_dir)
        self.allow = parse_allow(bf.get("allow", DEFAULT_ALLOW))
        self.default_ttl = duration(bf.get("ban_for", "20m"), "[bruteforce] ban_for") or None

    # ---- checks
    def allowed_by(self, network: str) -> str | None:
        """The allowlist entry that `network` touches, or None."""
        n = as_network(network)
        for a in self.allow:
            if a.version == n.version and a.overlaps(n):  # type: ignore[arg-type]
                return str(a)
        return None

    @staticmethod
    def parse(ip_or_cidr: str) -> str:
        try:
            return normalise_network(str(ip_or_cidr))
        except ValueError:
            raise RespondError(f"not an IP address or CIDR network: {one_line(ip_or_cidr)!r}") from None

    # ---- reads
    def bans(self, now: float | None = None) -> list[Ban]:
        return self.shared.bans(time.time() if now is None else now)

    def banned(self, ip: str, now: float | None = None) -> Ban | None:
        return self.shared.banned(self.parse(ip), time.time() if now is None else now)

    def _exact(self, network: str, now: float) -> Ban | None:
        return next((b for b in self.shared.bans(now) if b.network == network), None)

    # ---- changes
    def ban(self, ip_or_cidr: str, reason: str = "", ttl_seconds: float | None = None,
            source: str = "cli") -> Ban:
        """Ban an address or network for `ttl_seconds` (None: until removed). Re-banning
        replaces the earlier ban. Raises Refused (allowlist, too wide) or RespondError."""
        self.warnings = []
        network = self.parse(ip_or_cidr)
        hit = self.allowed_by(network)
        if hit:  # a refusal changes nothing: it is reported, not audited
            raise Refused(f"refusing to ban {network}: it is in the allowlist ([bruteforce] allow "
                          f"{hit})")
        n = as_network(network)
        if n.prefixlen < MIN_PREFIX[n.version]:
            raise Refused(f"refusing to ban {network}: wider than /{MIN_PREFIX[n.version]}")
        if ttl_seconds is not None and not ttl_seconds > 0:
            raise RespondError(f"ban duration must be positive, not {ttl_seconds!r}")
        now = time.time()
        ban = Ban(network, one_line(reason, 500), now,
                  None if ttl_seconds is None else now + float(ttl_seconds),
                  self.backend.name, source)
        previous = self._exact(network, now)
        entry = self._begin("ban", network, ban, source, reason)  # StateError: not banned
        self.shared.add_ban(ban)
        try:
            self.warnings += self.backend.add(ban, lambda: self.shared.bans(now), now)
        except RespondError as exc:
            # Not enforced: do not leave a record that claims otherwise.
            self.shared.remove_ban(network)
            if previous is not None:
                self.shared.add_ban(previous)
            self._complete(entry, "failed", str(exc))
            raise
        self._complete(entry, "ok", "; ".join(self.warnings) or None)
        log.info("banned %s (%s) %s by %s", network, ban.backend,
                 "until removed" if ban.expires is None else f"for {ttl_seconds:g}s", source)
        return ban

    def unban(self, ip: str, source: str = "cli") -> Ban | None:
        """Lift the ban of exactly this address or network (the backend is cleaned even when
        the state had no such ban). Returns the ban removed, or None."""
        self.warnings = []
        network = self.parse(ip)
        now = time.time()
        # The entry is written before the ban is lifted (StateError: not recorded, not done).
        current = self._exact(network, 0.0)
        entry = (self._begin("unban", network, current, source, current.reason)
                 if current is not None else None)
        removed = self.shared.remove_ban(network)
        if removed is not None and entry is None:  # appeared in between: still on the record
            entry = self._begin("unban", network, removed, source, removed.reason)
        try:
            self.warnings += self.backend.remove(network, lambda: self.shared.bans(now), now)
        except RespondError as exc:
            if removed is not None and entry is not None:
                self._complete(entry, "failed", str(exc))
                raise RespondError(f"{network} is off the ban list, but {exc}") from None
            raise
        if removed is None or entry is None:
            if entry is not None:
                entry.discard()  # removed by someone else meanwhile: nothing lifted here
            self.warnings.append(f"{network} was not banned")
            return None
        self._complete(entry, "ok", "; ".join(self.warnings) or None)
        log.info("unbanned %s by %s", network, source)
        return removed

    def expire(self, now: float | None = None) -> list[Ban]:
        """Take expired bans out of the backend and the state (audited as `unban` by
        `expiry`); also applies a postponed `postfix reload`. Never raises for a backend
        failure — watch calls this every few seconds and must keep going (see warnings)."""
        self.warnings = []
        now = time.time() if now is None else now
        pop = getattr(self.shared, "pop_expired_bans", None)
        expired: list[Ban] = pop(now) if pop is not None else []
        status, detail = "ok", None
        try:
            self.warnings += self.backend.expire(expired, lambda: self.shared.bans(now), now)
        except RespondError as exc:
            self.warnings.append(str(exc))
            status, detail = "failed", str(exc)
        for b in expired:
            # Expiry has taken effect already (no lookup honours an expired ban): a trail that
            # cannot be written is a warning, not a reason to stop.
            try:
                self._complete(self._begin("unban", b.network, b, "expiry", b.reason), status,
                               detail or "expired")
            except StateError as exc:
                self.warnings.append(str(exc))
        if expired:
            log.info("expired bans: %s", ", ".join(b.network for b in expired))
        return expired

    def sync(self, now: float | None = None) -> int:
        """Re-apply every active ban to the backend (after a reboot or a backend change: the
        nftables table is gone, the map was edited). Returns how many bans are active."""
        self.warnings = []
        now = time.time() if now is None else now
        self.warnings += self.backend.sync(lambda: self.shared.bans(now), now)
        return len(self.shared.bans(now))

    def _begin(self, action: str, network: str, ban: Ban | None, source: str,
               reason: str) -> audit_trail.Entry:
        selector: dict[str, Any] = {"network": network, "backend": self.backend.name,
                                    "source": source, "reason": one_line(reason, 500)}
        if ban is not None:
            selector["expires"] = ban.to_dict()["expires"]
        return audit_trail.begin(self.store, action, selector=selector,
                                 command=argv_if_cli(source))

    def _complete(self, entry: audit_trail.Entry, status: str, detail: str | None) -> None:
        problem = entry.complete(status, detail=one_line(detail, 500) if detail else None)
        if problem:
            self.warnings.append(problem)
