"""`relayguard policy report`: who is near or over their rate limits right now.

Reads the counters where the policy server keeps them: the `counters` table of the state
database (one machine; the server flushes its memory there every `flush_interval`, so the
report may be that many seconds behind) or Redis (a fleet; live). A key is listed when its
usage reaches `near_ratio` of a limit, or when requests were refused by (or, in shadow mode,
would have been refused by) that limit within its window.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass
from typing import Any

from ..state.counters import OVER_PREFIX, parse_counter_name, read_sqlite_usage
from ..state.store import Store, resolve_path
from ..timefmt import iso
from .limits import PolicySettings, format_window

SCHEMA = "relayguard.policy-report/1"


@dataclass
class Entry:
    key: str            # sasl_username, client_address, sender, sender_domain
    value: str          # the user, address, sender or domain
    metric: str         # messages or recipients
    window: str         # "1m"
    window_seconds: int
    used: int           # counted within the window
    limit: int
    percent: int
    over: int           # requests over the limit within the window
    action: str         # what the limit does when exceeded
    status: str         # "over", "near" or "ok"


def usage_source(cfg: dict[str, Any], state_path: str | None = None) -> tuple[str, dict[str, int]]:
    """(description of the store, counter name -> usage)."""
    url = ((cfg or {}).get("state") or {}).get("url")
    if url:
        from ..state.redis import read_redis_usage, safe_url

        return safe_url(url), read_redis_usage(url)
    path = resolve_path(state_path, cfg)
    if not path.exists():
        return f"sqlite:{path}", {}
    store = Store(path)
    try:
        return f"sqlite:{path}", read_sqlite_usage(store.db)
    except sqlite3.Error as exc:
        from ..state.store import StateError

        raise StateError(f"state database {path}: {exc}") from None
    finally:
        store.close()


def build(settings: PolicySettings, usage: dict[str, int], *, show_all: bool = False,
          near: float | None = None) -> list[Entry]:
    """Entries for every (limit, key) that is near, over, or (show_all) merely counted."""
    near = settings.near_ratio if near is None else near
    by: dict[tuple[str, str, int], dict[str, int]] = {}
    for name, used in usage.items():
        parsed = parse_counter_name(name)
        if parsed is None:
            continue
        kind, value, metric, window = parsed
        by.setdefault((kind, metric.removeprefix(OVER_PREFIX), window), {})
        slot = by[(kind, metric.removeprefix(OVER_PREFIX), window)]
        field = "over:" + value if metric.startswith(OVER_PREFIX) else value
        slot[field] = slot.get(field, 0) + used
    entries = []
    for lim in settings.limits:
        for metric, maximum in lim.rules():
            slot = by.get((lim.key, metric, lim.window), {})
            values = {v for v in slot if not v.startswith("over:")}
            values |= {v[5:] for v in slot if v.startswith("over:")}
            for value in values:
                used = slot.get(value, 0)
                over = slot.get("over:" + value, 0)
                pct = 100 if maximum == 0 else round(100 * used / maximum)
                status = ("over" if over or used >= maximum
                          else "near" if used >= near * maximum else "ok")
                if status == "ok" and not show_all:
                    continue
                entries.append(Entry(lim.key, value, metric, format_window(lim.window),
                                     lim.window, used, maximum, pct, over, lim.action, status))
    rank = {"over": 0, "near": 1, "ok": 2}
    entries.sort(key=lambda e: (rank[e.status], -e.percent, -e.over, e.key, e.value))
    return entries


def to_json(entries: list[Entry], source: str, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {"schema": SCHEMA,
            "generated": iso(now, "seconds"),
            "store": source, "entries": [asdict(e) for e in entries]}


def render_text(entries: list[Entry], source: str, settings: PolicySettings) -> str:
    if not settings.limits:
        return "No rate limits configured ([[policy.limits]] in the configuration).\n"
    if not entries:
        return (f"Nobody is near a limit (≥ {round(settings.near_ratio * 100)}% of it) "
                f"or over one. Counters: {source}\n")
    rows = [("STATUS", "KEY", "WHO", "USED", "LIMIT", "WINDOW", "OVER", "ACTION")]
    for e in entries:
        rows.append((e.status.upper(), e.key, _cut(e.value), f"{e.used} {e.metric}",
                     str(e.limit), e.window, str(e.over), e.action))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append("")
    lines.append(f"OVER: requests refused (or, for DUNNO, that would have been) within the "
                 f"window. Counters: {source}")
    return "\n".join(lines) + "\n"


def _cut(text: str, n: int = 48) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= n else text[: n - 1] + "…"
