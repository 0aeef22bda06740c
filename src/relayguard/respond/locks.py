"""Account locks: refuse mail from a SASL login (a hijacked account), now, on every smtpd.

The lock is recorded in the shared state (the policy server refuses it too) and written to a
`check_sasl_access` map of `LOGIN REJECT text` entries, regenerated from the active locks on
every change:

    # main.cf — first in the list, before permit_sasl_authenticated and permit_mynetworks
    smtpd_recipient_restrictions =
        check_sasl_access hash:/etc/postfix/relayguard_sasl_access,
        <your existing restrictions…>

`hash:` (Berkeley DB, in Debian's postfix package) is built with `postmap` beside the live
file and renamed over it, so smtpd never sees a half-built table; Postfix daemons notice the new
file before their next connection, no reload needed. `btree:`, `cdb:` and `lmdb:` (extra Debian
packages) work the same way; `texthash:` is read into memory and needs a (rate-limited) reload.

The key is the login exactly as Postfix sees it: with `smtpd_sasl_local_domain` set (Cyrus
realms), `alice` logs in as `alice@example.com`, so a bare name is qualified with that domain
(`[respond] qualify_logins`). Site hooks run after a lock (see hooks.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import MAP_TYPES
from ..postfix.maps import Reloader, atomic_write, build_aside, read_bytes
from ..postfix.postconf import value as postconf_value
from ..postfix.programs import PostfixError
from ..sanitize import one_line
from ..state.shared import Lock, SharedState
from ..state.store import StateError, Store
from .common import (
    CommandResult,
    RespondError,
    config_section,
    duration,
    in_instance,
    log,
    postfix_config_dir,
)
from .holder import StateHolder, argv_if_cli
from .hooks import check_hooks, run_hooks

DEFAULT_MAP = "hash:/etc/postfix/relayguard_sasl_access"
DEFAULT_TEXT = "Account locked by the administrator"


def check_login(user: str) -> str:
    """A login relayguard will act on: printable, not empty, not an option (a hook receives it
    as an argument: `-rf` must not become a flag)."""
    if not isinstance(user, str) or not user:
        raise RespondError("empty login")
    if len(user) > 320:
        raise RespondError("login too long (more than 320 characters)")
    if not user.isprintable():
        raise RespondError(f"refusing login with control characters: {one_line(user)!r}")
    if user.startswith("-"):
        raise RespondError(f"refusing login starting with '-': {user!r}")
    return user


def map_key_problem(user: str) -> str | None:
    """Why `user` cannot be a key of a Postfix lookup table, or None."""
    if any(c.isspace() for c in user):
        return "it contains white space"
    if user.startswith("#"):
        return "it starts with '#'"
    return None


def map_spec(cfg: dict[str, Any] | None, config_dir: str | None) -> str:
    """`[respond] sasl_access_map` (TYPE:PATH; "" for no map), the default one in the
    instance's directory (see in_instance)."""
    spec = str(config_section(cfg, "respond").get("sasl_access_map", DEFAULT_MAP) or "")
    kind, sep, path = spec.partition(":")
    default_path = DEFAULT_MAP.partition(":")[2]
    if sep and path == default_path:
        return f"{kind}:{in_instance(path, default_path, config_dir)}"
    return spec


