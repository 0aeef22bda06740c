"""Is what `ban` and `lock` record really enforced on this machine?

A ban or a lock is only a row in the state until something consults it: the policy server
(`check_policy_service` in smtpd_recipient_restrictions, and `relayguard policy serve`
answering), the lock map (`check_sasl_access` first in smtpd_recipient_restrictions), the
access map of the postfix-access backend (`check_client_access` in smtpd_client_restrictions)
or the nftables table. This module reads the instance's main.cf through the real `postconf
-c DIR`, asks the policy server a real question, and says what is missing; it also plans the
main.cf edits that `relayguard setup postfix` makes (`plan()`), keeping every existing
restriction in place.

Used by `relayguard status`, `setup postfix`, `ban add`, `lock` and `watch`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shlex
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import duration, parse_listen
from ..postfix.instance import Postfix
from ..postfix.postconf import parse_assignments
from ..postfix.programs import PostfixError
from ..postfix.restrictions import name_of, split
from .backends.postfix_access import access_map_path
from .common import SYSTEM_POSTFIX_DIR, config_section, find_program, postfix_config_dir, run_argv
from .locks import MAP_TYPES, map_spec

RECIPIENT = "smtpd_recipient_restrictions"
CLIENT = "smtpd_client_restrictions"
RELAY = "smtpd_relay_restrictions"
RELAY_CHECKS = frozenset({"reject_unauth_destination", "defer_unauth_destination"})
SETUP = "relayguard setup postfix"
FIX = f"run '{SETUP}'"
PROBE_TIMEOUT = 2.0


def instance_dir(cfg: dict[str, Any] | None, override: str | None = None) -> str:
    """The instance every Postfix tool is pointed at (`-c DIR`): --config-dir, else [respond]
    postfix_config_dir, else the system's /etc/postfix."""
    return postfix_config_dir(cfg, override) or SYSTEM_POSTFIX_DIR


# ------------------------------------------------------------------------ what is wanted

@dataclass
class Wanted:
    """What this configuration needs from Postfix."""

    config_dir: str
    backend: str
    listen: str | None          # [policy] listen, first entry, as configured
    listen_kind: str = "tcp"
    listen_where: str = ""      # host or socket path
    listen_port: int = 0
    lock_map: str | None = None  # TYPE:PATH of the check_sasl_access table
    access_map: str | None = None  # path of the cidr: table (postfix-access backend)
    nft_table: str | None = None
    enforce_bans: bool = True
    enforce_locks: bool = True

    @property
    def lock_index(self) -> Path | None:
        """The file smtpd opens for the lock map (the .db beside a hash: source)."""
        if not self.lock_map:
            return None
        kind, _, path = self.lock_map.partition(":")
        return Path(path + (MAP_TYPES.get(kind) or ""))


def wanted(cfg: dict[str, Any] | None, config_dir: str | None = None) -> Wanted:
    d = instance_dir(cfg, config_dir)
    bf = config_section(cfg, "bruteforce")
    pol = config_section(cfg, "policy")
    backend = str(bf.get("ban_backend") or "state")
    listen = pol.get("listen", ["127.0.0.1:10031"])
    first = listen if isinstance(listen, str) else (listen[0] if listen else None)
    w = Wanted(d, backend, str(first) if first else None,
               enforce_bans=bool(pol.get("enforce_bans", True)),
               enforce_locks=bool(pol.get("enforce_locks", True)))
    if w.listen:
        try:
            w.listen_kind, w.listen_where, w.listen_port = parse_listen(w.listen)
        except ValueError:
            w.listen = None
    w.lock_map = map_spec(cfg, d) or None
    if backend == "postfix-access":
        w.access_map = access_map_path(cfg, d)
    if backend == "nftables":
        w.nft_table = str(bf.get("nftables_table") or "relayguard")
    return w


# ------------------------------------------------------------------- main.cf as it is

