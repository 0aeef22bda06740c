"""Checkpoints and brute-force counters in the state database, written in one transaction.

Writing where each source stopped together with the failure counts those lines produced keeps
the two consistent: after a crash or a restart, a line is either counted and behind the
checkpoint, or neither — never counted twice, never lost.

A file source's row keeps its current file in `inode`, `offset`, `line_hash` (as older versions
wrote it) and the whole chain of files it is reading — rotated files not finished yet, each with
its device, inode, fingerprint and offset — as JSON in `cursor` (the column a journal cursor
uses; a file source has none), so the schema stays as it is.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterable

from ..state import StateError, Store
from .follow import Checkpoint, FilePos

# Keys in the `counters` table (shared with the policy server, whose keys look like
# "sasl_username:alice|messages|60"): this prefix is ours alone.
FAILURE_PREFIX = "watch:auth_failure:"


_CHAIN = "files:"


def _cursor(cp: Checkpoint) -> str | None:
    if cp.files:
        return _CHAIN + json.dumps([dataclasses.asdict(f) for f in cp.files],
                                   separators=(",", ":"))
    return cp.cursor


class Checkpoints:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def load(self, source: str) -> Checkpoint | None:
        row = self.db.execute("SELECT inode, offset, line_hash, cursor FROM checkpoints "
                              "WHERE source = ?", (source,)).fetchone()
        if row is None:
            return None
        cursor, files = row["cursor"], []
        if cursor and cursor.startswith(_CHAIN):
            try:
                files = [FilePos(**f) for f in json.loads(cursor[len(_CHAIN):])]
            except (ValueError, TypeError):
                files = []  # unreadable: the single-file columns still say where we were
            cursor = None
        return Checkpoint(source, row["inode"], row["offset"] or 0, row["line_hash"],
                          cursor, files)

    def load_failures(self, since: float) -> dict[str, list[float]]:
        """Authentication failures per client address at or after `since` (one timestamp per
        failure, to the second)."""
        out: dict[str, list[float]] = {}
        rows = self.db.execute("SELECT key, bucket, count FROM counters WHERE key >= ? AND key < ? "
                               "AND bucket >= ? ORDER BY bucket",
                               (FAILURE_PREFIX, FAILURE_PREFIX + "\uffff", int(since)))
        for r in rows:
            ip = r["key"][len(FAILURE_PREFIX):]
            out.setdefault(ip, []).extend([float(r["bucket"])] * int(r["count"]))
        return out

    def save(self, checkpoints: Iterable[Checkpoint],
             failures: dict[str, list[float]] | None = None, forget_before: float | None = None) -> None:
        """One transaction: every source's checkpoint, the failure timestamps of the addresses
        in `failures` (replacing what was stored for them), and old counters dropped."""
        now = time.time()
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for cp in checkpoints:
                    self.db.execute(
                        "INSERT INTO checkpoints (source, inode, offset, line_hash, cursor, updated)"
                        " VALUES (?,?,?,?,?,?) ON CONFLICT(source) DO UPDATE SET"
                        " inode=excluded.inode, offset=excluded.offset,"
                        " line_hash=excluded.line_hash, cursor=excluded.cursor,"
                        " updated=excluded.updated",
                        (cp.source, cp.inode, cp.offset, cp.line_hash, _cursor(cp), now))
                for ip, stamps in (failures or {}).items():
                    key = FAILURE_PREFIX + ip
                    self.db.execute("DELETE FROM counters WHERE key = ?", (key,))
                    per_second: dict[int, int] = {}
                    for ts in stamps:
                        per_second[int(ts)] = per_second.get(int(ts), 0) + 1
                    self.db.executemany("INSERT INTO counters (key, bucket, count) VALUES (?,?,?)",
                                        [(key, b, n) for b, n in per_second.items()])
                if forget_before is not None:
                    self.db.execute("DELETE FROM counters WHERE key >= ? AND key < ? AND bucket < ?",
                                    (FAILURE_PREFIX, FAILURE_PREFIX + "\uffff", int(forget_before)))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.store.path}: cannot checkpoint ({exc})") from None