class SaslAccessMap:
    """The `check_sasl_access` table: `TYPE:PATH`, regenerated from the active locks."""

    def __init__(self, spec: str = DEFAULT_MAP, config_dir: str | None = None,
                 reload_interval: float = 30.0, text: str = DEFAULT_TEXT,
                 timeout: float = 60.0) -> None:
        kind, sep, path = spec.partition(":")
        if not sep or kind not in MAP_TYPES or not path.startswith("/"):
            raise RespondError(f"[respond] sasl_access_map: expected TYPE:/absolute/path with TYPE "
                               f"one of {', '.join(MAP_TYPES)}, not {spec!r}")
        self.kind = kind
        self.path = Path(path)
        self.config_dir = config_dir
        self.text = one_line(text) or DEFAULT_TEXT
        self.timeout = timeout
        self.reloader = Reloader(self.path.parent, config_dir, reload_interval)

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.path}"

    @property
    def index(self) -> Path:
        """The file Postfix reads (the text itself for texthash)."""
        return self.path.with_name(self.path.name + (MAP_TYPES[self.kind] or ""))

    def render(self, locks: list[Lock]) -> tuple[bytes, list[str]]:
        lines = ["# Written by relayguard from its lock list; rewritten on every lock, unlock and",
                 "# expiry: do not edit, use `relayguard lock` / `relayguard unlock`.",
                 f"# main.cf: smtpd_recipient_restrictions = check_sasl_access {self.spec}, ..."]
        skipped, seen = [], set()
        for lk in sorted(locks, key=lambda lk: lk.user.casefold()):
            why = map_key_problem(lk.user)
            if why:
                skipped.append(f"{lk.user!r} cannot be written to {self.path} ({why}): the lock "
                               "is enforced by the policy server and the hooks only")
                continue
            if lk.user.casefold() in seen:  # tables fold case: one entry per login
                continue
            seen.add(lk.user.casefold())
            until = "until unlocked" if lk.expires is None else "until " + lk.to_dict()["expires"]
            lines.append(f"# {one_line(lk.reason) or 'no reason given'} ({until})")
            lines.append(f"{lk.user}\tREJECT {self.text}")
        return ("\n".join(lines) + "\n").encode("utf-8"), skipped

    def write(self, locks: Callable[[], list[Lock]], now: float,
              force: bool = False) -> list[str]:
        """Replace the table when its content changes. `locks()` is read under the lock that
        serialises writers (another process may be locking someone right now). Returns notes
        for people."""
        try:
            with self.reloader.locked() as st:
                data, notes = self.render(locks())
                if self.kind == "texthash":
                    note = None
                    if force or read_bytes(self.path) != data:
                        atomic_write(self.path, data)
                        note = self.reloader.changed(st, str(self.path), now)
                    elif st["pending"]:
                        note = self.reloader.maybe_reload(st, now)
                    if note:
                        notes.append(note)
                elif force or read_bytes(self.path) != data or not self.index.exists():
                    self._postmap(data)
        except OSError as exc:
            raise RespondError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        except PostfixError as exc:
            raise RespondError(f"{exc}; {self.path} not written") from None
        return notes

    def _postmap(self, data: bytes) -> None:
        try:
            build_aside(self.kind, self.path, data, config_dir=self.config_dir,
                        timeout=self.timeout)
        except PostfixError as exc:
            raise RespondError(str(exc)) from None


