"""Policy decisions: bans, account locks, allowlists and rate limits, for one request at a time.

`PolicySettings.from_config(cfg)` reads `[policy]` (and its `[[policy.limits]]`), raising
`PolicyConfigError` with a message for the user. `Policy.plan(request)` decides what it can at
once (a banned client, a locked account, nothing to count) and otherwise lists the counter
checks; the server runs them against the counter store (in memory: immediately; Redis: one
round trip) and `Policy.conclude(plan, outcome)` turns the result into the answer.

Where things are counted (Postfix sends one request per stage that has check_policy_service):
- RCPT: every `max_recipients` limit counts the recipient (need 1, add 1); every
  `max_messages` limit only looks (is there room for one more message?) so a client over its
  message limit is refused at the first RCPT, before it sends any data.
- DATA: the same look at the message limits (no recipient is counted again).
- END-OF-MESSAGE: every `max_messages` limit counts the message. Recipients that were not
  counted at RCPT (the policy service only in smtpd_end_of_data_restrictions) are counted here
  from `recipient_count`, so a recipient is counted once wherever the service is configured.
Other stages (CONNECT, HELO, MAIL, VRFY, ETRN) only see bans and locks.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import LIMIT_ACTIONS, LIMIT_KEYS, ConfigError, check_sections, duration
from ..state.counters import Check, Outcome, bucket_count, bucket_width, counter_name
from ..state.shared import Ban, Lock, SharedState
from .protocol import DEFAULT_MAX_ATTRIBUTES, DEFAULT_MAX_REQUEST, answer, clean_text, decode

log = logging.getLogger("relayguard.policy")

KEYS = LIMIT_KEYS
#: access(5) actions a limit may take. DUNNO is "shadow mode": the hit is logged, nothing else.
ACTIONS = LIMIT_ACTIONS
#: Actions that refuse the request (and so stop the request from being counted).
BLOCKING = frozenset({"DEFER_IF_PERMIT", "DEFER", "REJECT"})
#: When several limits are exceeded at once, the strongest answer wins.
_STRENGTH = {"DUNNO": 0, "HOLD": 1, "DEFER_IF_PERMIT": 2, "DEFER": 3, "REJECT": 4}

DEFAULT_MESSAGE = "Rate limit exceeded, try again later"
DEFAULT_BAN_MESSAGE = "Access denied: this client address is blocked; contact the postmaster"
DEFAULT_LOCK_MESSAGE = "This account is locked by the administrator; contact the postmaster"
DEFAULT_FAIL_MESSAGE = "Policy service temporarily unavailable, try again later"


DUNNO = answer("DUNNO")


#: An invalid `[policy]`: the one configuration error class (the message names the setting).
PolicyConfigError = ConfigError


def parse_seconds(value: Any, where: str) -> float:
    """`90`, `"90s"`, `"10m"`, `"1h"`, `"1d"`, `"250ms"` -> seconds."""
    try:
        seconds = duration(value)
    except ValueError as exc:
        raise PolicyConfigError(f"{where}: {exc}") from None
    if seconds <= 0:
        raise PolicyConfigError(f"{where}: must be more than zero")
    return seconds


def format_window(seconds: int) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Limit:
    """One `[[policy.limits]]` table."""

    key: str
    window: int                      # seconds
    action: str
    message: str
    max_messages: int | None = None
    max_recipients: int | None = None
    name: str = ""

    @property
    def blocking(self) -> bool:
        return self.action in BLOCKING

    def describe(self) -> str:
        parts = []
        if self.max_messages is not None:
            parts.append(f"{self.max_messages} messages")
        if self.max_recipients is not None:
            parts.append(f"{self.max_recipients} recipients")
        return f"{self.key}: {' and '.join(parts)} per {format_window(self.window)} -> {self.action}"

    def rules(self) -> list[tuple[str, int]]:
        """(metric, maximum) pairs: a table may limit messages and recipients at once."""
        out = []
        if self.max_messages is not None:
            out.append(("messages", self.max_messages))
        if self.max_recipients is not None:
            out.append(("recipients", self.max_recipients))
        return out

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Limit:
        """A table the validator has checked (config.SPECIAL["policy.limits"])."""
        return cls(key=table["key"], window=int(duration(table["window"])),
                   action=str(table.get("action", "DEFER_IF_PERMIT")).upper(),
                   message=clean_text(table.get("message", DEFAULT_MESSAGE)),
                   max_messages=table.get("max_messages"),
                   max_recipients=table.get("max_recipients"), name=table.get("name", ""))


@dataclass
class PolicySettings:
    """Everything `[policy]` says, validated."""

    listen: list[str] = field(default_factory=lambda: ["127.0.0.1:10031"])
    fail_closed: bool = False
    limits: list[Limit] = field(default_factory=list)
    allow_users: frozenset[str] = frozenset()
    allow_clients: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    enforce_bans: bool = True
    enforce_locks: bool = True
    ban_message: str = DEFAULT_BAN_MESSAGE
    lock_message: str = DEFAULT_LOCK_MESSAGE
    fail_message: str = DEFAULT_FAIL_MESSAGE
    idle_timeout: float = 600.0
    max_request_size: int = DEFAULT_MAX_REQUEST
    max_attributes: int = DEFAULT_MAX_ATTRIBUTES
    max_connections: int = 4096
    state_timeout: float = 0.25
    flush_interval: float = 5.0
    refresh_interval: float = 2.0
    unix_mode: int = 0o666
    near_ratio: float = 0.8

    @property
    def max_window(self) -> int:
        return max((lim.window for lim in self.limits), default=86400)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> PolicySettings:
        """From `[policy]`, a loaded configuration or one built by hand (validated here too:
        a bad value is a ConfigError either way); what follows only converts."""
        section = dict((cfg or {}).get("policy") or {})
        check_sections({"policy": section}, "policy")
        s = cls()
        listen = section.get("listen", s.listen)
        s.listen = [listen] if isinstance(listen, str) else list(listen)
        for name in ("fail_closed", "enforce_bans", "enforce_locks", "max_request_size",
                     "max_attributes", "max_connections"):
            if name in section:
                setattr(s, name, section[name])
        s.limits = [Limit.from_table(t) for t in section.get("limits", [])]
        s.allow_users = frozenset(section.get("allow_users", []))
        s.allow_clients = [ipaddress.ip_network(v.strip(), strict=False)
                           for v in section.get("allow_clients", [])]
        for text in ("ban_message", "lock_message", "fail_message"):
            if text in section:
                setattr(s, text, clean_text(section[text]))
        for dur in ("idle_timeout", "state_timeout", "flush_interval", "refresh_interval"):
            if dur in section:
                setattr(s, dur, duration(section[dur]))
        if "unix_mode" in section:
            s.unix_mode = int(section["unix_mode"], 8)
        if "near_ratio" in section:
            s.near_ratio = float(section["near_ratio"])
        return s


class StateView:
    """An in-memory snapshot of the shared bans and locks, for lookups without I/O.

    The server reloads it every `refresh_interval` from `SharedState` in a background thread
    and swaps it in whole; expiry is still checked at every lookup.
    """

    def __init__(self, bans: Iterable[Ban] = (), locks: Iterable[Lock] = (),
                 loaded: float | None = None) -> None:
        self.addresses: dict[str, Ban] = {}
        self.networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Ban]] = []
        for b in bans:
            if "/" in b.network:
                try:
                    self.networks.append((ipaddress.ip_network(b.network, strict=False), b))
                except ValueError:
                    continue
            else:
                self.addresses[b.network] = b
        self.locks: dict[str, Lock] = {lk.user: lk for lk in locks}
        self.loaded = time.time() if loaded is None else loaded
        self._net_cache: dict[str, Ban | None] = {}

    @classmethod
    def load(cls, shared: SharedState) -> StateView:
        now = time.time()
        return cls(shared.bans(now), shared.locks(now), now)

    def banned(self, ip: str, now: float) -> Ban | None:
        ban = self.addresses.get(ip)
        if ban is not None and ban.active(now):
            return ban
        if not self.networks:
            return None
        cache = self._net_cache
        if ip in cache:
            ban = cache[ip]
        else:
            ban = None
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                addr = None
            if addr is not None:
                for net, b in self.networks:
                    if addr.version == net.version and addr in net:
                        ban = b
                        break
            if len(cache) > 100_000:
                cache.clear()
            cache[ip] = ban
        return ban if ban is not None and ban.active(now) else None

    def locked(self, user: str, now: float) -> Lock | None:
        lock = self.locks.get(user)
        return lock if lock is not None and lock.active(now) else None


@dataclass(slots=True)
class Plan:
    """What `Policy.plan` found: a final answer, or checks to run and how to conclude."""

    answer: bytes | None
    checks: list[Check] = field(default_factory=list)
    # For each check: (limit, metric, key value), to explain the decision.
    why: list[tuple[Limit, str, str]] = field(default_factory=list)
    rcpt_key: str = ""  # at RCPT: the message (instance|client) whose recipient this is


class Policy:
    """The decision logic; owns no I/O. One per server, used from the event loop only."""

    def __init__(self, settings: PolicySettings, view: StateView | None = None) -> None:
        self.settings = settings
        self.view = view or StateView()
        self.fail_answer = (answer("DEFER_IF_PERMIT", settings.fail_message)
                            if settings.fail_closed else DUNNO)
        self._ban_answer = answer("REJECT", settings.ban_message)
        self._lock_answer = answer("REJECT", settings.lock_message)
        self._answers: dict[tuple[str, str], bytes] = {}
        self._allow_cache: dict[str, bool] = {}
        # Recipients already counted at RCPT per message (instance + client), so END-OF-MESSAGE
        # counts only the rest. Bounded: aborted sessions never reach END-OF-MESSAGE.
        self._rcpt_seen: dict[str, int] = {}
        # One row per (limit, metric), everything a request needs precomputed:
        # (key, limit, counts messages?, maximum, counter-name suffix, sub-bucket width, buckets)
        self._rules: list[tuple[str, Limit, bool, int, str, int, int]] = []
        for lim in settings.limits:
            for metric, maximum in lim.rules():
                suffix = counter_name("", "", metric, lim.window)[1:]  # "|messages|60"
                self._rules.append((lim.key, lim, metric == "messages", maximum, suffix,
                                    bucket_width(lim.window), bucket_count(lim.window)))
        self._need_sender = any(lim.key in ("sender", "sender_domain") for lim in settings.limits)
        self._log_gate: dict[str, float] = {}
        self.suppressed = 0

    # ------------------------------------------------------------------ decisions
    def plan(self, req: Mapping[bytes, bytes], now: float) -> Plan:
        if req.get(b"request") != b"smtpd_access_policy":
            return Plan(DUNNO)
        s = self.settings
        client = decode(req.get(b"client_address"))
        user = decode(req.get(b"sasl_username"))
        if client and s.enforce_bans:
            ban = self.view.banned(client, now)
            if ban is not None:
                self._note(f"ban:{client}", now, "REJECT client_address=%s: banned (%s)",
                           client, _safe(ban.reason or "no reason given"))
                return Plan(self._ban_answer)
        if user and s.enforce_locks:
            lock = self.view.locked(user, now)
            if lock is not None:
                self._note(f"lock:{user}", now, "REJECT sasl_username=%s: locked (%s)",
                           _safe(user), _safe(lock.reason or "no reason given"))
                return Plan(self._lock_answer)
        if not self._rules:
            return Plan(DUNNO)
        state = req.get(b"protocol_state", b"").upper()
        if state == b"RCPT":
            stage = 0
        elif state == b"END-OF-MESSAGE":
            stage = 2
        elif state == b"DATA":
            stage = 1
        else:
            return Plan(DUNNO)
        if (user and user in s.allow_users) or (client and self._allowed(client)):
            return Plan(DUNNO)
        values = {"sasl_username": user, "client_address": client}
        if self._need_sender:
            sender = decode(req.get(b"sender")).lower()
            values["sender"] = sender
            values["sender_domain"] = sender.rpartition("@")[2] if "@" in sender else ""
        extra_rcpts = 0
        msg_key = decode(req.get(b"instance")) + "|" + client
        if stage == 2:
            try:
                count = int(req.get(b"recipient_count") or b"0")
            except ValueError:
                count = 0
            extra_rcpts = max(0, count - self._rcpt_seen.pop(msg_key, 0))
        plan = Plan(None)
        checks = plan.checks
        why = plan.why
        for key, lim, is_messages, maximum, suffix, width, nb in self._rules:
            value = values[key]
            if not value:
                continue
            if is_messages:
                need, add = 1, (1 if stage == 2 else 0)
            elif stage == 0:
                need = add = 1
            elif stage == 2 and extra_rcpts:
                need = add = extra_rcpts
            else:
                continue
            checks.append(Check(key + ":" + value + suffix, lim.window, maximum, need, add,
                                lim.blocking, width, nb))
            why.append((lim, "messages" if is_messages else "recipients", value))
        if not checks:
            return Plan(DUNNO)
        if stage == 0:
            plan.rcpt_key = msg_key  # remembered by conclude() if the recipient is allowed
        return plan

    def conclude(self, plan: Plan, outcome: Outcome, now: float | None = None) -> bytes:
        """The answer once the counter store has run `plan.checks`."""
        strongest: tuple[Limit, str, str, int] | None = None
        for check, (lim, metric, value), usage in zip(plan.checks, plan.why, outcome.usages,
                                                       strict=True):
            if check.need and usage + check.need > check.limit:
                now = time.time() if now is None else now
                self._note(f"{check.counter}", now,
                           "%s %s=%s: %d %s in %s, limit %d (%s)",
                           "shadow (log only):" if lim.action == "DUNNO" else lim.action,
                           lim.key, _safe(value), usage + check.need, metric,
                           format_window(lim.window), check.limit, lim.name or lim.describe())
                if strongest is None or _STRENGTH[lim.action] > _STRENGTH[strongest[0].action]:
                    strongest = (lim, metric, value, usage)
        if plan.rcpt_key and outcome.allowed:
            # A recipient counted at RCPT: END-OF-MESSAGE must not count it again.
            seen = self._rcpt_seen
            seen[plan.rcpt_key] = seen.get(plan.rcpt_key, 0) + 1
            if len(seen) > 100_000:
                for k in list(seen)[:10_000]:  # oldest first (dicts keep insertion order)
                    del seen[k]
        if strongest is None or strongest[0].action == "DUNNO":
            return DUNNO
        lim = strongest[0]
        key = (lim.action, lim.message)
        ans = self._answers.get(key)
        if ans is None:
            ans = self._answers[key] = answer(lim.action, lim.message)
        return ans

    def _allowed(self, client: str) -> bool:
        nets = self.settings.allow_clients
        if not nets:
            return False
        hit = self._allow_cache.get(client)
        if hit is None:
            try:
                addr = ipaddress.ip_address(client)
                hit = any(addr.version == n.version and addr in n for n in nets)
            except ValueError:
                hit = False
            if len(self._allow_cache) > 100_000:
                self._allow_cache.clear()
            self._allow_cache[client] = hit
        return hit

    def _note(self, gate: str, now: float, fmt: str, *args: Any) -> None:
        """Log a decision, at most once per 10 s per subject: a spam run must not flood the log."""
        last = self._log_gate.get(gate)
        if last is not None and now - last < 10:
            self.suppressed += 1
            return
        if len(self._log_gate) > 50_000:
            self._log_gate.clear()
        self._log_gate[gate] = now
        log.info(fmt, *args)


def _safe(text: str, limit: int = 120) -> str:
    """A value from the network, made safe for one log line."""
    out = "".join(ch if ch.isprintable() else f"\\x{ord(ch) & 0xff:02x}" for ch in text[:limit])
    return out + ("…" if len(text) > limit else "")
