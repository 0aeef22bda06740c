"""The audit trail: writing an entry for every change relayguard makes, and reading it back.

Named audit_trail, not audit: relayguard.audit is the configuration audit (`relayguard audit`).
It sits in state because it is a thin protocol over the Store that every acting layer (queue,
respond, trusted, firewall, setup, the dashboard) shares, and `history` reads it whatever
wrote it (queue actions, bans, locks, hooks, trusted changes, setup).

One protocol, one failure policy, for every caller:

* `begin()` writes the entry, status "started", BEFORE the change. If it cannot be written it
  raises StateError and the caller must not act: a change without its record does not happen.
* `Entry.complete()` fills in the outcome (status, queue IDs, detail) afterwards. The change
  has happened by then, so a failure here must not hide it: complete() returns the problem as a
  warning for the caller to show, and the entry stays "started" in the trail — the honest
  "outcome not recorded" — never a silent gap.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .store import StateError, Store, resolve_path

STARTED = "started"


@dataclass
class Entry:
    """An audit entry opened by begin(); `id` is 0 when there is no store (nothing recorded)."""

    store: Store | None
    id: int

    def complete(self, status: str = "ok", *, queue_ids: Iterable[str] | None = None,
                 gone: Iterable[str] | None = None, matched: int | None = None,
                 backup_dir: str | Path | None = None, detail: str | None = None) -> str | None:
        """Record the outcome; None when done, else the warning to show (the change happened)."""
        if self.store is None or not self.id:
            return None
        try:
            self.store.update_audit(self.id, status=status, detail=detail, queue_ids=queue_ids,
                                    gone=gone, matched=matched, backup_dir=backup_dir)
        except StateError as exc:
            return (f"{exc}: audit entry #{self.id} stays '{STARTED}', its outcome ({status}) "
                    "is not recorded")
        return None

    def discard(self) -> None:
        """The change turned out to be none (already in place): no entry, as if never begun."""
        if self.store is not None and self.id:
            self.store.discard_audit(self.id, STARTED)


def begin(store: Store | None, action: str, *, selector: dict[str, Any] | None = None,
          matched: int = 0, queue_ids: Iterable[str] = (),
          backup_dir: str | Path | None = None, config_dir: str | None = None,
          detail: str | None = None, command: list[str] | None = None) -> Entry:
    """Open the entry of a change about to be made. Raises StateError when it cannot be
    written: then the change must not be made. `store` None: a caller that keeps no trail
    (a library user without a state database) — nothing is written, nothing raised."""
    if store is None:
        return Entry(None, 0)
    entry_id = store.record(action, selector=selector, matched=matched, queue_ids=queue_ids,
                            backup_dir=backup_dir, config_dir=config_dir, status=STARTED,
                            detail=detail, command=command, ts=time.time())
    return Entry(store, entry_id)


def record(store: Store | None, action: str, status: str = "ok", *,
           selector: dict[str, Any] | None = None, matched: int = 0,
           queue_ids: Iterable[str] = (), gone: Iterable[str] = (),
           backup_dir: str | Path | None = None, config_dir: str | None = None,
           detail: str | None = None, command: list[str] | None = None) -> int:
    """An entry whose outcome is known when it is written (a hook that ran, a failure before
    anything changed). Same policy: raises StateError when it cannot be written."""
    if store is None:
        return 0
    return store.record(action, selector=selector, matched=matched, queue_ids=queue_ids,
                        gone=gone, backup_dir=backup_dir, config_dir=config_dir, status=status,
                        detail=detail, command=command)


def history(state_path: str | None, cfg: dict[str, Any], limit: int | None = 50,
            action: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
    """The trail, newest first: every change relayguard recorded (queue actions, bans, locks,
    hooks, trusted networks, setup). No database yet is an empty trail, not an error (nothing
    was ever recorded there); one that cannot be opened raises StateError."""
    path = resolve_path(state_path, cfg)
    if not path.exists():
        return []
    with Store(path) as store:
        return store.history(limit or None, action, since)