@dataclass
class Current:
    """The restriction lists as main.cf writes them (raw, for editing) and expanded."""

    raw: dict[str, str]
    expanded: dict[str, str]
    queue_directory: str
    # master.cf `-o` overrides of the restriction lists: "submission/inet" -> {param: value}
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    overrides_x: dict[str, dict[str, str]] = field(default_factory=dict)

    def items(self, name: str) -> list[str]:
        return split(self.expanded.get(name, ""))

    def for_service(self, service: str) -> Current:
        """The lists as one master.cf service sees them (its -o overrides win)."""
        return Current({**self.raw, **self.overrides.get(service, {})},
                       {**self.expanded, **self.overrides_x.get(service, {})},
                       self.queue_directory)


def _overrides(text: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for key, value in parse_assignments(text).items():
        service, _, param = key.rpartition("/")
        if param in (RECIPIENT, CLIENT, RELAY) and service:
            out.setdefault(service, {})[param] = value
    return out


def read_current(pf: Postfix) -> Current:
    names = [RECIPIENT, CLIENT, RELAY]
    raw = pf.values(names, expand=False)
    expanded = pf.values([*names, "queue_directory"])
    overrides_x = _overrides(pf.postconf("-xP"))
    # The raw overrides (for editing) only when a service has lists of its own: most have none.
    overrides = _overrides(pf.postconf("-P")) if overrides_x else {}
    return Current(raw, expanded, expanded.get("queue_directory", ""), overrides, overrides_x)


def open_postfix(config_dir: str) -> Postfix:
    """The instance's tools; PostfixError (a message for people) when it cannot be read."""
    if not find_program("postconf"):
        raise PostfixError("postconf not found: is Postfix installed? (apt-get install postfix)")
    if not (Path(config_dir) / "main.cf").is_file():
        raise PostfixError(f"no main.cf in {config_dir} (is Postfix installed and configured? "
                           "another instance: --config-dir DIR or [respond] postfix_config_dir)")
    return Postfix(config_dir)


# ------------------------------------------------------------------------- the items

def policy_item(w: Wanted, queue_directory: str) -> str:
    """`check_policy_service { inet:HOST:PORT, default_action=DUNNO }`: fail-open in Postfix
    itself, so a stopped policy server never stops the mail."""
    return f"check_policy_service {{ {policy_endpoint(w, queue_directory)}, default_action=DUNNO }}"


def policy_endpoint(w: Wanted, queue_directory: str) -> str:
    if w.listen_kind == "unix":
        # smtpd (often chrooted into the queue directory) connects relative to it.
        p, q = Path(w.listen_where), Path(queue_directory) if queue_directory else None
        if q is not None and p.is_absolute() and p.is_relative_to(q):
            return f"unix:{p.relative_to(q)}"
        return f"unix:{p}"
    host = w.listen_where
    if ":" in host:
        host = f"[{host}]"
    return f"inet:{host}:{w.listen_port}"


def lock_item(w: Wanted) -> str:
    return f"check_sasl_access {w.lock_map}"


def access_item(w: Wanted) -> str:
    return f"check_client_access cidr:{w.access_map}"


def _arg(item: str) -> str:
    return item.split(None, 1)[1].strip() if len(item.split(None, 1)) == 2 else ""


def _endpoint_of(item: str) -> str:
    """`inet:127.0.0.1:10031` from either form of a check_policy_service item."""
    arg = _arg(item).strip("{} ")
    for part in arg.replace(",", " ").split():
        if "=" not in part:
            return part
    return ""


def _same_endpoint(a: str, b: str, queue_directory: str) -> bool:
    def norm(e: str) -> tuple[str, str, int] | None:
        try:
            kind, where, port = parse_listen(e)
        except ValueError:
            return None
        if kind == "unix":
            p = Path(where)
            if not p.is_absolute() and queue_directory:
                p = Path(queue_directory) / p
            return kind, os.path.normpath(p), 0
        where = "127.0.0.1" if where == "localhost" else where
        with contextlib.suppress(ValueError):  # a host name is compared as written
            where = str(ipaddress.ip_address(where))
        return kind, where, port
    na, nb = norm(a), norm(b)
    return na is not None and na == nb


def _same_table(arg: str, spec: str) -> bool:
    kind, _, path = arg.partition(":")
    k2, _, p2 = spec.partition(":")
    return kind == k2 and os.path.normpath(path) == os.path.normpath(p2)


def find_policy(items: list[str], w: Wanted, queue_directory: str) -> int | None:
    want = policy_endpoint(w, queue_directory)
    for i, it in enumerate(items):
        if name_of(it) == "check_policy_service" and _same_endpoint(_endpoint_of(it), want,
                                                                    queue_directory):
            return i
    return None


def _find(items: list[str], name: str, spec: str) -> int | None:
    for i, it in enumerate(items):
        if name_of(it) == name and _same_table(_arg(it), spec):
            return i
    return None


def _first_permit(items: list[str]) -> int | None:
    return next((i for i, it in enumerate(items) if name_of(it).startswith("permit")), None)


def _relay_check(items: list[str]) -> int | None:
    return next((i for i, it in enumerate(items) if name_of(it) in RELAY_CHECKS), None)


# ------------------------------------------------------------------------------ checks

@dataclass
class Check:
    """One thing that enforces (or should enforce) bans or locks."""

    id: str
    label: str
    ok: bool | None  # None: not needed here, or cannot be verified
    detail: str
    fix: str | None = None
    needed: bool = True  # a failure makes `status` exit 1

    @property
    def problem(self) -> bool:
        return self.needed and self.ok is False

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "ok": self.ok, "needed": self.needed,
                "detail": self.detail, "fix": self.fix}


