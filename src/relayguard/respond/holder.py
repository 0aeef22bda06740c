"""What Banner and Locker share: the shared state plus the local audit trail, opened from the
configuration and closed once."""

from __future__ import annotations

import sys
from typing import Any, Self

from ..state.shared import SharedState, SqliteShared, open_shared
from ..state.store import Store, resolve_path
from .common import config_section


def audit_store(shared: SharedState, cfg: dict[str, Any] | None,
                state_path: str | None = None) -> Store:
    """The local audit trail: the shared store itself when it is SQLite, else the local
    database (a fleet shares bans through Redis, but each machine audits what it did)."""
    if isinstance(shared, SqliteShared):
        return shared.store
    local = {k: v for k, v in (cfg or {}).items() if k != "state"}
    local["state"] = {k: v for k, v in config_section(cfg, "state").items() if k != "url"}
    return Store(resolve_path(state_path, local))


class StateHolder:
    """What Banner and Locker share: the shared state plus the local audit trail, opened from
    the configuration and closed once (the store only if it is not the shared one's)."""

    def __init__(self, shared: SharedState, cfg: dict[str, Any] | None = None,
                 store: Store | None = None) -> None:
        self.shared = shared
        self.cfg = cfg or {}
        # Without a store of its own, the audit trail is the shared SQLite database's.
        self.store = store if store is not None else (
            shared.store if isinstance(shared, SqliteShared) else None)
        self.warnings: list[str] = []

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


def argv_if_cli(source: str) -> list[str] | None:
    """The command line, for entries made by a person's command."""
    return list(sys.argv) if source == "cli" else None
