"""Automatic response to a finding (used by `relayguard watch`).

Per finding kind, `[respond] <kind> = "alert"` (only tell people) or `"respond"` (act):

* `auth_bruteforce` → ban the attacking address for `[bruteforce] ban_for`. This is the
  fail2ban-style blocking of the seeds (3 failures → 20 minutes) and the only kind that
  responds by default; it acts at any severity (the `[bruteforce]` thresholds decide).
* `direct_smtp`, `trusted_host_relay` → ban the source address (until removed: a hacked host
  stays cut off until someone cleans it and runs `relayguard ban remove`).
* `compromised_account` → lock the login (check_sasl_access map + policy server), hold the
  mail it has queued (through the queue code: postsuper -h, audited), run the site hooks; when
  the password was guessed, ban the guessing address too.

Kinds other than auth_bruteforce act only from `[respond] min_severity` (default "high") up:
the detectors promise that ordinary users never reach "high". `queue_surge` and `blocklisted`
have no automatic action (nothing to ban or lock). Allowlisted networks are never banned.
Every action goes to the audit trail; `respond()` returns what was done, for the alert.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from ..config import RESPOND_MODES
from ..detect.finding import SEVERITIES, SEVERITY_RANK
from ..sanitize import one_line
from ..state.shared import Ban, Lock
from ..state.store import StateError, Store
from .bans import Banner
from .common import Refused, RespondError, config_section, duration, log, postfix_config_dir
from .locks import Locker

MODES = RESPOND_MODES
RESPONDING_KINDS = ("auth_bruteforce", "compromised_account", "trusted_host_relay", "direct_smtp")
DEFAULT_MODES = {"auth_bruteforce": "respond", "compromised_account": "alert",
                 "trusted_host_relay": "alert", "direct_smtp": "alert"}


@dataclass
class Done:
    """One thing the automatic response did, or tried to do."""

    action: str   # ban, lock, hold, hook
    subject: str  # the address, the login
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.action} {self.subject}: {'' if self.ok else 'FAILED: '}{self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _get(finding: Any, name: str, default: Any = None) -> Any:
    if isinstance(finding, dict):
        return finding.get(name, default)
    return getattr(finding, name, default)


def _severity(finding: Any) -> str:
    sev = _get(finding, "severity")
    if sev in SEVERITY_RANK:
        return str(sev)
    from ..detect.finding import severity_for

    return severity_for(int(_get(finding, "score", 0) or 0))


def check_modes(cfg: dict[str, Any] | None) -> dict[str, str]:
    """The mode of each responding kind; RespondError for a bad value."""
    rs = config_section(cfg, "respond")
    modes = {}
    for kind in RESPONDING_KINDS:
        mode = str(rs.get(kind, DEFAULT_MODES[kind]))
        if mode not in MODES:
            raise RespondError(f"[respond] {kind}: {mode!r} is not one of {', '.join(MODES)}")
        modes[kind] = mode
    return modes


class AutoResponder:
    """Acts on findings according to `[respond]`. Build once (watch), call `respond()` for each
    new finding; it is idempotent for a subject already banned or locked."""

    def __init__(self, cfg: dict[str, Any] | None, banner: Banner, locker: Locker, *,
                 store: Store | None = None, config_dir: str | None = None) -> None:
        self.cfg = cfg or {}
        self.banner = banner
        self.locker = locker
        self.store = store if store is not None else banner.store
        self.config_dir = postfix_config_dir(cfg, config_dir)
        self.modes = check_modes(cfg)
        rs = config_section(cfg, "respond")
        self.min_severity = str(rs.get("min_severity", "high"))
        if self.min_severity not in SEVERITY_RANK:
            raise RespondError(f"[respond] min_severity: one of {', '.join(SEVERITIES)}")
        self.hold_mail = bool(rs.get("hold_mail", True))
        bf = config_section(cfg, "bruteforce")
        self.ban_for = duration(bf.get("ban_for", "20m"), "[bruteforce] ban_for") or None
        host_ban = rs.get("host_ban_for", "0")
        self.host_ban_for = duration(host_ban, "[respond] host_ban_for") or None
        self.warnings: list[str] = []

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None, state_path: str | None = None,
                    config_dir: str | None = None) -> AutoResponder:
        banner = Banner.from_config(cfg, state_path, config_dir)
        try:
            locker = Locker(banner.shared, cfg, store=banner.store, config_dir=config_dir)
        except BaseException:
            banner.close()
            raise
        return cls(cfg, banner, locker, config_dir=config_dir)

    def close(self) -> None:
        self.banner.close()  # the locker shares its state and store

    def expire(self, now: float | None = None) -> tuple[list[Ban], list[Lock]]:
        """Lift expired bans and locks (backends, maps, audit trail, postponed reloads); call every
        few seconds. Never raises for a backend failure: see `warnings`."""
        self.warnings = []
        bans = self.banner.expire(now)
        self.warnings += self.banner.warnings
        locks = self.locker.expire(now)
        self.warnings += self.locker.warnings
        return bans, locks

    def sync(self, now: float | None = None) -> tuple[int, int]:
        """Re-apply the active bans and locks (at start: the nftables table does not survive a
        reboot, a map may have been edited). Returns (bans, locks) in force. Raises
        RespondError when the backend cannot be set up (e.g. nft without privileges)."""
        self.warnings = []
        nbans = self.banner.sync(now)
        self.warnings += self.banner.warnings
        nlocks = self.locker.sync(now)
        self.warnings += self.locker.warnings
        return nbans, nlocks

    def mode(self, kind: str) -> str:
        return self.modes.get(kind, "alert")

    def wants(self, finding: Any) -> bool:
        """Would `respond()` act on this finding (mode and severity)?"""
        kind = str(_get(finding, "kind", ""))
        if self.mode(kind) != "respond":
            return False
        if kind == "auth_bruteforce":
            return True
        return SEVERITY_RANK[_severity(finding)] >= SEVERITY_RANK[self.min_severity]

    def respond(self, finding: Any, now: float | None = None) -> list[Done]:
        """Carry out the configured response to `finding` (a detect.Finding or its dict);
        returns what was done — empty when the kind is in "alert" mode. Never raises for a
        failed action: each failure is a Done with ok=False (and in the audit trail)."""
        if not self.wants(finding):
            return []
        kind = str(_get(finding, "kind"))
        subject = str(_get(finding, "subject") or "")
        summary = one_line(str(_get(finding, "summary") or kind), 300)
        reason = f"{kind}: {summary}"
        evidence = _get(finding, "evidence") or {}
        done: list[Done] = []
        if kind == "auth_bruteforce":
            done.append(self._ban(subject, reason, self.ban_for))
        elif kind in ("direct_smtp", "trusted_host_relay"):
            done.append(self._ban(subject, reason, self.host_ban_for))
        elif kind == "compromised_account":
            done += self._account(subject, reason)
            guessed = evidence.get("guessed_from") if isinstance(evidence, dict) else None
            if guessed:
                done.append(self._ban(str(guessed), f"guessed the password of {subject}: "
                                      + summary, self.ban_for))
        for d in done:
            log.log(20 if d.ok else 30, "automatic response to %s %s: %s", kind, subject, d)
        return done

    # ---- pieces
    def _ban(self, ip: str, reason: str, ttl: float | None) -> Done:
        try:
            network = self.banner.parse(ip)
            current = next((b for b in self.banner.bans() if b.network == network), None)
            if current is not None:
                return Done("ban", network, True, "already banned"
                            + ("" if current.expires is None else
                               f" until {current.to_dict()['expires']}"))
            ban = self.banner.ban(network, reason, ttl, source="watch")
        except Refused as exc:
            return Done("ban", ip, False, str(exc))
        except (RespondError, StateError) as exc:
            return Done("ban", ip, False, str(exc))
        until = "until removed" if ban.expires is None else f"until {ban.to_dict()['expires']}"
        detail = f"banned ({ban.backend}) {until}"
        if self.banner.warnings:
            detail += "; " + "; ".join(self.banner.warnings)
        return Done("ban", ban.network, True, detail)

    def _account(self, user: str, reason: str) -> list[Done]:
        out: list[Done] = []
        try:
            if self.locker.locked(user) is not None:
                return [Done("lock", user, True, "already locked")]
            lk = self.locker.lock(user, reason, None, source="watch")
        except (RespondError, StateError) as exc:
            out.append(Done("lock", user, False, str(exc)))
            lk = None
        if lk is not None:
            out.append(Done("lock", lk.user, True, "locked until unlocked"
                            + (("; " + "; ".join(self.locker.warnings)) if self.locker.warnings
                               else "")))
            for r in self.locker.hook_results:
                out.append(Done("hook", " ".join(r.argv), r.ok, r.summary()))
        if self.hold_mail:
            out.append(hold_user_mail(user, self.store, self.config_dir, reason))
        return out


def hold_user_mail(user: str, store: Store | None, config_dir: str | None = None,
                   reason: str = "", source: str = "watch") -> Done:
    """Put on hold the queued mail a SASL login sent (from the queue files: `postcat` records
    `sasl_username`), through the queue package, with an audit entry like `queue hold`'s.
    Mail already on hold is left alone."""
    from ..queue import QueueError, Selector, postsuper, select
    from ..queue.tools import PostfixTools

    sel = Selector(sasl_users=(user,))
    try:
        tools = PostfixTools(config_dir)
        selection = select(tools, sel)
        ids = [m.queue_id for m in selection.messages if m.queue_name != "hold"]
        result = postsuper(tools, "hold", ids)
    except (QueueError, OSError) as exc:
        why = str(exc) if isinstance(exc, QueueError) else (exc.strerror or str(exc))
        _record_hold(store, sel, 0, [], [], config_dir, "failed", f"{source}: {why}")
        return Done("hold", user, False, f"could not hold its queued mail: {why}")
    _record_hold(store, sel, len(selection.messages), result.done, selection.gone + result.gone,
                 config_dir, "ok", f"automatic ({source}): {one_line(reason, 300)}")
    detail = f"held {len(result.done)} queued message(s)"
    if result.gone:
        detail += f" ({len(result.gone)} had left the queue)"
    if result.done:
        detail += "; release what is legitimate with `relayguard queue release --sasl-user ...`"
    return Done("hold", user, True, detail)


def _record_hold(store: Store | None, sel: Any, matched: int, done: list[str], gone: list[str],
                 config_dir: str | None, status: str, detail: str) -> None:
    if store is None:
        return
    try:
        store.record("hold", selector=sel.describe(), matched=matched, queue_ids=done, gone=gone,
                     config_dir=config_dir, status=status, detail=detail, ts=time.time())
    except StateError as exc:
        log.warning("%s", exc)
