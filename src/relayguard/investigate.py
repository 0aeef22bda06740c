"""`relayguard show user|ip`: everything the logs — and, where available, the queue and the
shared state — say about one account or one address.

The same pipeline as `analyze`, filtered early: only the subject's `client=` lines open message
records, and only the events about it reach the aggregates; the detectors then run on that
small picture, so `show user admin` names the guessed-password moment and the burst exactly as
`analyze` would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import config as config_mod
from .aggregate import Aggregates, SenderStats, network_of, top
from .correlate import Message
from .detect import Finding
from .inputs import InputSummary
from .parse.event import AUTH_FAILURE, CLIENT, FIREWALL, REJECT, Event
from .pipeline.core import Pipeline
from .sources import files
from .timefmt import iso

RECENT = 25  # messages listed in full


def user_matches(logged: str | None, wanted: str) -> bool:
    """`admin` matches `admin` and `admin@realm` (Cyrus logs the realm); case-insensitive."""
    if not logged:
        return False
    a, w = logged.lower(), wanted.lower()
    return a == w or ("@" not in w and a.split("@", 1)[0] == w)


@dataclass
class Login:
    """Successful logins (a `client=` line with the login) from one address, or as one user."""

    count: int = 0
    first: float | None = None
    last: float | None = None
    names: set[str] = field(default_factory=set)

    def add(self, ts: float, name: str | None) -> None:
        self.count += 1
        self.first = ts if self.first is None else self.first
        self.last = ts
        if name and name != "unknown" and len(self.names) < 5:
            self.names.add(name)


@dataclass
class Investigation:
    kind: str  # "user" or "ip"
    subject: str
    lines: int = 0
    start: float | None = None
    end: float | None = None
    logins: dict[str, Login] = field(default_factory=dict)  # per IP (user) or per login (ip)
    failures: dict[str, int] = field(default_factory=dict)  # per IP (user) or per username (ip)
    failure_first: float | None = None
    failure_last: float | None = None
    sent: SenderStats = field(default_factory=SenderStats)
    recent: list[Message] = field(default_factory=list)
    rejected: int = 0
    firewall: int = 0
    findings: list[Finding] = field(default_factory=list)
    ban: dict[str, Any] | None = None
    lock: dict[str, Any] | None = None
    queued: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    geo: dict[str, dict[str, Any]] = field(default_factory=dict)  # address → country, asn, org
    geo_spread: dict[str, Any] | None = None
    input: InputSummary = field(default_factory=InputSummary)  # see Analysis.input

    def to_dict(self) -> dict[str, Any]:
        s = self.sent
        return {
            "schema": "relayguard.show/1", "kind": self.kind, "subject": self.subject,
            "period": {"start": iso(self.start), "end": iso(self.end)}, "lines": self.lines,
            "input": self.input.to_dict(),
            "logins": [{"key": k, "count": v.count, "first": iso(v.first), "last": iso(v.last),
                        "names": sorted(v.names)}
                       for k, v in sorted(self.logins.items(), key=lambda kv: kv[1].first or 0)],
            "auth_failures": {"total": sum(self.failures.values()), "first": iso(self.failure_first),
                              "last": iso(self.failure_last), "by": top(self.failures, 50)},
            "messages": {"total": s.messages, "recipients": s.recipients, "sent": s.sent,
                         "deferred": s.deferred, "bounced": s.bounced, "without_message_id": s.no_message_id,
                         "client_ips": len(s.ips), "networks": len({network_of(i) for i in s.ips}),
                         "top_recipient_domains": top(s.rcpt_domains, 15), "top_senders": top(s.senders, 10),
                         "per_10min": {iso(b * 600): c for b, c in sorted(s.buckets.items())}},
            "recent": [m.to_dict() for m in self.recent],
            "rejected": self.rejected, "firewall_smtp": self.firewall,
            "findings": [f.to_dict() for f in self.findings],
            "ban": self.ban, "lock": self.lock, "queued": self.queued, "notes": self.notes,
            "geo": self.geo, "geo_spread": self.geo_spread,
        }


def investigate(kind: str, subject: str, paths: list[str] | None = None,
                cfg: dict[str, Any] | None = None, year: int | None = None,
                trusted: list[str] | None = None, state_path: str | None = None,
                config_dir: str | None = None, with_queue: bool = True) -> Investigation:
    """Gather what is known about `subject` (a SASL login or an IP address).
    Raises sources.InputError on unreadable logs; the queue and state are best effort;
    `.input.require()` tells whether the logs held anything to look in."""
    cfg = cfg if cfg is not None else config_mod.load()
    paths = paths or files.default_logs(config_dir)
    pipe = Pipeline(cfg, trusted, config_dir)
    agg = pipe.aggregates
    inv = Investigation(kind, subject)
    if kind == "user":
        def mine(ev: Event) -> bool:
            return user_matches(ev.fields.get("sasl_username"), subject)
    else:
        def mine(ev: Event) -> bool:
            return ev.fields.get("client_ip") == subject
    on_event = _collector(inv, agg, mine)

    def on_message(m: Message) -> None:
        agg.message(m)
        inv.recent.append(m)
        if len(inv.recent) > RECENT:
            del inv.recent[0]

    seen = pipe.read(paths, year, on_event=on_event, on_message=on_message,
                     admit=lambda ev: ev.event == CLIENT and mine(ev))
    inv.lines, inv.start, inv.end, inv.input = seen.lines, seen.start, seen.end, seen.summary()
    if kind == "user":
        for login, s in agg.users.items():
            if user_matches(login, subject):
                inv.sent.merge(s)
    else:
        for s in [*agg.users.values(), *agg.clients.values()]:
            inv.sent.merge(s)
    inv.findings = [f for f in pipe.detect() if _about(f, kind, subject)]
    if agg.geo is not None:
        # "Where did the logins come from": the seeds' whois step, from local databases.
        addresses = list(inv.logins) if kind == "user" else [subject]
        inv.geo = {ip: agg.geo.lookup(ip).to_dict() for ip in addresses}
        inv.geo_spread = agg.geo.spread(addresses).to_dict()
    _state(inv, cfg, state_path)
    if with_queue:
        _queue(inv, config_dir)
    return inv


def _collector(inv: Investigation, agg: Aggregates, mine: Callable[[Event], bool]) -> Callable[[Event], None]:
    """The events about the subject, plus every SASL failure (a success after failures from the
    same address is the guessed-password moment, whoever the failures were for)."""
    user = inv.kind == "user"

    def on_event(ev: Event) -> None:
        kind = ev.event
        if kind == AUTH_FAILURE:
            agg.event(ev)
            if mine(ev):
                key = ev.fields.get("client_ip", "") if user else (ev.fields.get("sasl_username") or "(not logged)")
                inv.failures[key] = inv.failures.get(key, 0) + 1
                inv.failure_first = inv.failure_first or ev.ts
                inv.failure_last = ev.ts
        elif kind == CLIENT:
            if mine(ev):
                agg.event(ev)
                key = ev.fields.get("client_ip", "") if user else ev.fields.get("sasl_username") or "(none)"
                inv.logins.setdefault(key, Login()).add(ev.ts, ev.fields.get("client_name"))
        elif not user and kind == REJECT and mine(ev):
            inv.rejected += 1
        elif not user and kind == FIREWALL and ev.fields.get("src") == inv.subject:
            agg.event(ev)
            inv.firewall += 1

    return on_event


def _about(f: Finding, kind: str, subject: str) -> bool:
    if kind == "user":
        return f.kind == "compromised_account" and user_matches(f.subject, subject)
    return f.subject == subject


def _state(inv: Investigation, cfg: dict[str, Any], state_path: str | None) -> None:
    """Bans and locks, when the state database can be read (it may not exist yet)."""
    from .state.shared import open_shared
    from .state.store import DEFAULT_PATH, StateError, resolve_path

    try:
        if not (cfg.get("state") or {}).get("url") and not resolve_path(state_path, cfg).exists():
            inv.notes.append(f"no state database ({state_path or DEFAULT_PATH}): bans and locks unknown")
            return
        shared = open_shared(cfg, state_path)
    except (StateError, OSError) as exc:
        inv.notes.append(f"state not read: {exc}")
        return
    try:
        if inv.kind == "ip":
            ban = shared.banned(inv.subject)
            inv.ban = ban.to_dict() if ban else None
        else:
            lock = next((lk for lk in shared.locks() if user_matches(lk.user, inv.subject)), None)
            inv.lock = lock.to_dict() if lock else None
    except Exception as exc:  # noqa: BLE001 — a broken state store must not hide the log evidence
        inv.notes.append(f"state not read: {exc}")
    finally:
        shared.close()


def _queue(inv: Investigation, config_dir: str | None) -> None:
    """Mail of the subject still in the queue (from the queue files' own origin records)."""
    from .queue.select import Selector, parse_ip_or_cidr, select
    from .queue.tools import PostfixTools, QueueError

    try:
        sel = (Selector(sasl_users=(inv.subject,)) if inv.kind == "user"
               else Selector(client_ips=(parse_ip_or_cidr(inv.subject),)))
        found = select(PostfixTools(config_dir), sel)
    except (QueueError, OSError, ValueError) as exc:
        inv.notes.append(f"queue not read: {exc}")
        return
    inv.queued = {"messages": len(found.messages), "by_queue": found.by_queue(),
                  "recipients": found.total_recipients(),
                  "sample": [m.queue_id for m in found.messages[:10]]}