@dataclass
class Report:
    config_dir: str
    backend: str
    checks: list[Check] = field(default_factory=list)
    error: str | None = None  # Postfix cannot be read: nothing could be verified
    bans: bool | None = None  # enforced?
    locks: bool | None = None
    notes: list[str] = field(default_factory=list)

    def get(self, cid: str) -> Check | None:
        return next((c for c in self.checks if c.id == cid), None)

    def ok(self, cid: str) -> bool:
        c = self.get(cid)
        return bool(c is not None and c.ok)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.problem]

    def to_dict(self) -> dict[str, Any]:
        return {"config_dir": self.config_dir, "ban_backend": self.backend,
                "error": self.error, "bans_enforced": self.bans, "locks_enforced": self.locks,
                "checks": [c.to_dict() for c in self.checks], "notes": self.notes}


def ask_policy(endpoint: str, queue_directory: str = "", timeout: float = PROBE_TIMEOUT,
               client: str = "192.0.2.1", user: str = "") -> tuple[str | None, str]:
    """One real policy request (protocol_state CONNECT: counted by no rate limit) to
    `inet:HOST:PORT` or `unix:PATH`. Returns (the action line, "") or (None, why not)."""
    try:
        kind, where, port = parse_listen(endpoint)
    except ValueError as exc:
        return None, str(exc)
    attrs = {"request": "smtpd_access_policy", "protocol_state": "CONNECT",
             "protocol_name": "ESMTP", "client_address": client, "client_name": "unknown",
             "sasl_username": user, "instance": f"relayguard-status.{os.getpid()}"}
    # Values come from the state (logins from logs): one line each, or not sent at all.
    if any("\n" in v or "\r" in v for v in attrs.values()):
        return None, "refusing to send a value with a line break"
    request = ("".join(f"{k}={v}\n" for k, v in attrs.items()) + "\n").encode()
    try:
        if kind == "unix":
            path = Path(where)
            if not path.is_absolute() and queue_directory:
                path = Path(queue_directory) / path
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(str(path))
        else:
            s = socket.create_connection((where, port), timeout=timeout)
            s.settimeout(timeout)
        with s:
            s.sendall(request)
            data = b""
            deadline = time.monotonic() + timeout
            while b"\n\n" not in data and time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        return None, f"{endpoint}: {exc.strerror or exc}"
    line = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    if not line.startswith("action="):
        return None, f"{endpoint}: no policy answer (got {line[:60]!r})"
    return line, ""


def _nft_loaded(table: str) -> tuple[bool | None, str]:
    nft = find_program("nft")
    if nft is None:
        return None, "nft not found: cannot verify (apt-get install nftables)"
    r = run_argv([nft, "list", "table", "inet", table], 10)
    if r.ok:
        return True, f"table inet {table} is loaded"
    if "Operation not permitted" in r.output:
        return None, "nft needs root to list tables: cannot verify"
    return False, f"table inet {table} is not loaded ({r.error})"


