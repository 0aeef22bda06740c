"""`relayguard status`: what enforces bans and locks here and whether it really does
(enforcement.check), whether `watch` is alive (its heartbeat), and what the state holds now —
active bans and locks, authentication failures in the brute-force window, the latest findings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .config import duration
from .respond.enforcement import Report, check, verify_policy_sees
from .respond.holder import audit_store
from .state.shared import open_shared
from .state.store import StateError

SHOWN = 5  # bans, locks, addresses and findings listed by name


@dataclass
class Status:
    enforcement: Report
    watch: dict[str, Any] = field(default_factory=dict)
    bans: dict[str, Any] = field(default_factory=dict)
    locks: dict[str, Any] = field(default_factory=dict)
    auth_failures: dict[str, Any] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    state_error: str | None = None

    @property
    def exit_code(self) -> int:
        if self.enforcement.error or self.state_error:
            return 2
        return 1 if self.enforcement.problems else 0

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "relayguard.status/1", "ok": self.exit_code == 0,
                "enforcement": self.enforcement.to_dict(),
                "problems": [c.to_dict() for c in self.enforcement.problems],
                "watch": self.watch, "bans": self.bans, "locks": self.locks,
                "auth_failures": self.auth_failures, "findings": self.findings,
                "state_error": self.state_error}


def gather(cfg: dict[str, Any], config_dir: str | None = None,
           state_path: str | None = None) -> Status:
    st = Status(check(cfg, config_dir))
    now = time.time()
    try:
        shared = open_shared(cfg, state_path)
    except StateError as exc:
        st.state_error = str(exc)
        return st
    try:
        bans = shared.bans(now)
        locks = shared.locks(now)
        st.bans = {"active": len(bans), "shown": [b.to_dict() for b in bans[:SHOWN]]}
        st.locks = {"active": len(locks), "shown": [lk.to_dict() for lk in locks[:SHOWN]]}
        verify_policy_sees(st.enforcement, cfg, bans, locks, now)
        store = audit_store(shared, cfg, state_path)
        try:
            st.watch = _watch(store, now)
            window = duration((cfg.get("bruteforce") or {}).get("window", "10m"))
            st.auth_failures = _failures(store, now, window)
            st.findings = [{k: f.get(k) for k in ("kind", "subject", "severity", "summary",
                                                  "updated")}
                           for f in store.findings()[:SHOWN]]
        finally:
            if store is not getattr(shared, "store", None):
                store.close()
    except StateError as exc:
        st.state_error = str(exc)
    finally:
        shared.close()
    return st


def _watch(store: Any, now: float) -> dict[str, Any]:
    beat = store.heartbeat("watch")
    if beat is None:
        return {"running": False, "last_beat": None,
                "detail": "not running (no heartbeat): no automatic bans; expired bans are "
                          "lifted by `relayguard ban sync`"}
    ts, info = beat
    age = max(0.0, now - ts)
    interval = float(info.get("interval") or 10)
    running = age <= 3 * interval
    return {"running": running, "last_beat": round(age, 1), "pid": info.get("pid"),
            "sources": info.get("sources", []),
            "detail": (f"running (pid {info.get('pid')}, heartbeat {age:.0f}s ago)" if running
                       else f"not running: last heartbeat {age:.0f}s ago (killed, or hung)")}


def _failures(store: Any, now: float, window: float) -> dict[str, Any]:
    from .watch.checkpoints import Checkpoints

    per_ip = Checkpoints(store).load_failures(now - window)
    top = sorted(per_ip.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:SHOWN]
    return {"window_seconds": window, "total": sum(len(v) for v in per_ip.values()),
            "addresses": len(per_ip), "top": [{"ip": ip, "failures": len(v)} for ip, v in top],
            "note": "counted by `relayguard watch`"}
