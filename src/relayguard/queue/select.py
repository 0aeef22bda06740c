"""Selectors: which queued messages an action applies to.

Different selectors are combined with AND; repeating one selector (`--sender a --sender b`)
means OR among its values. Envelope selectors (sender, domains, age, queue, size, ID) are
checked on the `postqueue` listing alone. `--sasl-user` and `--client-ip` need the message's
origin, which `postqueue` does not show:

* the queue file (`postcat -e`, read in batches and only for messages that passed the envelope
  selectors): smtpd stores `sasl_username` and `client_address` in every message it receives,
  and they survive `postsuper -r`. Exact, current, needs no log — the default.
* the logs (`--log FILE`): the `client=` line of the queue ID. When given, a message the log
  knows takes the log's values, and its queue file must not contradict them (otherwise the
  queue ID was probably reused since the logged message: left out, with a warning); a message
  the log does not know (a log rotated away, a requeued message whose log shows only `pickup`)
  falls back to its queue file.

Mail submitted locally (`sendmail`, e.g. a hacked web form) has neither: select it by sender.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .postqueue import (
    QueuedMessage,
    domain_of,
    normalize_sender,
    read_envelopes,
    read_queue,
    unquote_address,
)
from .tools import PostfixTools, QueueError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
QUEUE_NAMES = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")
ORIGIN_BATCH = 200


def _fold(s: str) -> str:
    return s.casefold()


def parse_domain(text: str) -> str:
    """`Example.COM`, `@example.com` → `example.com`; a leading dot (`.example.com`) is kept:
    it means "any subdomain", as in Postfix tables."""
    d = text.strip().lower().rstrip(".")
    if d.startswith("@"):
        d = d[1:]
    if not d or any(c.isspace() for c in d) or "@" in d:
        raise ValueError(f"bad domain {text!r}")
    return d


def parse_ip_or_cidr(text: str) -> IPNetwork:
    """A selector's address or network, as people type it (`46.48.0.0/16`, `::1`; host bits
    are dropped). Postfix's own notation, with its [brackets] and what it would skip, is
    :func:`relayguard.postfix.mynetworks.parse_postfix_network`'s."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"bad IP address or CIDR {text!r}") from None


def domain_matches(domain: str, wanted: str) -> bool:
    if wanted.startswith("."):
        return domain.endswith(wanted) or domain == wanted[1:]
    return domain == wanted


def user_matches(username: str, wanted: str) -> bool:
    """Exact (case-insensitive) login; a selector without `@` also matches the same login with a
    realm (`admin` matches `admin@example.com`), because Cyrus logs the realm while people type
    the bare name. The preview shows which logins matched."""
    u, w = _fold(username), _fold(wanted)
    return u == w or ("@" not in w and u.partition("@")[0] == w)


@dataclass
class Selector:
    senders: tuple[str, ...] = ()
    sender_domains: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()
    recipient_domains: tuple[str, ...] = ()
    sasl_users: tuple[str, ...] = ()
    client_ips: tuple[IPNetwork, ...] = ()
    older_than: float | None = None  # seconds
    newer_than: float | None = None
    queues: tuple[str, ...] = ()
    min_size: int | None = None
    queue_ids: tuple[str, ...] = ()
    # Derived: exact-match keys (both the quoted and the unquoted form of each address).
    _sender_keys: frozenset[str] = field(default=frozenset(), init=False, repr=False)
    _rcpt_keys: frozenset[str] = field(default=frozenset(), init=False, repr=False)

    def __post_init__(self) -> None:
        self._sender_keys = frozenset(
            k for s in self.senders for k in _address_keys(normalize_sender(s)))
        self._rcpt_keys = frozenset(k for r in self.recipients for k in _address_keys(r.strip()))

    def is_empty(self) -> bool:
        return not any((self.senders, self.sender_domains, self.recipients,
                        self.recipient_domains, self.sasl_users, self.client_ips,
                        self.older_than is not None, self.newer_than is not None, self.queues,
                        self.min_size is not None, self.queue_ids))

    @property
    def needs_origin(self) -> bool:
        return bool(self.sasl_users or self.client_ips)

    def matches_envelope(self, m: QueuedMessage, now: float) -> bool:
        """Everything `postqueue` shows; the origin selectors are checked separately."""
        if self.queues and m.queue_name not in self.queues:
            return False
        if self.queue_ids and m.queue_id not in self.queue_ids:
            return False
        if self._sender_keys and not (_address_keys(m.sender) & self._sender_keys):
            return False
        if self.sender_domains and not any(domain_matches(m.sender_domain, d)
                                           for d in self.sender_domains):
            return False
        if self._rcpt_keys and not any(_address_keys(r.address) & self._rcpt_keys
                                       for r in m.recipients):
            return False
        if self.recipient_domains and not any(
                domain_matches(domain_of(r.address), d)
                for r in m.recipients for d in self.recipient_domains):
            return False
        age = m.age(now)
        if self.older_than is not None and age < self.older_than:
            return False
        if self.newer_than is not None and age > self.newer_than:
            return False
        return not (self.min_size is not None and m.size < self.min_size)

    def matches_origin(self, sasl_username: str | None, client_address: str | None) -> bool:
        if self.sasl_users and not (sasl_username and any(
                user_matches(sasl_username, u) for u in self.sasl_users)):
            return False
        if self.client_ips:
            try:
                ip = ipaddress.ip_address((client_address or "").strip("[]"))
            except ValueError:
                return False
            if not any(ip in net for net in self.client_ips):
                return False
        return True

    def describe(self) -> dict[str, Any]:
        """The selector as given (for previews, JSON output and the audit trail)."""
        d: dict[str, Any] = {}
        for name in ("senders", "sender_domains", "recipients", "recipient_domains",
                     "sasl_users", "queues", "queue_ids"):
            v = getattr(self, name)
            if v:
                d[name] = list(v)
        if self.client_ips:
            d["client_ips"] = [str(n) for n in self.client_ips]
        for name in ("older_than", "newer_than", "min_size"):
            v = getattr(self, name)
            if v is not None:
                d[name] = v
        return d