class Locker(StateHolder):
    """Lock and unlock SASL logins: shared state + check_sasl_access map + hooks + audit trail.

    Notes for people from the last call are in `self.warnings`; the hooks' results in
    `self.hook_results`.
    """

    def __init__(self, shared: SharedState, cfg: dict[str, Any] | None = None, *,
                 store: Store | None = None, config_dir: str | None = None) -> None:
        super().__init__(shared, cfg, store)
        rs = config_section(cfg, "respond")
        self.config_dir = postfix_config_dir(cfg, config_dir)
        spec = map_spec(cfg, self.config_dir)
        self.map: SaslAccessMap | None = None
        if spec:
            bf = config_section(cfg, "bruteforce")
            self.map = SaslAccessMap(spec, self.config_dir,
                                     duration(bf.get("reload_interval", "30s"),
                                              "[bruteforce] reload_interval"),
                                     str(rs.get("lock_text") or DEFAULT_TEXT))
        self.hooks = check_hooks(rs.get("hooks", []))
        self.unlock_hooks = check_hooks(rs.get("unlock_hooks", []), "[respond] unlock_hooks")
        self.hook_timeout = duration(rs.get("hook_timeout", "30s"), "[respond] hook_timeout") or 30.0
        self.qualify = bool(rs.get("qualify_logins", True))
        self.hook_results: list[CommandResult] = []
        self._realm: str | None = None

    # ---- names
    def realm(self) -> str:
        """smtpd_sasl_local_domain of the instance, expanded ("" when unset or no Postfix)."""
        if self._realm is None:
            try:
                self._realm = postconf_value("smtpd_sasl_local_domain", self.config_dir)
            except PostfixError:
                self._realm = ""  # no Postfix here: logins are taken as given
        return self._realm

    def login_name(self, user: str) -> str:
        """The login as Postfix logs it and looks it up: `alice` → `alice@realm` when the
        instance sets smtpd_sasl_local_domain (and [respond] qualify_logins is on)."""
        check_login(user)
        if self.qualify and "@" not in user and self.realm():
            return f"{user}@{self.realm()}"
        return user

    # ---- reads
    def locks(self, now: float | None = None) -> list[Lock]:
        return self.shared.locks(time.time() if now is None else now)

    def locked(self, user: str, now: float | None = None) -> Lock | None:
        now = time.time() if now is None else now
        return self.shared.locked(self.login_name(user), now) or self.shared.locked(user, now)

    # ---- changes
    def lock(self, user: str, reason: str = "", ttl_seconds: float | None = None,
             source: str = "cli", *, hooks: bool = True) -> Lock:
        """Lock `user` for `ttl_seconds` (None: until unlocked), then run the hooks. Raises
        RespondError when the lock could not be put in place (nothing is left recorded)."""
        self.warnings, self.hook_results = [], []
        login = self.login_name(user)
        if login != user:
            self.warnings.append(f"Postfix sees this login as {login!r} (smtpd_sasl_local_domain)")
        if ttl_seconds is not None and not ttl_seconds > 0:
            raise RespondError(f"lock duration must be positive, not {ttl_seconds!r}")
        now = time.time()
        lk = Lock(login, one_line(reason, 500), now,
                  None if ttl_seconds is None else now + float(ttl_seconds), source)
        previous = self.shared.locked(login, now)
        self.shared.add_lock(lk)
        try:
            self._write_map(now)
        except RespondError as exc:
            self.shared.remove_lock(login)
            if previous is not None:
                self.shared.add_lock(previous)
            self._audit("lock", lk, source, "failed", str(exc))
            raise
        self._audit("lock", lk, source, "ok", "; ".join(self.warnings) or None)
        log.info("locked %s by %s", login, source)
        if hooks and self.hooks:
            self.hook_results = run_hooks(self.hooks, login, "lock", reason=reason,
                                          timeout=self.hook_timeout, store=self.store,
                                          source=source)
            self.warnings += [f"hook {r.argv[0]} failed: {r.error}" for r in self.hook_results
                              if not r.ok]
        return lk

    def unlock(self, user: str, source: str = "cli", *, hooks: bool = True) -> Lock | None:
        """Lift the lock of `user`; the map is rewritten either way. Returns the lock removed."""
        self.warnings, self.hook_results = [], []
        login = self.login_name(user)
        removed = self.shared.remove_lock(login)
        if removed is None and login != user:
            removed = self.shared.remove_lock(user)
        now = time.time()
        try:
            self._write_map(now)
        except RespondError as exc:
            if removed is not None:
                self._audit("unlock", removed, source, "failed", str(exc))
                raise RespondError(f"{removed.user} is off the lock list, but {exc}") from None
            raise
        if removed is None:
            self.warnings.append(f"{login} was not locked")
            return None
        self._audit("unlock", removed, source, "ok", "; ".join(self.warnings) or None)
        log.info("unlocked %s by %s", removed.user, source)
        if hooks and self.unlock_hooks:
            self.hook_results = run_hooks(self.unlock_hooks, removed.user, "unlock",
                                          reason=removed.reason, timeout=self.hook_timeout,
                                          store=self.store, source=source)
        return removed

    def expire(self, now: float | None = None) -> list[Lock]:
        """Take expired locks out of the map and the state (audited as `unlock` by `expiry`,
        unlock hooks run). Never raises for a map failure: see warnings."""
        self.warnings, self.hook_results = [], []
        now = time.time() if now is None else now
        pop = getattr(self.shared, "pop_expired_locks", None)
        expired: list[Lock] = pop(now) if pop is not None else []
        status, detail = "ok", "expired"
        try:
            self._write_map(now)
        except RespondError as exc:
            self.warnings.append(str(exc))
            status, detail = "failed", str(exc)
        for lk in expired:
            self._audit("unlock", lk, "expiry", status, detail)
            if self.unlock_hooks:
                self.hook_results += run_hooks(self.unlock_hooks, lk.user, "unlock",
                                               reason=lk.reason, timeout=self.hook_timeout,
                                               store=self.store, source="expiry")
        return expired

    def sync(self, now: float | None = None) -> int:
        """Rewrite the map from the active locks (after a restart, or if it was edited)."""
        self.warnings = []
        now = time.time() if now is None else now
        self._write_map(now, force=True)
        return len(self.shared.locks(now))

    def _write_map(self, now: float, force: bool = False) -> None:
        if self.map is None:
            return
        if not self.map.path.exists() and not self.shared.locks(now):
            return  # no table yet and nothing to lock: leave /etc/postfix alone (watch, sync)
        self.warnings += self.map.write(lambda: self.shared.locks(now), now, force)

    def _audit(self, action: str, lk: Lock, source: str, status: str, detail: str | None) -> None:
        if self.store is None:
            return
        try:
            self.store.record(action, selector={"user": lk.user, "source": source,
                                                "reason": one_line(lk.reason, 500),
                                                "expires": lk.to_dict()["expires"],
                                                "map": self.map.spec if self.map else None},
                              status=status, detail=one_line(detail, 500) if detail else None,
                              command=argv_if_cli(source))
        except StateError as exc:
            self.warnings.append(str(exc))
