"""The state database (SQLite): the audit trail, follow checkpoints, current findings, and —
on one machine — bans, account locks and rate counters. One `Store` object per process; the schema is versioned with `PRAGMA user_version` and
migrated forward on open, so later features add a migration instead of touching old ones.

Path: `--state PATH`, else `$RELAYGUARD_STATE`, else `[state] path` of the configuration, else
/var/lib/relayguard/state.db. WAL mode lets `watch`, `policy serve` and a person's command line
use the database at the same time.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..timefmt import iso

DEFAULT_PATH = "/var/lib/relayguard/state.db"
ENV_VAR = "RELAYGUARD_STATE"
HEARTBEAT = "heartbeat:"

# One entry per schema version; entry N upgrades version N to N+1. Never edit a released entry.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE audit (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        ts          REAL    NOT NULL,            -- unix time of the action
        uid         INTEGER NOT NULL,            -- real uid of the process
        user        TEXT,                        -- its login name
        sudo_user   TEXT,                        -- who ran sudo, when it was sudo
        host        TEXT,
        action      TEXT    NOT NULL,            -- hold, release, requeue, delete, export, restore
        selector    TEXT    NOT NULL DEFAULT '{}',   -- JSON: the selection as given
        matched     INTEGER NOT NULL DEFAULT 0,  -- messages selected
        count       INTEGER NOT NULL DEFAULT 0,  -- messages acted on
        queue_ids   TEXT    NOT NULL DEFAULT '[]',   -- JSON list: the IDs acted on
        gone        TEXT    NOT NULL DEFAULT '[]',   -- JSON list: selected, left before acting
        backup_dir  TEXT,
        config_dir  TEXT,                        -- Postfix instance (NULL: the default one)
        status      TEXT    NOT NULL DEFAULT 'ok',   -- ok, partial, failed
        detail      TEXT,                        -- one line for people
        command     TEXT                         -- JSON argv
    );
    CREATE INDEX audit_ts ON audit(ts);
    CREATE INDEX audit_action ON audit(action, ts);
    """,
    # 1 → 2: what `watch`, `ban`, `lock` and the policy server share on one machine.
    """
    CREATE TABLE bans (
        network     TEXT    PRIMARY KEY,         -- an address or a CIDR network, normalised
        reason      TEXT    NOT NULL DEFAULT '',
        since       REAL    NOT NULL,
        expires     REAL,                        -- NULL: until removed
        backend     TEXT    NOT NULL DEFAULT 'state',
        source      TEXT                         -- who decided: watch, a person, the dashboard
    );
    CREATE INDEX bans_expires ON bans(expires);
    CREATE TABLE locks (
        user        TEXT    PRIMARY KEY,         -- the SASL login, exactly as Postfix logs it
        reason      TEXT    NOT NULL DEFAULT '',
        since       REAL    NOT NULL,
        expires     REAL,
        source      TEXT
    );
    CREATE TABLE checkpoints (
        source      TEXT    PRIMARY KEY,         -- a followed file's path, or "journald"
        inode       INTEGER,
        offset      INTEGER,
        line_hash   TEXT,                        -- hash of the last line read (rotation check)
        cursor      TEXT,                        -- journald cursor
        updated     REAL    NOT NULL
    );
    CREATE TABLE counters (
        key         TEXT    NOT NULL,            -- e.g. "sasl_username:alice|messages|60"
        bucket      INTEGER NOT NULL,            -- start of the sub-window (unix seconds)
        count       INTEGER NOT NULL,
        PRIMARY KEY (key, bucket)
    );
    """,
    # 2 → 3: the findings `watch` currently sees, for the dashboard and `show`.
    """
    CREATE TABLE findings (
        kind        TEXT    NOT NULL,
        subject     TEXT    NOT NULL,
        severity    TEXT    NOT NULL,
        score       INTEGER NOT NULL,
        summary     TEXT    NOT NULL,
        first_seen  REAL,
        last_seen   REAL,
        data        TEXT    NOT NULL DEFAULT '{}',   -- the finding as JSON (evidence, actions)
        updated     REAL    NOT NULL,
        PRIMARY KEY (kind, subject)
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class StateError(Exception):
    """The state database cannot be opened or written; the message is for the user."""


def resolve_path(cli_path: str | None = None, cfg: dict[str, Any] | None = None) -> Path:
    if cli_path:
        return Path(cli_path)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    section = (cfg or {}).get("state") or {}
    # With [state] url (a fleet's Redis), bans, locks and counters are shared there; the audit
    # trail and checkpoints stay in this machine's database, at [state] path.
    return Path(section.get("path") or DEFAULT_PATH)


def whoami() -> dict[str, Any]:
    uid = os.getuid()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(uid)
    return {"uid": uid, "user": user, "sudo_user": os.environ.get("SUDO_USER") or None,
            "host": socket.gethostname()}


class Store:
    """`Store(path)` opens (creating and migrating) the database; use as a context manager."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                # The audit trail names people and addresses: not world-readable.
                # Create it only when missing: opening and closing a file this process already
                # has open through SQLite would drop SQLite's POSIX locks on it (fcntl semantics).
                if not self.path.exists():
                    with contextlib.suppress(FileExistsError):
                        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA busy_timeout = 30000")
            if str(self.path) != ":memory:":
                self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = FULL")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise StateError(f"state database {self.path}: {why} "
                             f"(use --state PATH or ${ENV_VAR})") from None

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(f"state database {self.path} has schema {version}, newer than this "
                             f"relayguard understands ({SCHEMA_VERSION}): upgrade relayguard")
        for n in range(version, SCHEMA_VERSION):
            # BEGIN IMMEDIATE: two processes opening a fresh database migrate one at a time.
            self.db.execute("BEGIN IMMEDIATE")
            try:
                current = self.db.execute("PRAGMA user_version").fetchone()[0]
                if current == n:
                    for stmt in _statements(MIGRATIONS[n]):
                        self.db.execute(stmt)
                    self.db.execute(f"PRAGMA user_version = {n + 1}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    @property
    def journal_mode(self) -> str:
        return str(self.db.execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------- audit trail
    def record(self, action: str, *, selector: dict[str, Any] | None = None, matched: int = 0,
               queue_ids: Iterable[str] = (), gone: Iterable[str] = (),
               backup_dir: str | os.PathLike[str] | None = None,
               config_dir: str | None = None, status: str = "ok", detail: str | None = None,
               command: list[str] | None = None, ts: float | None = None) -> int:
        """Append one audit entry; returns its id."""
        who = whoami()
        ids = list(queue_ids)
        try:
            cur = self.db.execute(
                "INSERT INTO audit (ts, uid, user, sudo_user, host, action, selector, matched,"
                " count, queue_ids, gone, backup_dir, config_dir, status, detail, command)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time() if ts is None else ts, who["uid"], who["user"], who["sudo_user"],
                 who["host"], action, json.dumps(selector or {}, ensure_ascii=False), matched,
                 len(ids), json.dumps(ids), json.dumps(list(gone)),
                 None if backup_dir is None else str(backup_dir), config_dir, status, detail,
                 None if command is None else json.dumps(command, ensure_ascii=False)))
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: cannot record ({exc})") from None
        return int(cur.lastrowid or 0)

    def update_audit(self, entry_id: int, *, status: str, detail: str | None = None,
                     queue_ids: Iterable[str] | None = None, gone: Iterable[str] | None = None,
                     matched: int | None = None,
                     backup_dir: str | os.PathLike[str] | None = None) -> None:
        """Fill in the outcome of an entry written before its change (state/audit_trail.py)."""
        sets: dict[str, Any] = {"status": status, "detail": detail}
        if queue_ids is not None:
            ids = list(queue_ids)
            sets |= {"queue_ids": json.dumps(ids), "count": len(ids)}
        if gone is not None:
            sets["gone"] = json.dumps(list(gone))
        if matched is not None:
            sets["matched"] = matched
        if backup_dir is not None:
            sets["backup_dir"] = str(backup_dir)
        try:
            self.db.execute(f"UPDATE audit SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",  # noqa: S608 — fixed column names
                            [*sets.values(), entry_id])
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: cannot record ({exc})") from None

    def discard_audit(self, entry_id: int, status: str) -> None:
        """Drop an entry still at `status` (a change begun that turned out to be none)."""
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("DELETE FROM audit WHERE id = ? AND status = ?", (entry_id, status))

    # ----------------------------------------------------------------------- findings
    def save_finding(self, finding: dict[str, Any], first_seen: float | None = None,
                     last_seen: float | None = None, now: float | None = None) -> None:
        """Insert or refresh one finding (`Finding.to_dict()`), keyed by kind and subject."""
        self.db.execute(
            "INSERT INTO findings (kind, subject, severity, score, summary, first_seen, last_seen,"
            " data, updated) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(kind, subject) DO UPDATE SET"
            " severity=excluded.severity, score=excluded.score, summary=excluded.summary,"
            " first_seen=COALESCE(findings.first_seen, excluded.first_seen),"
            " last_seen=excluded.last_seen, data=excluded.data, updated=excluded.updated",
            (finding["kind"], finding["subject"], finding["severity"], int(finding["score"]),
             finding["summary"], first_seen, last_seen, json.dumps(finding, ensure_ascii=False),
             time.time() if now is None else now))

    def findings(self, since: float | None = None) -> list[dict[str, Any]]:
        """Stored findings, worst first; `since`: only those updated since then."""
        rows = self.db.execute("SELECT data, updated FROM findings WHERE updated >= ? "
                               "ORDER BY score DESC, kind, subject", (since or 0,))
        out = []
        for r in rows:
            d = json.loads(r["data"])
            d["updated"] = iso(r["updated"], "seconds")
            out.append(d)
        return out

    # ----------------------------------------------------------------------- heartbeats
    # A daemon's "I am alive" lives in the checkpoints table (source "heartbeat:NAME", the
    # details as JSON in `cursor`): one small upsert, no schema change.
    def beat(self, name: str, info: dict[str, Any], now: float | None = None) -> None:
        try:
            self.db.execute(
                "INSERT INTO checkpoints (source, cursor, updated) VALUES (?,?,?)"
                " ON CONFLICT(source) DO UPDATE SET cursor=excluded.cursor,"
                " updated=excluded.updated",
                (HEARTBEAT + name, json.dumps(info), time.time() if now is None else now))
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: cannot record ({exc})") from None

    def heartbeat(self, name: str) -> tuple[float, dict[str, Any]] | None:
        """(time of the last beat, its details), None when the daemon never beat or stopped."""
        row = self.db.execute("SELECT cursor, updated FROM checkpoints WHERE source = ?",
                              (HEARTBEAT + name,)).fetchone()
        if row is None:
            return None
        try:
            info = json.loads(row["cursor"] or "{}")
        except ValueError:
            info = {}
        return float(row["updated"]), info

    def stop_beating(self, name: str) -> None:
        """A clean stop: no heartbeat left behind to look fresh."""
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("DELETE FROM checkpoints WHERE source = ?", (HEARTBEAT + name,))

    def history(self, limit: int | None = 50, action: str | None = None,
                since: float | None = None) -> list[dict[str, Any]]:
        """Newest first."""
        sql = "SELECT * FROM audit"
        where: list[str] = []
        args: list[Any] = []
        if action:
            where.append("action = ?")
            args.append(action)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return [_row(r) for r in self.db.execute(sql, args)]


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip() and not _only_comments(s)]


def _only_comments(s: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith("--") for ln in s.splitlines())


def _row(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    d["when"] = iso(d["ts"], "seconds")
    for k in ("selector", "queue_ids", "gone", "command"):
        if d.get(k) is not None:
            with contextlib.suppress(ValueError):
                d[k] = json.loads(d[k])
    return d