def _address_keys(addr: str) -> frozenset[str]:
    """Comparison keys of an address: as written and unquoted, case-folded. So
    `"x;touch /tmp/pwned"@evil.example` matches itself and `x;touch /tmp/pwned@evil.example`,
    and nothing else (no pattern, no substring)."""
    return frozenset((_fold(addr), _fold(unquote_address(addr))))


# ------------------------------------------------------------------------------ origins

@dataclass(slots=True)
class LogOrigin:
    sasl_username: str | None
    client_address: str | None


def origins_from_logs(paths: list[str], wanted: set[str] | None = None,
                      year: int | None = None) -> dict[str, LogOrigin]:
    """Queue ID → (SASL login, client IP) from the `client=` lines of messages still open at
    the end of the logs (a `removed` message is no longer in the queue; its ID may be reused).
    Only IDs in `wanted` are kept, so a month of logs costs little memory."""
    try:
        from ..pipeline import run
    except ImportError:  # older layout: the loop lived in analysis
        from ..analysis import run  # type: ignore[attr-defined,no-redef]

    found: dict[str, LogOrigin] = {}

    def on_message(m: Any) -> None:
        qid = m.queue_id
        if wanted is not None and qid not in wanted:
            return
        if m.removed:
            found.pop(qid, None)
            return
        if m.client_ip is None and m.sasl_username is None:
            return  # pickup / unknown origin: leave it to the queue file
        found[qid] = LogOrigin(m.sasl_username, m.client_ip)

    run(paths, year, on_message=on_message)
    return found


def resolve_origins(tools: PostfixTools, msgs: list[QueuedMessage],
                    logs: dict[str, LogOrigin] | None = None) -> set[str]:
    """Fill sasl_username/client_address/origin_source of `msgs`. Returns the IDs whose queue
    file is already gone.

    With logs, a message the log knows takes the log's values, and its queue file must not say
    otherwise (`origin_source = "conflict"` then: a queue ID reused since the logged message,
    excluded by origin selectors); a message the log does not know takes the queue file's.
    Without logs, the queue file decides. A queue file that has `client_address` but no
    `sasl_username` records an unauthenticated client."""
    envs, missing = read_envelopes(tools, [m.queue_id for m in msgs])
    for m in msgs:
        env = envs.get(m.queue_id)
        known = env is not None and bool(env.sasl_username or env.client_address)
        log = logs.get(m.queue_id) if logs is not None else None
        if log is not None:
            m.sasl_username, m.client_address = log.sasl_username, log.client_address
            m.origin_source = "log"
            if known and env is not None and _disagree(env.sasl_username, log.sasl_username,
                                                       env.client_address, log.client_address):
                m.sasl_username, m.client_address = env.sasl_username, env.client_address
                m.origin_source = "conflict"
        elif known and env is not None:
            m.sasl_username, m.client_address = env.sasl_username, env.client_address
            m.origin_source = "queue"
        else:
            m.sasl_username = m.client_address = None
            m.origin_source = "unknown"
    return missing