def check(cfg: dict[str, Any] | None, config_dir: str | None = None, *,
          probe: bool = True) -> Report:
    """What enforces bans and locks on this instance, and whether it really does."""
    w = wanted(cfg, config_dir)
    rep = Report(w.config_dir, w.backend)
    cur: Current | None = None
    try:
        cur = read_current(open_postfix(w.config_dir))
    except PostfixError as exc:
        rep.error = f"cannot read the Postfix configuration: {exc}"
    qdir = cur.queue_directory if cur else ""
    need_policy = w.backend in ("state", "command") or not w.lock_map

    # -- the policy server: in main.cf, in the right place, and answering
    policy_in_place = False
    if w.listen is None:
        rep.checks.append(Check("policy_service", "policy service in main.cf", False,
                                "[policy] listen is empty or not an address", needed=need_policy,
                                fix="set [policy] listen, e.g. \"127.0.0.1:10031\""))
    elif cur is not None:
        items = cur.items(RECIPIENT)
        i = find_policy(items, w, qdir)
        relay_here = _relay_check(items)
        relay_before = relay_here is not None or _relay_check(cur.items(RELAY)) is not None
        endpoint = policy_endpoint(w, qdir)
        if i is None:
            rep.checks.append(Check("policy_service", "policy service in main.cf", False,
                                    f"{RECIPIENT} has no check_policy_service {endpoint}: Postfix "
                                    "never asks the policy server", FIX, need_policy))
        elif relay_here is not None and i < relay_here:
            rep.checks.append(Check("policy_service", "policy service in main.cf", False,
                                    f"check_policy_service {endpoint} comes before "
                                    f"{name_of(items[relay_here])} in {RECIPIENT}", FIX,
                                    need_policy))
        else:
            policy_in_place = True
            where = (f"after {name_of(items[relay_here])}" if relay_here is not None else
                     f"relay control in {RELAY} first" if relay_before else "no relay check!")
            rep.checks.append(Check("policy_service", "policy service in main.cf", True,
                                    f"check_policy_service {endpoint} in {RECIPIENT} ({where})",
                                    needed=need_policy))
            permit = _first_permit(items)
            if permit is not None and permit < i:
                rep.notes.append(f"{name_of(items[permit])} comes before the policy service in "
                                 f"{RECIPIENT}: clients it permits are not asked (their bans "
                                 "are not enforced by it)")
    if w.listen is not None and probe:
        endpoint = policy_endpoint(w, qdir)
        action, why = ask_policy(endpoint, qdir)
        if action:
            rep.checks.append(Check("policy_server", "policy server answers", True,
                                    f"{endpoint} answered {action}",
                                    needed=need_policy or policy_in_place))
        else:
            rep.checks.append(Check("policy_server", "policy server answers", False,
                                    f"no answer from {why}", "start it: relayguard policy serve "
                                    "(a systemd service)", need_policy or policy_in_place))
    policy_ok = (policy_in_place and (not probe or rep.ok("policy_server")))
    for what, on, alone in (("bans", w.enforce_bans, w.backend in ("state", "command")),
                            ("locks", w.enforce_locks, not w.lock_map)):
        if policy_in_place and not on and alone:  # the server is asked, but told to ignore them
            rep.checks.append(Check(f"enforce_{what}", f"policy server enforces {what}", False,
                                    f"[policy] enforce_{what} = false", f"set [policy] "
                                    f"enforce_{what} = true and restart the policy server"))

    # -- the lock map: first in the recipient restrictions, and built
    lock_ok = False
    if w.lock_map and cur is not None:
        items = cur.items(RECIPIENT)
        i = _find(items, "check_sasl_access", w.lock_map)
        permit = _first_permit(items)
        index = w.lock_index
        assert index is not None
        if i is None:
            rep.checks.append(Check("lock_map", "lock map in main.cf", False,
                                    f"{RECIPIENT} has no check_sasl_access {w.lock_map}", FIX))
        elif permit is not None and permit < i:
            rep.checks.append(Check("lock_map", "lock map in main.cf", False,
                                    f"check_sasl_access {w.lock_map} comes after "
                                    f"{name_of(items[permit])}: permitted logins skip it", FIX))
        elif not index.exists():
            rep.checks.append(Check("lock_map", "lock map in main.cf", False,
                                    f"{index} does not exist: every lookup fails", FIX))
        else:
            lock_ok = True
            rep.checks.append(Check("lock_map", "lock map in main.cf", True,
                                    f"check_sasl_access {w.lock_map} first in {RECIPIENT} "
                                    "(before any permit_*)"))

    # -- the ban backend
    backend_ok: bool | None = False
    if w.backend == "postfix-access" and w.access_map and cur is not None:
        items = cur.items(CLIENT)
        i = _find(items, "check_client_access", f"cidr:{w.access_map}")
        permit = _first_permit(items)
        if i is None:
            rep.checks.append(Check("access_map", "ban map in main.cf", False,
                                    f"{CLIENT} has no check_client_access cidr:{w.access_map}",
                                    FIX))
        elif permit is not None and permit < i:
            rep.checks.append(Check("access_map", "ban map in main.cf", False,
                                    f"check_client_access cidr:{w.access_map} comes after "
                                    f"{name_of(items[permit])}", FIX))
        elif not Path(w.access_map).exists():
            rep.checks.append(Check("access_map", "ban map in main.cf", False,
                                    f"{w.access_map} does not exist", FIX))
        else:
            backend_ok = True
            rep.checks.append(Check("access_map", "ban map in main.cf", True,
                                    f"check_client_access cidr:{w.access_map} in {CLIENT}"))
    elif w.backend == "nftables" and w.nft_table:
        backend_ok, detail = _nft_loaded(w.nft_table)
        rep.checks.append(Check("nftables", "nftables table", backend_ok, detail,
                                "relayguard ban sync (loads the table and the bans)"))
    elif w.backend == "command":
        backend_ok = None
        rep.checks.append(Check("command", "ban command", None,
                                "bans go to an external tool ([bruteforce] ban_command): "
                                "relayguard cannot verify it", needed=False))

    # -- master.cf services with lists of their own (submission, smtps) that lack ours
    if cur is not None:
        by_service: dict[str, list[str]] = {}
        for e in plan(w, cur).edits:
            if e.origin:
                by_service.setdefault(e.origin, []).extend(e.added + e.moved)
        for service, missing in by_service.items():
            rep.checks.append(Check(f"service:{service}", f"{service} in master.cf", False,
                                    "has restriction lists of its own (-o) without "
                                    f"{'; '.join(dict.fromkeys(missing))}: its clients skip "
                                    "them", FIX))

    if rep.error is not None:  # only the nftables table can be seen without Postfix
        rep.bans = True if backend_ok else None
        rep.locks = None
        return rep
    bans_by_policy = policy_ok and w.enforce_bans
    rep.bans = True if (bans_by_policy or backend_ok) else (None if backend_ok is None else False)
    rep.locks = bool(lock_ok or (policy_ok and w.enforce_locks))
    return rep


