"""What the machines of a site share: bans (addresses and networks) and account locks.

One interface, two stores: SQLite on one machine (the `Store` database, tables of migration 2)
and Redis for a fleet (`state.redis.RedisShared`, chosen by `[state] url`). `watch`, the
`ban`/`lock` commands, the dashboard and the policy server all go through `open_shared()`,
so a ban decided anywhere is enforced everywhere. Expiry is part of every read: an expired ban
is never returned, whatever has or has not cleaned it up yet.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from .records import Ban, Lock, covers, normalise_network
from .store import StateError, Store, resolve_path

__all__ = ["Ban", "ExpiringState", "Lock", "SharedState", "SqliteShared", "StateError", "covers",
           "normalise_network", "open_shared"]


class SharedState(Protocol):
    """Bans and locks, with expiry. Implementations: SqliteShared, state.redis.RedisShared."""

    def add_ban(self, ban: Ban) -> Ban: ...
    def remove_ban(self, network: str) -> Ban | None: ...
    def bans(self, now: float | None = None) -> list[Ban]: ...
    def banned(self, ip: str, now: float | None = None) -> Ban | None: ...
    def add_lock(self, lock: Lock) -> Lock: ...
    def remove_lock(self, user: str) -> Lock | None: ...
    def locks(self, now: float | None = None) -> list[Lock]: ...
    def locked(self, user: str, now: float | None = None) -> Lock | None: ...
    def close(self) -> None: ...


class SqliteShared:
    """Bans and locks in the local state database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def add_ban(self, ban: Ban) -> Ban:
        ban.network = normalise_network(ban.network)
        self.db.execute(
            "INSERT INTO bans (network, reason, since, expires, backend, source) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT(network) DO UPDATE SET reason=excluded.reason, since=excluded.since,"
            " expires=excluded.expires, backend=excluded.backend, source=excluded.source",
            (ban.network, ban.reason, ban.since, ban.expires, ban.backend, ban.source))
        return ban

    def remove_ban(self, network: str) -> Ban | None:
        key = normalise_network(network)
        row = self.db.execute("SELECT * FROM bans WHERE network = ?", (key,)).fetchone()
        if row is None:
            return None
        self.db.execute("DELETE FROM bans WHERE network = ?", (key,))
        return Ban(**dict(row))

    def bans(self, now: float | None = None) -> list[Ban]:
        now = time.time() if now is None else now
        rows = self.db.execute("SELECT * FROM bans WHERE expires IS NULL OR expires > ? "
                               "ORDER BY since", (now,))
        return [Ban(**dict(r)) for r in rows]

    def banned(self, ip: str, now: float | None = None) -> Ban | None:
        now = time.time() if now is None else now
        row = self.db.execute("SELECT * FROM bans WHERE network = ? AND (expires IS NULL OR expires > ?)",
                              (ip, now)).fetchone()
        if row is not None:
            return Ban(**dict(row))
        for ban in self.bans(now):  # networks: few, so a scan is fine
            if "/" in ban.network and covers(ban.network, ip):
                return ban
        return None

    def add_lock(self, lock: Lock) -> Lock:
        self.db.execute(
            "INSERT INTO locks (user, reason, since, expires, source) VALUES (?,?,?,?,?)"
            " ON CONFLICT(user) DO UPDATE SET reason=excluded.reason, since=excluded.since,"
            " expires=excluded.expires, source=excluded.source",
            (lock.user, lock.reason, lock.since, lock.expires, lock.source))
        return lock

    def remove_lock(self, user: str) -> Lock | None:
        row = self.db.execute("SELECT * FROM locks WHERE user = ?", (user,)).fetchone()
        if row is None:
            return None
        self.db.execute("DELETE FROM locks WHERE user = ?", (user,))
        return Lock(**dict(row))

    def locks(self, now: float | None = None) -> list[Lock]:
        now = time.time() if now is None else now
        rows = self.db.execute("SELECT * FROM locks WHERE expires IS NULL OR expires > ? ORDER BY since",
                               (now,))
        return [Lock(**dict(r)) for r in rows]

    def locked(self, user: str, now: float | None = None) -> Lock | None:
        now = time.time() if now is None else now
        row = self.db.execute("SELECT * FROM locks WHERE user = ? AND (expires IS NULL OR expires > ?)",
                              (user, now)).fetchone()
        return Lock(**dict(row)) if row is not None else None

    # Expiry bookkeeping (respond/): a read never returns an expired entry, but whoever enforces
    # bans elsewhere (nftables, a Postfix map, fail2ban) must learn which ones ended to undo
    # them, so expired rows are taken out here, once, and handed to the caller.
    def pop_expired_bans(self, now: float | None = None) -> list[Ban]:
        """Delete the bans that have expired by `now` and return them."""
        return [Ban(**r) for r in self._pop_expired("bans", "network", now)]

    def pop_expired_locks(self, now: float | None = None) -> list[Lock]:
        """Delete the locks that have expired by `now` and return them."""
        return [Lock(**r) for r in self._pop_expired("locks", "user", now)]

    def _pop_expired(self, table: str, key: str, now: float | None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        # One writer at a time: `watch` and a cron'd `ban sync` must not both undo a ban.
        self.db.execute("BEGIN IMMEDIATE")
        try:
            rows = [dict(r) for r in self.db.execute(
                f"SELECT * FROM {table} WHERE expires IS NOT NULL AND expires <= ?", (now,))]
            self.db.executemany(f"DELETE FROM {table} WHERE {key} = ?", [(r[key],) for r in rows])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return rows

    def close(self) -> None:
        self.store.close()


class ExpiringState(Protocol):
    """Optional for a SharedState: hand over expired entries once (see SqliteShared). A store
    without it (entries that simply vanish, e.g. Redis TTLs) still works: relayguard then
    rebuilds maps from the active entries and leaves nftables timeouts to the kernel."""

    def pop_expired_bans(self, now: float | None = None) -> list[Ban]: ...
    def pop_expired_locks(self, now: float | None = None) -> list[Lock]: ...


def open_shared(cfg: dict[str, Any] | None = None, state_path: str | None = None) -> SharedState:
    """Redis when `[state] url` is set (a fleet), else the local SQLite state database."""
    url = ((cfg or {}).get("state") or {}).get("url")
    if url:
        from .redis import RedisShared  # only fleets need the redis client

        return RedisShared(url)
    return SqliteShared(Store(resolve_path(state_path, cfg)))