def _disagree(q_user: str | None, l_user: str | None, q_ip: str | None, l_ip: str | None) -> bool:
    if _fold(q_user or "") != _fold(l_user or ""):
        return True
    return bool(q_ip and l_ip and q_ip.strip("[]") != l_ip.strip("[]"))


def _origin_ok(sel: Selector, m: QueuedMessage) -> bool:
    if m.origin_source == "conflict" and sel.needs_origin:
        return False
    return sel.matches_origin(m.sasl_username, m.client_address)


# ----------------------------------------------------------------------------- selection

@dataclass
class Selection:
    """The messages an action would touch, and how they were found."""

    selector: Selector
    messages: list[QueuedMessage] = field(default_factory=list)
    scanned: int = 0
    gone: list[str] = field(default_factory=list)  # left the queue while being inspected
    warnings: list[str] = field(default_factory=list)
    taken_at: float = field(default_factory=time.time)

    @property
    def ids(self) -> list[str]:
        return [m.queue_id for m in self.messages]

    def by_queue(self) -> dict[str, int]:
        return dict(Counter(m.queue_name for m in self.messages).most_common())

    def top_senders(self, n: int = 5) -> list[tuple[str, int]]:
        return Counter(m.sender or "<>" for m in self.messages).most_common(n)

    def top_users(self, n: int = 5) -> list[tuple[str, int]]:
        return Counter(m.sasl_username for m in self.messages
                       if m.sasl_username).most_common(n)

    def total_recipients(self) -> int:
        return sum(len(m.recipients) for m in self.messages)


def iter_selected(tools: PostfixTools, sel: Selector, logs: dict[str, LogOrigin] | None = None,
                  now: float | None = None, with_origin: bool = False,
                  source: Iterable[QueuedMessage] | None = None,
                  gone: list[str] | None = None, warnings: list[str] | None = None,
                  ) -> Iterator[QueuedMessage]:
    """Stream the matching messages. The origin (postcat) is read, in batches, only for
    messages that pass the envelope selectors, and only when a selector or `with_origin`
    asks for it."""
    now = time.time() if now is None else now
    need = sel.needs_origin or with_origin or logs is not None
    stream = source if source is not None else read_queue(tools, warnings)
    batch: list[QueuedMessage] = []

    def flush() -> Iterator[QueuedMessage]:
        missing = resolve_origins(tools, batch, logs)
        for m in batch:
            if m.queue_id in missing:
                if gone is not None:
                    gone.append(m.queue_id)
                continue
            if m.origin_source == "conflict" and sel.needs_origin and warnings is not None:
                warnings.append(f"{m.queue_id}: left out: the log and the queue file disagree "
                                "about where it came from (a reused queue ID?)")
            if _origin_ok(sel, m):
                yield m
        batch.clear()

    for m in stream:
        if not sel.matches_envelope(m, now):
            continue
        if not need:
            yield m
            continue
        batch.append(m)
        if len(batch) >= ORIGIN_BATCH:
            yield from flush()
    if batch:
        yield from flush()


def select(tools: PostfixTools, sel: Selector, log_paths: list[str] | None = None,
           year: int | None = None, now: float | None = None, with_origin: bool = False,
           on_progress: Callable[[int], None] | None = None) -> Selection:
    """List the queue and keep what `sel` matches. Raises QueueError (postfix tools) and
    sources.InputError (unreadable logs)."""
    result = Selection(sel)
    now = time.time() if now is None else now
    result.taken_at = now
    logs: dict[str, LogOrigin] | None = None
    if log_paths and (sel.needs_origin or with_origin):
        # First the cheap envelope pass, so the log scan keeps only IDs that can matter.
        candidates = [m for m in read_queue(tools, result.warnings)
                      if sel.matches_envelope(m, now)]
        result.scanned = len(candidates)
        logs = origins_from_logs(log_paths, {m.queue_id for m in candidates}, year)
        source: Iterable[QueuedMessage] = candidates
    else:
        source = _counting(read_queue(tools, result.warnings), result)
    for m in iter_selected(tools, sel, logs, now, with_origin, source, result.gone,
                           result.warnings):
        result.messages.append(m)
        if on_progress is not None:
            on_progress(len(result.messages))
    return result


def _counting(it: Iterable[QueuedMessage], sel: Selection) -> Iterator[QueuedMessage]:
    for m in it:
        sel.scanned += 1
        yield m


__all__ = ["QUEUE_NAMES", "LogOrigin", "QueueError", "Selection", "Selector", "domain_matches",
           "iter_selected", "origins_from_logs", "parse_domain", "parse_ip_or_cidr",
           "resolve_origins", "select", "user_matches"]