def warning_for(action: str, rep: Report) -> str | None:
    """The one line `ban add`, `lock` and `watch` print on stderr when what they record is
    not (or cannot be seen to be) enforced; None when it is."""
    state = rep.bans if action == "bans" else rep.locks
    if rep.error is not None:  # nftables bans can be seen without Postfix
        return None if state else f"cannot verify that {action} are enforced: {rep.error}"
    services = [c.id.removeprefix("service:") for c in rep.problems if c.id.startswith("service:")]
    if state and services and not (action == "bans" and rep.backend == "nftables"):
        return (f"NOT ENFORCED on {', '.join(services)}: master.cf gives it restrictions of "
                f"its own without relayguard's — {FIX}")
    if state:
        return None
    if state is None:
        return f"cannot verify that {action} are enforced (ban_backend = \"{rep.backend}\")"
    off = rep.get(f"enforce_{action}")
    if off is not None:
        return f"NOT ENFORCED: {off.detail} — {off.fix}"
    server = rep.get("policy_server")
    if rep.ok("policy_service") and server is not None and not server.ok:
        why = f"the policy server does not answer ({server.detail})"
        return f"NOT ENFORCED: Postfix asks the policy server, but {why} — start " \
               "'relayguard policy serve'"
    if action == "bans":
        extra = {"postfix-access": " or the ban map",
                 "nftables": ", and the nftables table is not loaded"}.get(rep.backend, "")
        return f"NOT ENFORCED: Postfix does not consult the policy server{extra} — {FIX}"
    return f"NOT ENFORCED: Postfix does not consult the policy server or the lock map — {FIX}"


