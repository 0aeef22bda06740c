"""Bans: refuse an address or a network, for a while or until removed.

The shared state (`state.shared`: SQLite, or Redis for a fleet) holds the decision; a backend
enforces it on this machine (`[bruteforce] ban_backend`):

* `state` — recorded only; the policy server (`relayguard policy serve`) refuses the client.
* `nftables` — table `inet relayguard`: sets of addresses (`flags timeout`) and of networks
  (`flags interval, timeout`) per IP version, and `input`/`forward` chains dropping TCP to ports
  25, 465 and 587 from them. The kernel expires each element with its own timeout.
* `postfix-access` — a `cidr:` map for `check_client_access` whose entries are `REJECT`; it is
  rewritten (atomically) without expired entries, and Postfix reloaded, rate-limited.
* `command` — an argv template to ban (`{ip}`, `{seconds}`, `{reason}`) and one to unban,
  e.g. fail2ban-client. No shell.

Networks in `[bruteforce] allow` (default 127.0.0.0/8 and ::1) are never banned: a ban that
touches them is refused with `Refused`. Every ban and unban is written to the audit trail.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, Self

from ..config import BAN_BACKENDS
from ..postfix.maps import Reloader, atomic_write, read_bytes
from ..postfix.programs import PostfixError, find_program
from ..state.shared import Ban, SharedState, SqliteShared, normalise_network, open_shared
from ..state.store import StateError, Store, resolve_path
from .common import (
    Refused,
    RespondError,
    check_template,
    duration,
    expand,
    in_instance,
    log,
    one_line,
    run_argv,
)

BACKENDS = BAN_BACKENDS
DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128")
DEFAULT_PORTS = (25, 465, 587)
DEFAULT_ACCESS_MAP = "/etc/postfix/relayguard_access.cidr"
# Wider than this is refused outright: "ban 0.0.0.0/1" is a typo, not a decision.
MIN_PREFIX = {4: 8, 6: 16}
TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,30}$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Active = Callable[[], list[Ban]]


def _net(text: str) -> Network:
    return ipaddress.ip_network(text, strict=False)


def _remaining(ban: Ban, now: float) -> int | None:
    """Whole seconds left (at least 1), None for a ban until removed."""
    if ban.expires is None:
        return None
    return max(1, math.ceil(ban.expires - now))


class BanBackend(Protocol):
    """Enforces bans on this machine. Methods raise RespondError when the change could not be
    made and return notes for people (postponed reload, partial cleanup) otherwise. `active()`
    reads every active ban after the change: backends that rebuild a whole table call it (under
    their own lock, so that two processes cannot write each other's stale view)."""

    name: str

    def add(self, ban: Ban, active: Active, now: float) -> list[str]: ...
    def remove(self, network: str, active: Active, now: float) -> list[str]: ...
    def expire(self, expired: list[Ban], active: Active, now: float) -> list[str]: ...
    def sync(self, active: Active, now: float) -> list[str]: ...


# --------------------------------------------------------------------------- state

class StateBackend:
    """Recorded only: the policy server reads the shared state and refuses banned clients."""

    name = "state"

    def add(self, ban: Ban, active: Active, now: float) -> list[str]:
        return []

    def remove(self, network: str, active: Active, now: float) -> list[str]:
        return []

    def expire(self, expired: list[Ban], active: Active, now: float) -> list[str]:
        return []

    def sync(self, active: Active, now: float) -> list[str]:
        return []


# ------------------------------------------------------------------------ nftables

class NftablesBackend:
    """Table `inet <table>` managed through `nft -f -` (a generated script on stdin; argv only).

    Addresses and networks live in separate sets: an interval set refuses overlapping
    elements, so only networks (rare, set by people) go into one, and when they overlap the
    widest is loaded (it covers the others; they return at the next `expire()`/`sync()` once
    it is gone). Re-banning an address replaces its timeout (add, delete, add in one
    transaction: `add` alone keeps the old timeout)."""

    name = "nftables"
    SETS = {4: ("banned_v4", "banned_net_v4", "ipv4_addr", "ip"),
            6: ("banned_v6", "banned_net_v6", "ipv6_addr", "ip6")}

    def __init__(self, table: str = "relayguard", ports: Iterable[int] = DEFAULT_PORTS,
                 timeout: float = 30.0) -> None:
        if not TABLE_NAME.match(table):
            raise RespondError(f"[bruteforce] nftables_table: bad table name {table!r}")
        self.table = table
        self.ports = sorted({int(p) for p in ports})
        if not self.ports or not all(0 < p < 65536 for p in self.ports):
            raise RespondError("[bruteforce] nftables_ports: TCP ports between 1 and 65535")
        self.timeout = timeout
        self._ready = False

    # ---- plumbing
    def _nft(self, script: str, what: str) -> str:
        nft = find_program("nft")
        if nft is None:
            raise RespondError("nft not found: install nftables (apt-get install nftables) or "
                               "choose another [bruteforce] ban_backend")
        r = run_argv([nft, "-f", "-"], self.timeout, stdin=script.encode())
        if not r.ok:
            errs = [ln for ln in r.output.splitlines() if "Error" in ln or "rror:" in ln]
            why = errs[0].split("Error:", 1)[-1].strip() if errs else (r.error or "failed")
            if "Operation not permitted" in r.output:
                why = "Operation not permitted (nftables needs root or CAP_NET_ADMIN)"
            raise RespondError(f"nftables: cannot {what}: {why}")
        return r.output

    def _list_table(self) -> dict[str, Any] | None:
        nft = find_program("nft")
        if nft is None:
            return None
        r = run_argv([nft, "-j", "list", "table", "inet", self.table], self.timeout)
        if not r.ok:
            return None
        try:
            return json.loads(r.output)
        except ValueError:
            return None

    def structure_script(self) -> str:
        t = f"inet {self.table}"
        ports = ", ".join(str(p) for p in self.ports)
        lines = [f"add table {t}"]
        for addr, net, typ, _ in self.SETS.values():
            lines.append(f"add set {t} {addr} {{ type {typ}; flags timeout; }}")
            lines.append(f"add set {t} {net} {{ type {typ}; flags interval, timeout; }}")
        for chain in ("input", "forward"):
            # input: clients of this server; forward: LAN hosts sending straight to the internet
            # through this machine (the direct_smtp finding), when it is their router.
            lines.append(f"add chain {t} {chain} {{ type filter hook {chain} priority filter - 10; "
                         f"policy accept; }}")
            lines.append(f"flush chain {t} {chain}")
            for addr, net, _, proto in self.SETS.values():
                for s in (addr, net):
                    lines.append(f"add rule {t} {chain} {proto} saddr @{s} "
                                 f"tcp dport {{ {ports} }} counter drop")
        return "\n".join(lines) + "\n"

    def _structure_ok(self) -> bool:
        data = self._list_table()
        if data is None:
            return False
        items = data.get("nftables", [])
        sets = {i["set"]["name"] for i in items if "set" in i}
        chains = {i["chain"]["name"] for i in items if "chain" in i}
        rules: dict[str, int] = {}
        for i in items:
            if "rule" in i:
                rules[i["rule"]["chain"]] = rules.get(i["rule"]["chain"], 0) + 1
        want_sets = {n for v in self.SETS.values() for n in v[:2]}
        return (want_sets <= sets and {"input", "forward"} <= chains
                and all(rules.get(c) == 4 for c in ("input", "forward")))

    def ensure(self, force: bool = False) -> None:
        """Create the table, sets, chains and rules when missing (idempotent; elements kept)."""
        if self._ready and not force:
            return
        if force or not self._structure_ok():
            self._nft(self.structure_script(), f"create table inet {self.table}")
        self._ready = True

    @staticmethod
    def _elem(network: str, seconds: int | None) -> str:
        return network + (f" timeout {seconds}s" if seconds else "")

    def _set_for(self, network: str) -> str:
        n = _net(network)
        addr, net, _, _ = self.SETS[n.version]
        return net if "/" in network else addr

    def _nets_script(self, active: list[Ban], now: float) -> str:
        """Flush the network sets and load the widest non-overlapping active networks."""
        t = f"inet {self.table}"
        lines = []
        for version, (_, net_set, _, _) in self.SETS.items():
            lines.append(f"flush set {t} {net_set}")
            nets = sorted(((_net(b.network), b) for b in active
                           if "/" in b.network and _net(b.network).version == version),
                          key=lambda nb: (nb[0].prefixlen, int(nb[0].network_address)))
            kept: list[Network] = []
            elems = []
            for n, b in nets:
                if any(n.overlaps(k) for k in kept):  # type: ignore[arg-type]
                    continue
                kept.append(n)
                elems.append(self._elem(b.network, _remaining(b, now)))
            if elems:
                lines.append(f"add element {t} {net_set} {{ {', '.join(elems)} }}")
        return "\n".join(lines) + "\n"

    def _address_script(self, network: str, seconds: int | None, present: bool) -> str:
        t = f"inet {self.table}"
        s = self._set_for(network)
        # add (no-op when present) + delete: works whether or not the element exists.
        lines = [f"add element {t} {s} {{ {network} timeout 1s }}",
                 f"delete element {t} {s} {{ {network} }}"]
        if present:
            lines.append(f"add element {t} {s} {{ {self._elem(network, seconds)} }}")
        return "\n".join(lines) + "\n"

    # ---- backend API
    def add(self, ban: Ban, active: Active, now: float) -> list[str]:
        self.ensure()
        if "/" in ban.network:
            self._nft(self._nets_script(active(), now), f"ban {ban.network}")
        else:
            self._nft(self._address_script(ban.network, _remaining(ban, now), True),
                      f"ban {ban.network}")
        return []

    def remove(self, network: str, active: Active, now: float) -> list[str]:
        self.ensure()
        if "/" in network:
            self._nft(self._nets_script(active(), now), f"unban {network}")
        else:
            self._nft(self._address_script(network, None, False), f"unban {network}")
        return []

    def expire(self, expired: list[Ban], active: Active, now: float) -> list[str]:
        # The kernel has removed these already (element timeouts); deleting again costs nothing
        # and covers a clock step. Networks hidden behind an expired wider one come back here.
        if not expired:
            return []
        self.ensure()
        script = "".join(self._address_script(b.network, None, False)
                         for b in expired if "/" not in b.network)
        if any("/" in b.network for b in expired):
            script += self._nets_script(active(), now)
        self._nft(script, "remove expired bans")
        return []

    def sync(self, active: Active, now: float) -> list[str]:
        self.ensure(force=True)
        t = f"inet {self.table}"
        bans = active()
        lines = []
        for version, (addr_set, _, _, _) in self.SETS.items():
            lines.append(f"flush set {t} {addr_set}")
            elems = [self._elem(b.network, _remaining(b, now)) for b in bans
                     if "/" not in b.network and _net(b.network).version == version]
            if elems:
                lines.append(f"add element {t} {addr_set} {{ {', '.join(elems)} }}")
        self._nft("\n".join(lines) + "\n" + self._nets_script(bans, now), "load the bans")
        return []


# ------------------------------------------------------------------- postfix-access

class PostfixAccessBackend:
    """A `cidr:` table of REJECT entries, regenerated from the active bans on every change.

    main.cf: `smtpd_client_restrictions = check_client_access cidr:/etc/postfix/relayguard_access.cidr`
    (before any permit_*). cidr tables are read into memory, so each change needs a `postfix
    reload`: see Reloader for the rate limit."""

    name = "postfix-access"

    def __init__(self, path: str | Path = DEFAULT_ACCESS_MAP, reloader: Reloader | None = None,
                 text: str = "Access denied") -> None:
        self.path = Path(path)
        if not self.path.is_absolute():
            raise RespondError(f"[bruteforce] access_map: an absolute path is needed, not {path!r}")
        self.text = one_line(text) or "Access denied"
        self.reloader = reloader or Reloader(self.path.parent)

    def render(self, active: list[Ban]) -> bytes:
        lines = ["# Written by relayguard (ban_backend = \"postfix-access\") from its ban list;",
                 "# rewritten on every ban, unban and expiry: do not edit, use `relayguard ban`.",
                 "# main.cf: smtpd_client_restrictions = check_client_access cidr:" + str(self.path)]
        for b in sorted(active, key=lambda b: (_net(b.network).version, _net(b.network))):
            until = "until removed" if b.expires is None else "until " + b.to_dict()["expires"]
            lines.append(f"# {one_line(b.reason) or 'no reason given'} ({until})")
            lines.append(f"{b.network}\tREJECT {self.text}")
        return ("\n".join(lines) + "\n").encode()

    def _apply(self, active: Active, now: float, force: bool = False) -> list[str]:
        notes: list[str] = []
        try:
            with self.reloader.locked() as st:
                data = self.render(active())
                if force or read_bytes(self.path) != data:
                    atomic_write(self.path, data)
                    note = self.reloader.changed(st, str(self.path), now)
                elif st["pending"]:
                    note = self.reloader.maybe_reload(st, now)
                else:
                    note = None
        except OSError as exc:
            raise RespondError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        except PostfixError as exc:
            raise RespondError(f"{exc}; {self.path} not written") from None
        if note:
            notes.append(note)
        return notes

    def add(self, ban: Ban, active: Active, now: float) -> list[str]:
        return self._apply(active, now)

    def remove(self, network: str, active: Active, now: float) -> list[str]:
        return self._apply(active, now)

    def expire(self, expired: list[Ban], active: Active, now: float) -> list[str]:
        # Rebuilt even when nothing was handed over: entries that vanished from a store with
        # its own expiry (Redis), or bans made on another machine, are picked up here too.
        return self._apply(active, now)

    def sync(self, active: Active, now: float) -> list[str]:
        return self._apply(active, now)


# -------------------------------------------------------------------------- command

class CommandBackend:
    """Site programs, e.g. fail2ban: `ban_command = ["fail2ban-client", "set", "postfix",
    "banip", "{ip}"]`, `unban_command = [..., "unbanip", "{ip}"]`. Placeholders: `{ip}` (the
    address or network), `{seconds}` (0 for until removed), `{reason}`. No shell."""

    name = "command"
    PLACEHOLDERS = ("ip", "seconds", "reason")

    def __init__(self, ban_command: list[str], unban_command: list[str] | None = None,
                 timeout: float = 30.0) -> None:
        self.ban_command = check_template(ban_command, self.PLACEHOLDERS, "[bruteforce] ban_command")
        self.unban_command = (check_template(unban_command, self.PLACEHOLDERS,
                                             "[bruteforce] unban_command")
                              if unban_command else None)
        self.timeout = timeout

    def _run(self, template: list[str], ban_network: str, seconds: int | None,
             reason: str) -> str | None:
        argv = expand(template, {"ip": ban_network, "seconds": str(seconds or 0),
                                 "reason": one_line(reason)})
        r = run_argv(argv, self.timeout)
        log.info("ban command %s: %s", argv, r.summary())
        return r.error

    def add(self, ban: Ban, active: Active, now: float) -> list[str]:
        err = self._run(self.ban_command, ban.network, _remaining(ban, now), ban.reason)
        if err:
            raise RespondError(f"ban command failed: {err}")
        return []

    def remove(self, network: str, active: Active, now: float) -> list[str]:
        if self.unban_command is None:
            return ["no [bruteforce] unban_command: the ban stays in the external tool until it "
                    "expires there"]
        err = self._run(self.unban_command, network, None, "")
        if err:
            raise RespondError(f"unban command failed: {err}")
        return []

    def expire(self, expired: list[Ban], active: Active, now: float) -> list[str]:
        if self.unban_command is None:
            return []
        notes = []
        for b in expired:
            err = self._run(self.unban_command, b.network, None, "")
            if err:
                notes.append(f"unban command for expired {b.network} failed: {err}")
        return notes

    def sync(self, active: Active, now: float) -> list[str]:
        notes = []
        for b in active():
            err = self._run(self.ban_command, b.network, _remaining(b, now), b.reason)
            if err:
                notes.append(f"ban command for {b.network} failed: {err}")
        return notes


# ------------------------------------------------------------------------ settings

def _section(cfg: dict[str, Any] | None, name: str) -> dict[str, Any]:
    return dict((cfg or {}).get(name) or {})


def postfix_config_dir(cfg: dict[str, Any] | None, override: str | None = None) -> str | None:
    """The Postfix instance (`postfix -c DIR`): --config-dir, else [respond] postfix_config_dir."""
    value = override or _section(cfg, "respond").get("postfix_config_dir") or None
    return str(value) if value else None


def access_map_path(cfg: dict[str, Any] | None, config_dir: str | None = None) -> str:
    """`[bruteforce] access_map`; the default one in the instance's directory (in_instance)."""
    path = str(_section(cfg, "bruteforce").get("access_map") or DEFAULT_ACCESS_MAP)
    return in_instance(path, DEFAULT_ACCESS_MAP, postfix_config_dir(cfg, config_dir))


def make_backend(cfg: dict[str, Any] | None, config_dir: str | None = None,
                 name: str | None = None) -> BanBackend:
    """The backend named by `[bruteforce] ban_backend` (or `name`)."""
    bf = _section(cfg, "bruteforce")
    name = name or str(bf.get("ban_backend") or "state")
    if name == "state":
        return StateBackend()
    if name == "nftables":
        return NftablesBackend(str(bf.get("nftables_table") or "relayguard"),
                               bf.get("nftables_ports") or DEFAULT_PORTS,
                               duration(bf.get("command_timeout", "30s"),
                                        "[bruteforce] command_timeout"))
    if name == "postfix-access":
        path = Path(access_map_path(cfg, config_dir))
        interval = duration(bf.get("reload_interval", "30s"), "[bruteforce] reload_interval")
        return PostfixAccessBackend(path, Reloader(path.parent, postfix_config_dir(cfg, config_dir),
                                                   interval),
                                    str(bf.get("access_map_text") or "Access denied"))
    if name == "command":
        if not bf.get("ban_command"):
            raise RespondError('[bruteforce] ban_backend = "command" needs ban_command, e.g. '
                               '["fail2ban-client", "set", "postfix", "banip", "{ip}"]')
        return CommandBackend(bf["ban_command"], bf.get("unban_command") or None,
                              duration(bf.get("command_timeout", "30s"),
                                       "[bruteforce] command_timeout"))
    raise RespondError(f"[bruteforce] ban_backend: unknown backend {name!r} "
                       f"(one of: {', '.join(BACKENDS)})")


def parse_allow(values: Iterable[str]) -> list[Network]:
    nets = []
    for v in values:
        try:
            nets.append(_net(str(v).strip()))
        except ValueError:
            raise RespondError(f"[bruteforce] allow: bad network {v!r}") from None
    return nets


def audit_store(shared: SharedState, cfg: dict[str, Any] | None,
                state_path: str | None = None) -> Store:
    """The local audit trail: the shared store itself when it is SQLite, else the local
    database (a fleet shares bans through Redis, but each machine audits what it did)."""
    if isinstance(shared, SqliteShared):
        return shared.store
    local = {k: v for k, v in (cfg or {}).items() if k != "state"}
    local["state"] = {k: v for k, v in _section(cfg, "state").items() if k != "url"}
    return Store(resolve_path(state_path, local))


# --------------------------------------------------------------------------- Banner

class StateHolder:
    """What Banner and Locker share: the shared state plus the local audit trail, opened from
    the configuration and closed once (the store only if it is not the shared one's)."""

    shared: SharedState
    store: Store | None

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None, state_path: str | None = None,
                    config_dir: str | None = None) -> Self:
        """Open the shared state and the audit trail named by the configuration."""
        shared = open_shared(cfg, state_path)
        try:
            return cls(shared, cfg, store=audit_store(shared, cfg, state_path),  # type: ignore[call-arg]
                       config_dir=config_dir)
        except BaseException:
            shared.close()
            raise

    def close(self) -> None:
        store_is_shared = isinstance(self.shared, SqliteShared) and self.store is self.shared.store
        self.shared.close()
        if self.store is not None and not store_is_shared:
            self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Banner(StateHolder):
    """Ban and unban addresses or networks: shared state + the configured backend + audit.

    Used by `relayguard ban`, `watch` (automatic responses) and the dashboard. Notes for people
    from the last call (postponed reload, failed cleanup) are in `self.warnings`.
    """

    def __init__(self, shared: SharedState, cfg: dict[str, Any] | None = None, *,
                 store: Store | None = None, backend: BanBackend | None = None,
                 config_dir: str | None = None) -> None:
        self.shared = shared
        self.cfg = cfg or {}
        bf = _section(cfg, "bruteforce")
        self.backend: BanBackend = backend or make_backend(cfg, config_dir)
        self.allow = parse_allow(bf.get("allow", DEFAULT_ALLOW))
        self.default_ttl = duration(bf.get("ban_for", "20m"), "[bruteforce] ban_for") or None
        self.store = store if store is not None else (
            shared.store if isinstance(shared, SqliteShared) else None)
        self.warnings: list[str] = []

    # ---- checks
    def allowed_by(self, network: str) -> str | None:
        """The allowlist entry that `network` touches, or None."""
        n = _net(network)
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
        n = _net(network)
        if n.prefixlen < MIN_PREFIX[n.version]:
            raise Refused(f"refusing to ban {network}: wider than /{MIN_PREFIX[n.version]}")
        if ttl_seconds is not None and not ttl_seconds > 0:
            raise RespondError(f"ban duration must be positive, not {ttl_seconds!r}")
        now = time.time()
        ban = Ban(network, one_line(reason, 500), now,
                  None if ttl_seconds is None else now + float(ttl_seconds),
                  self.backend.name, source)
        previous = self._exact(network, now)
        self.shared.add_ban(ban)
        try:
            self.warnings += self.backend.add(ban, lambda: self.shared.bans(now), now)
        except RespondError as exc:
            # Not enforced: do not leave a record that claims otherwise.
            self.shared.remove_ban(network)
            if previous is not None:
                self.shared.add_ban(previous)
            self._audit("ban", network, ban, source, reason, "failed", str(exc))
            raise
        self._audit("ban", network, ban, source, reason, "ok",
                    "; ".join(self.warnings) or None)
        log.info("banned %s (%s) %s by %s", network, ban.backend,
                 "until removed" if ban.expires is None else f"for {ttl_seconds:g}s", source)
        return ban

    def unban(self, ip: str, source: str = "cli") -> Ban | None:
        """Lift the ban of exactly this address or network (the backend is cleaned even when
        the state had no such ban). Returns the ban removed, or None."""
        self.warnings = []
        network = self.parse(ip)
        now = time.time()
        removed = self.shared.remove_ban(network)
        try:
            self.warnings += self.backend.remove(network, lambda: self.shared.bans(now), now)
        except RespondError as exc:
            if removed is not None:
                self._audit("unban", network, removed, source, removed.reason, "failed", str(exc))
                raise RespondError(f"{network} is off the ban list, but {exc}") from None
            raise
        if removed is None:
            self.warnings.append(f"{network} was not banned")
            return None
        self._audit("unban", network, removed, source, removed.reason, "ok",
                    "; ".join(self.warnings) or None)
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
            self._audit("unban", b.network, b, "expiry", b.reason, status,
                        detail or "expired")
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

    def _audit(self, action: str, network: str, ban: Ban | None, source: str, reason: str,
               status: str, detail: str | None) -> None:
        if self.store is None:
            return
        selector: dict[str, Any] = {"network": network, "backend": self.backend.name,
                                    "source": source, "reason": one_line(reason, 500)}
        if ban is not None:
            selector["expires"] = ban.to_dict()["expires"]
        try:
            self.store.record(action, selector=selector, status=status,
                              detail=one_line(detail, 500) if detail else None,
                              command=_argv_if_cli(source))
        except StateError as exc:
            # The ban happened; losing its record must be loud but must not undo it.
            self.warnings.append(str(exc))


def _argv_if_cli(source: str) -> list[str] | None:
    """The command line, for entries made by a person's command."""
    return list(sys.argv) if source == "cli" else None
