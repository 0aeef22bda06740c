"""Map files Postfix reads: written atomically, indexed aside, reloaded at a bounded rate.

* :func:`atomic_write` — a temporary file in the same directory, fsync, rename: a daemon that
  opens the map sees the old file or the new one, never half of one.
* :func:`build_aside` — for indexed types (``hash:``, ``btree:``, ``cdb:``, ``lmdb:``), the
  source is written under a temporary name, ``postmap -c DIR`` builds its index there, and both
  are renamed over the live files: smtpd never opens a half-built ``.db``.
* :class:`Reloader` — ``postfix reload`` for maps read into memory (``cidr:``, ``texthash:``),
  at most once per interval, shared by every relayguard process through a locked state file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import programs
from .programs import PostfixError

log = logging.getLogger("relayguard.postfix")

#: The file ``postmap`` builds beside the source, per indexed type.
INDEX_SUFFIX: dict[str, str] = {"hash": ".db", "btree": ".db", "lmdb": ".lmdb", "cdb": ".cdb"}


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: some file systems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _like(path: Path, original: Path, mode: int | None) -> None:
    """Give ``path`` the mode (and, when allowed, owner) of ``original``; 0644 for a new file."""
    if mode is None and original.exists():
        st = original.stat()
        os.chmod(path, st.st_mode & 0o7777)
        with contextlib.suppress(PermissionError):
            os.chown(path, st.st_uid, st.st_gid)
    else:
        os.chmod(path, 0o644 if mode is None else mode)


@contextlib.contextmanager
def _aside(path: Path, data: bytes, mode: int | None) -> Iterator[Path]:
    """A fsynced copy of ``data`` beside ``path`` (same directory: rename stays atomic),
    removed on the way out unless the caller renamed it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.relayguard-", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _like(tmp, path, mode)
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write(path: Path, data: bytes | str, mode: int | None = None) -> None:
    """Replace ``path`` in one step. ``mode`` None keeps the existing file's mode and owner
    (0644 for a new file)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with _aside(path, raw, mode) as tmp:
        os.replace(tmp, path)
    fsync_dir(path.parent)


def build_aside(kind: str, path: Path, data: bytes | str, *, config_dir: str | None = None,
                timeout: float = 60.0, mode: int | None = None) -> None:
    """Write the source of an indexed map and its index (``postmap -c DIR kind:tmp``) beside
    the live ones, then rename both into place. PostfixError when postmap fails (the live files
    are left as they were)."""
    suffix = INDEX_SUFFIX[kind]
    raw = data.encode("utf-8") if isinstance(data, str) else data
    live_index = path.with_name(path.name + suffix)
    with _aside(path, raw, mode) as tmp:
        built = Path(str(tmp) + suffix)
        try:
            r = programs.run("postmap", f"{kind}:{tmp}", config_dir=config_dir, timeout=timeout)
            if not r.ok or r.fatal:
                raise PostfixError(f"postmap {kind}:{path}: {r.complaint()}")
            _like(built, live_index, mode)
            os.replace(built, live_index)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                built.unlink()
    fsync_dir(path.parent)


@dataclass
class Reloader:
    """`postfix reload`, at most once per `interval` seconds for one Postfix instance.

    Maps Postfix reads into memory (`cidr:`, `texthash:`) need a reload to take effect, and a
    reload restarts every daemon — costly, and a brute-force storm can ban many addresses a
    second. So a change that comes within `interval` of the last reload is marked pending and
    applied by the next call to `flush()` after the interval (watch calls it through
    `Banner.expire()` every few seconds; `relayguard ban sync` does it too).

    The bookkeeping lives in `<state_dir>/.relayguard-reload.json`, shared by every relayguard
    process on the machine and guarded by flock, so `watch` and a person's command count
    against the same limit.
    """

    state_dir: Path
    config_dir: str | None = None
    interval: float = 30.0
    timeout: float = 60.0
    warnings: list[str] = field(default_factory=list)

    @property
    def state_file(self) -> Path:
        return self.state_dir / ".relayguard-reload.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """The shared bookkeeping, locked for the duration (also serialises map rewrites).
        PostfixError, before anything is written, when the instance has no main.cf."""
        programs.require_instance(self.config_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_file, os.O_RDWR | os.O_CREAT, 0o644)
        with os.fdopen(fd, "r+", encoding="utf-8") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                try:
                    st = json.loads(fh.read() or "{}")
                except ValueError:
                    st = {}
                st.setdefault("last", 0.0)
                st.setdefault("pending", [])
                before = json.dumps(st, sort_keys=True)
                yield st
                after = json.dumps(st, sort_keys=True)
                if after != before:
                    fh.seek(0)
                    fh.truncate()
                    fh.write(after)
                    fh.flush()
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def changed(self, st: dict[str, Any], what: str, now: float) -> str | None:
        """Call with the bookkeeping from `locked()` after rewriting map `what`. Reloads now when
        allowed; returns a note for people when the reload was postponed or failed."""
        if what not in st["pending"]:
            st["pending"].append(what)
        return self.maybe_reload(st, now)

    def flush(self, now: float) -> str | None:
        """Apply a postponed reload when its time has come (a note when it cannot be)."""
        try:
            with self.locked() as st:
                return self.maybe_reload(st, now) if st["pending"] else None
        except PostfixError as exc:
            return str(exc)

    def maybe_reload(self, st: dict[str, Any], now: float) -> str | None:
        """Reload if the interval allows (call inside `locked()`); a note when postponed."""
        wait = st["last"] + self.interval - now
        if wait > 0:
            return (f"postfix reload postponed {wait:.0f}s (at most one per {self.interval:g}s): "
                    "applied then by `relayguard watch`, or run `relayguard ban sync`")
        note = self.reload()
        st["last"] = now
        st["pending"] = []  # a failed reload is not retried in a loop: the note says what to do
        return note

    def reload(self) -> str | None:
        try:
            r = programs.run("postfix", "reload", config_dir=self.config_dir,
                             timeout=self.timeout)
        except PostfixError as exc:
            return f"{exc}: the map is written, reload Postfix yourself"
        if r.ok:
            log.info("postfix reload%s", f" -c {self.config_dir}" if self.config_dir else "")
            return None
        if "not running" in r.stdout + r.stderr:
            return None  # Postfix reads the map when it starts
        return (f"postfix reload failed (postfix exited {r.returncode}: {r.complaint()}): "
                "the map is written, reload Postfix yourself")