def verify_policy_sees(rep: Report, cfg: dict[str, Any] | None, bans: list[Any],
                       locks: list[Any], now: float) -> None:
    """Ask the running policy server about one ban and one lock of the state: it must refuse
    them, or it reads another state database (started with another --state or config). Only
    entries older than its refresh interval are asked about (it rereads the state that often)."""
    server = rep.get("policy_server")
    if server is None or not server.ok:
        return
    w = wanted(cfg, rep.config_dir)
    try:
        refresh = duration(config_section(cfg, "policy").get("refresh_interval", "2s"))
    except ValueError:
        refresh = 2.0
    old_enough = now - refresh - 1.0
    endpoint = policy_endpoint(w, "")
    asks = []
    if w.enforce_bans:
        ban = next((b for b in bans if b.since < old_enough), None)
        if ban is not None:
            net = ipaddress.ip_network(ban.network, strict=False)
            asks.append(("ban", ban.network, {"client": str(net.network_address)}))
    if w.enforce_locks:
        lock = next((lk for lk in locks if lk.since < old_enough), None)
        if lock is not None:
            asks.append(("lock", lock.user, {"user": lock.user}))
    for kind, subject, attrs in asks:
        action, why = ask_policy(endpoint, **attrs)
        ok = bool(action and action.removeprefix("action=").upper().startswith("REJECT"))
        detail = (f"refuses the {kind} of {subject}" if ok else
                  f"does not refuse the {kind} of {subject} ({action or why}): it reads another "
                  "state database than this command")
        rep.checks.append(Check(f"policy_sees_{kind}s", f"policy server sees the {kind}s", ok,
                                detail, None if ok else "start the policy server with the same "
                                "--config/--state (or [state] url) as relayguard ban/lock"))
        if not ok:
            if kind == "ban" and w.backend == "state":
                rep.bans = False
            if kind == "lock" and not rep.ok("lock_map"):
                rep.locks = False


def notice(cfg: dict[str, Any] | None, config_dir: str | None, action: str) -> str | None:
    """The stderr line for `ban add` ("bans"), `lock` ("locks") and `watch`, or None."""
    line = warning_for(action, check(cfg, config_dir))
    if line is None or line.startswith("NOT ENFORCED"):
        return line
    return f"relayguard: warning: {line}"


# ------------------------------------------------------------------------------ planning

@dataclass
class Edit:
    param: str
    before: str
    after: str
    added: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    service: str | None = None  # a master.cf override (postconf -P) instead of main.cf
    origin: str | None = None   # the master.cf service this edit is for

    def args(self) -> list[str]:
        """postconf's arguments after `-c DIR`."""
        if self.service:
            return ["-P", "-e", f"{self.service}/{self.param}={self.after}"]
        return ["-e", f"{self.param} = {self.after}"]

    def argv(self, config_dir: str) -> list[str]:
        return ["postconf", "-c", config_dir, *self.args()]

    def command_line(self, config_dir: str) -> str:
        return shlex.join(self.argv(config_dir))

    def to_dict(self) -> dict[str, Any]:
        return {"param": self.param, "service": self.service, "origin": self.origin,
                "before": self.before, "after": self.after, "added": self.added,
                "moved": self.moved}


@dataclass
class Plan:
    config_dir: str
    edits: list[Edit] = field(default_factory=list)
    create: list[str] = field(default_factory=list)  # maps that must exist first
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.edits and not self.create


def _base(cur: Current, name: str) -> list[str]:
    """The list to edit: main.cf's own text, or its expansion when it refers to $names."""
    raw = cur.raw.get(name, "")
    return split(cur.expanded.get(name, "") if "$" in raw else raw)


def _join(items: list[str]) -> str:
    return ", ".join(items)


def _edit_lists(w: Wanted, cur: Current, p: Plan, only: set[str] | None = None) -> None:
    """Append to `p` the edits of the recipient (and client) list that `cur` needs."""
    qdir = cur.queue_directory
    items = _base(cur, RECIPIENT)
    before = list(items)
    added: list[str] = []
    moved: list[str] = []
    if w.lock_map:
        want = lock_item(w)
        i = _find(items, "check_sasl_access", w.lock_map)
        permit = _first_permit(items)
        if i is None:
            items.insert(0, want)
            added.append(want)
        elif permit is not None and permit < i:
            items.insert(0, items.pop(i))
            moved.append(want)
        idx = w.lock_index
        if idx is not None and not idx.exists():
            p.create.append(str(idx))
    if w.listen is not None:
        want = policy_item(w, qdir)
        i = find_policy(items, w, qdir)
        relay = _relay_check(items)
        existing = None
        if i is not None and relay is not None and i < relay:  # asked before relay control
            existing = items.pop(i)
            moved.append(existing)
            relay, i = _relay_check(items), None
        if i is None:
            if relay is not None:
                pos = relay + 1
            else:  # relay control is in smtpd_relay_restrictions, which Postfix checks first
                lk = _find(items, "check_sasl_access", w.lock_map) if w.lock_map else None
                pos = 0 if lk is None else lk + 1
                if _relay_check(cur.items(RELAY)) is None:
                    p.notes.append(f"neither {RELAY} nor {RECIPIENT} has "
                                   "reject_unauth_destination: check your relay control")
            items.insert(pos, existing or want)
            if existing is None:
                added.append(want)
    if items != before and (only is None or RECIPIENT in only):
        p.edits.append(Edit(RECIPIENT, cur.raw.get(RECIPIENT, ""), _join(items), added, moved))
    if w.access_map and (only is None or CLIENT in only):
        items = _base(cur, CLIENT)
        before = list(items)
        want = access_item(w)
        i = _find(items, "check_client_access", f"cidr:{w.access_map}")
        permit = _first_permit(items)
        if i is None:
            items.insert(0, want)
        elif permit is not None and permit < i:
            items.insert(0, items.pop(i))
        if items != before:
            p.edits.append(Edit(CLIENT, cur.raw.get(CLIENT, ""), _join(items),
                                [want] if i is None else [], [] if i is None else [want]))
        if not Path(w.access_map).exists():
            p.create.append(w.access_map)


def plan(w: Wanted, cur: Current) -> Plan:
    """The main.cf (and master.cf) edits that make bans and locks enforced, existing
    restrictions kept."""
    p = Plan(w.config_dir)
    _edit_lists(w, cur, p)
    seen = {e.param for e in p.edits}
    for service, params in sorted(cur.overrides.items()):
        sub = Plan(w.config_dir)
        # The service's own lists, as if main.cf had no edit pending: what it needs itself.
        _edit_lists(w, cur.for_service(service), sub, set(params) & {RECIPIENT, CLIENT})
        for e in sub.edits:
            raw = params[e.param].strip()
            ref = re.fullmatch(r"\$\{?(\w+)\}?", raw)
            if ref:  # -o smtpd_recipient_restrictions=$mua_recipient_restrictions: edit that
                if ref.group(1) not in seen:
                    seen.add(ref.group(1))
                    p.edits.append(Edit(ref.group(1), cur.overrides_x[service].get(e.param, ""),
                                        e.after, e.added, e.moved, origin=service))
                continue
            # postconf -P -e takes no white space: the list goes to main.cf under a name of
            # its own, which the override refers to (as Debian's $mua_* parameters do).
            name = f"relayguard_{re.sub(r'[^0-9A-Za-z]+', '_', service)}_" \
                   f"{e.param.removeprefix('smtpd_')}"
            p.edits.append(Edit(name, "", e.after, e.added, e.moved, origin=service))
            p.edits.append(Edit(e.param, raw, f"${name}", service=service, origin=service))
    return p
