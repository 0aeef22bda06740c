"""Follow log files like `tail -F`, without losing or repeating a line.

Polling (not inotify): a `stat` and a `read` per file every poll interval cost nothing next to
parsing, work on every filesystem (NFS, overlay, bind mounts) and see every kind of rotation:

- rename (logrotate's default, `create`): the path gets a new inode. The old file is read to its
  end first — through the descriptor we hold, even when it has been renamed or deleted — and
  kept open a few seconds (`grace`) for the lines syslog writes to it before it reopens.
- `copytruncate`: the same inode shrinks. The lines we had not read yet were copied into the
  rotated file (`mail.log.1`…): it is found by the hash of the last line we read, and read on
  from our offset before the truncated file is read from its start.
- deleted and recreated: like a rename whose old file has no name any more.

A checkpoint (inode, offset, length and hash of the last line) is taken after the lines handed
out have been processed (see `Checkpoints`); a restart resumes there. If the file was rotated
while we were stopped, the rotated file is found (same inode, or the same last line at the
checkpoint's offset, compressed or not) and finished first.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import logging
import lzma
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..sources.files import CUT, MAX_LINE

log = logging.getLogger("relayguard.watch")

CHUNK = 1 << 20
MAX_BYTES_PER_POLL = 8 << 20  # per file: one huge backlog must not starve the other sources
ROTATED_CANDIDATES = 6  # newest siblings examined when looking for the file we were reading


@dataclass
class Checkpoint:
    """Where a source stopped: a file's inode and offset (with its last line), or a cursor."""

    source: str
    inode: int | None = None
    offset: int = 0
    line_hash: str | None = None  # "LENGTH:HEX" of the line ending at `offset` (newline included)
    cursor: str | None = None


def line_hash(line: bytes) -> str:
    """Length and digest: the length says how many bytes to read back to check it."""
    return f"{len(line)}:{hashlib.blake2b(line, digest_size=16).hexdigest()}"


def _hash_length(h: str | None) -> int:
    if not h or ":" not in h:
        return 0
    try:
        return int(h.split(":", 1)[0])
    except ValueError:
        return 0


def _decode(raw: bytes) -> str:
    # The parser counts undecodable lines as damage; surrogates keep their bytes (as files.py).
    return raw.decode("utf-8", "surrogateescape")


_OPENERS = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}


def _open_any(path: str) -> BinaryIO:
    """A rotated file may have been compressed since (no `delaycompress`): open by content."""
    fh = open(path, "rb")  # noqa: SIM115 — returned
    head = fh.read(6)
    fh.seek(0)
    for magic, opener in _OPENERS.items():
        if head.startswith(magic):
            return opener(fh)  # type: ignore[no-any-return,operator]
    return fh


def _read_at(fh: BinaryIO, offset: int, length: int) -> bytes:
    """`length` bytes at `offset` (a seek forward through a compressed stream decompresses)."""
    if offset < 0:
        return b""
    try:
        fh.seek(offset)
        return fh.read(length)
    except (OSError, EOFError, lzma.LZMAError, ValueError):
        return b""


def _matches_at(fh: BinaryIO, offset: int, h: str | None) -> bool:
    n = _hash_length(h)
    if n <= 0 or n > offset:
        return False
    data = _read_at(fh, offset - n, n)
    return len(data) == n and line_hash(data) == h


class _Cut(bytes):
    """A line longer than MAX_LINE (or its first part, see `_read_fh`)."""


class _Skipped(bytes):
    """The end of a run of bytes of a cut line, skipped."""


def _texts(lines: list[bytes]) -> list[str]:
    """`_read_fh`'s lines as text, without newline; a cut line as in sources.files (CUT)."""
    return [_decode(x[:MAX_LINE]) + CUT if isinstance(x, _Cut) else _decode(x[:-1])
            for x in lines if not isinstance(x, _Skipped)]


@dataclass
class _Draining:
    fh: BinaryIO
    pending: bytes
    grew: float  # monotonic time it last grew


class FileFollower:
    """One followed path. `poll()` returns the complete lines written since the last call."""

    kind = "file"

    def __init__(self, path: str, checkpoint: Checkpoint | None = None, *,
                 grace: float = 5.0, start_at_end: bool = False) -> None:
        self.path = str(path)
        self.name = self.path  # the checkpoint key
        self.grace = grace
        self._fh: BinaryIO | None = None
        self._ident: tuple[int, int] | None = None
        self._pos = 0  # offset just after the last complete line handed out
        self._pending = b""  # a line being written (no newline yet); it starts at _pos
        self._last = b""  # the last complete line handed out, newline included
        self._backlog: list[str] = []  # lines recovered when opening (a file rotated while down)
        self._draining: list[_Draining] = []  # rotated files still open
        self._mtime_ns = 0
        self._head = b""  # the file's first line: a truncated and rewritten file starts otherwise
        self.behind = False  # the last poll stopped at its byte budget: poll again at once
        self.rotations = 0
        self.truncations = 0
        self.lost = 0  # times where we could not find where we stopped (logged as warnings)
        self._open_initial(checkpoint, start_at_end)

    # ------------------------------------------------------------------ opening
    def _stat(self) -> os.stat_result | None:
        try:
            return os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("%s: %s", self.path, exc.strerror)
            return None

    def _open_current(self, offset: int = 0) -> bool:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 — kept open while following
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("%s: cannot open (%s)", self.path, exc.strerror)
            return False
        st = os.fstat(fh.fileno())
        self._fh = fh
        self._ident = (st.st_dev, st.st_ino)
        fh.seek(offset)
        self._pos = offset
        self._pending = b""
        self._last = b""
        self._head = b""
        self._capture_head()
        return True

    def _open_initial(self, cp: Checkpoint | None, start_at_end: bool) -> None:
        st = self._stat()
        if cp is None or cp.inode is None:
            if st is not None and start_at_end:
                self._open_current(st.st_size)
            else:
                self._open_current(0)
            return
        if (st is not None and st.st_ino == cp.inode and st.st_size >= cp.offset
                and (cp.offset == 0 or self._current_matches(cp))):
            self._open_current(cp.offset)
            n = _hash_length(cp.line_hash)
            if self._fh is not None and n:
                self._last = _read_at(self._fh, cp.offset - n, n)
                self._fh.seek(cp.offset)
            return
        # Rotated (or truncated) while we were stopped: finish the file we were reading.
        old = self._find_previous(cp.offset, cp.line_hash, cp.inode, exclude_current=True)
        if old is not None:
            self._backlog = self._read_rest(old, cp.offset)
            log.info("%s: rotated while stopped; finished %s from offset %d (%d lines)",
                     self.path, old, cp.offset, len(self._backlog))
        elif cp.offset:
            self.lost += 1
            log.warning("%s: changed while stopped and the rotated file was not found: lines "
                        "written between the checkpoint and the rotation are not read", self.path)
        self._open_current(0)

    def _current_matches(self, cp: Checkpoint) -> bool:
        try:
            with open(self.path, "rb") as fh:
                return _matches_at(fh, cp.offset, cp.line_hash)
        except OSError:
            return False

    def _siblings(self) -> list[str]:
        """Rotated copies of our path: `mail.log.1`, `mail.log.2.gz`, `mail.log-20260621`…,
        newest first."""
        p = Path(self.path)
        try:
            names = [e for e in os.scandir(p.parent)
                     if e.name != p.name and e.name.startswith(p.name)
                     and e.name[len(p.name):len(p.name) + 1] in (".", "-", "_") and e.is_file()]
        except OSError:
            return []
        dated = []
        for e in names:
            try:
                dated.append((e.stat().st_mtime, e.path))
            except OSError:  # gone since the listing (logrotate at work)
                continue
        dated.sort(reverse=True)
        return [path for _, path in dated[:ROTATED_CANDIDATES]]

    def _find_previous(self, offset: int, h: str | None, inode: int | None,
                       exclude_current: bool = False) -> str | None:
        """The rotated file holding our last line at `offset`: by inode (renamed), else by
        content (copied, or compressed since)."""
        if offset <= 0 or not h:
            return None
        cands = self._siblings()
        for c in cands:  # renamed: same inode, and the line still there
            try:
                st = os.stat(c)
            except OSError:
                continue
            if inode is not None and st.st_ino == inode:
                try:
                    with open(c, "rb") as fh:
                        if _matches_at(fh, offset, h):
                            return c
                except OSError:
                    pass
        for c in cands:
            try:
                with _open_any(c) as fh:
                    if _matches_at(fh, offset, h):
                        return c
            except (OSError, EOFError, lzma.LZMAError):
                continue
        return None

    def _read_rest(self, path: str, offset: int) -> list[str]:
        """Lines of `path` from `offset` to its end (a last line without newline included)."""
        out: list[str] = []
        try:
            with _open_any(path) as fh:
                fh.seek(offset)
                tail = b""
                while True:
                    chunk = fh.read(CHUNK)
                    if not chunk:
                        break
                    parts = (tail + chunk).split(b"\n")
                    tail = parts.pop()
                    out.extend(_decode(x) for x in parts)
                if tail:
                    out.append(_decode(tail))
        except (OSError, EOFError, lzma.LZMAError) as exc:
            log.warning("%s: cannot finish reading (%s)", path, exc)
        return out

    # ------------------------------------------------------------------ reading
    def _read_fh(self, fh: BinaryIO, pending: bytes, budget: int) -> tuple[list[bytes], bytes, int]:
        """Complete lines available on `fh` (within `budget` bytes): (lines with newline, the
        new pending partial line, bytes consumed by the complete lines); `_texts` decodes them.

        A line longer than MAX_LINE is not held: it is handed out as a _Cut (unparsed), its
        rest consumed as _Skipped runs up to its newline, and an empty _Skipped pending says
        the line being read is such a rest. Every item is the file's own bytes ending where
        the consumed bytes end, so offsets and the last line's hash stay exact."""
        lines: list[bytes] = []
        consumed = 0
        read = 0
        while read < budget:
            chunk = fh.read(min(CHUNK, budget - read))
            if not chunk:
                break
            read += len(chunk)
            if isinstance(pending, _Skipped):
                nl = chunk.find(b"\n")
                skip = chunk if nl < 0 else chunk[:nl + 1]
                consumed += len(skip)
                lines.append(_Skipped(skip[-256:]))  # a suffix is enough for the hash
                if nl < 0:
                    continue
                chunk, pending = chunk[nl + 1:], b""
            buf = pending + chunk
            cut = buf.rfind(b"\n")
            block, pending = buf[:cut + 1], buf[cut + 1:]
            if block:
                consumed += len(block)
                parts = block.splitlines(keepends=True)
                if max(map(len, parts)) > MAX_LINE:
                    parts = [_Cut(x) if len(x) > MAX_LINE else x for x in parts]
                lines.extend(parts)
            if len(pending) > MAX_LINE:
                consumed += len(pending)
                lines.append(_Cut(pending))
                pending = _Skipped()
        self.behind = self.behind or read >= budget
        return lines, pending, consumed

    def _read_current(self, out: list[str]) -> None:
        fh = self._fh
        if fh is None:
            return
        lines, self._pending, consumed = self._read_fh(fh, self._pending, MAX_BYTES_PER_POLL)
        if lines:
            self._pos += consumed
            self._last = lines[-1]
            out.extend(_texts(lines))
            if not self._head:
                self._capture_head()

    def _still_ours(self) -> bool:
        """Are the file's first line and our last line still where we left them?
        (`copytruncate` and regrowth past our offset between two polls would otherwise go
        unnoticed, and we would read from the middle of a line.) Two checks, because two
        lines of a log can be identical — a first line starts with its own time stamp."""
        fh = self._fh
        if fh is None:
            return True
        here = fh.tell()
        try:
            if self._head and _read_at(fh, 0, len(self._head)) != self._head:
                return False
            if self._last:
                return _read_at(fh, self._pos - len(self._last), len(self._last)) == self._last
            return True
        finally:
            fh.seek(here)

    def _capture_head(self) -> None:
        """Remember the file's first line (up to 256 bytes) once there is one."""
        fh = self._fh
        if fh is None or self._head:
            return
        here = fh.tell()
        try:
            data = _read_at(fh, 0, 256)
        finally:
            fh.seek(here)
        nl = data.find(b"\n")
        if nl >= 0:
            self._head = data[:nl + 1]
        elif len(data) == 256:
            self._head = data

    def poll(self) -> list[str]:
        """New complete lines, oldest first. Never raises for a missing or rotated file."""
        self.behind = False
        out: list[str] = []
        if self._backlog:
            out.extend(self._backlog)
            self._backlog = []
        self._drain_rotated(out)
        if self._fh is None:
            if self._open_current(0):
                self._read_current(out)
            return out
        st = self._stat()
        if st is not None and self._ident == (st.st_dev, st.st_ino):
            end = self._pos + len(self._pending)
            changed = st.st_mtime_ns != self._mtime_ns
            self._mtime_ns = st.st_mtime_ns
            # Shrunk: truncated. Grown, or rewritten to the very same size: truncated only if
            # our last line is not where we left it.
            if st.st_size < end or ((st.st_size > end or changed) and not self._still_ours()):
                self._truncated(out)
        self._read_current(out)
        if st is None:
            return out  # renamed or deleted, not recreated yet: the old file may still grow
        if self._ident != (st.st_dev, st.st_ino):
            self._rotated(out)
        return out

    def _truncated(self, out: list[str]) -> None:
        """copytruncate: read what we missed from the copy, then the file from its start."""
        self.truncations += 1
        if self._pos:
            old = self._find_previous(self._pos, line_hash(self._last) if self._last else None,
                                      None)
            if old is not None:
                rest = self._read_rest(old, self._pos)
                out.extend(rest)
                log.info("%s: truncated (copytruncate); read %d lines from %s", self.path,
                         len(rest), old)
            elif self._pending:
                out.append(_decode(self._pending))
            else:
                self.lost += 1
                log.warning("%s: truncated and no rotated copy found: lines written just before "
                            "the truncation may be missed", self.path)
        assert self._fh is not None
        self._fh.seek(0)
        self._pos = 0
        self._pending = b""
        self._last = b""
        self._head = b""

    def _rotated(self, out: list[str]) -> None:
        """A new file at our path: finish the old one (and keep it open a little), then start
        the new one from its beginning."""
        self.rotations += 1
        old = self._fh
        assert old is not None
        self._draining.append(_Draining(old, self._pending, time.monotonic()))
        self._fh = None
        self._pending = b""
        if self._open_current(0):
            self._read_current(out)
        log.info("%s: rotated; following the new file", self.path)

    def _drain_rotated(self, out: list[str]) -> None:
        now = time.monotonic()
        keep = []
        for d in self._draining:
            lines, pending, _ = self._read_fh(d.fh, d.pending, MAX_BYTES_PER_POLL)
            out.extend(_texts(lines))
            if lines or pending != d.pending:
                d.pending, d.grew = pending, now
            if now - d.grew >= self.grace:
                if d.pending:  # its writer is gone: a last line without newline is complete
                    out.append(_decode(d.pending))
                d.fh.close()
            else:
                keep.append(d)
        self._draining = keep

    # ------------------------------------------------------------------ state
    def checkpoint(self) -> Checkpoint:
        """Where a restart must resume: after the last line handed out by `poll`."""
        inode = self._ident[1] if self._ident else None
        return Checkpoint(self.name, inode, self._pos,
                          line_hash(self._last) if self._last else None)

    def finish(self) -> list[str]:
        """At shutdown: the lines still readable from rotated files we were draining."""
        out: list[str] = []
        self.grace = 0.0
        self._drain_rotated(out)
        return out

    def close(self) -> None:
        for d in self._draining:
            d.fh.close()
        self._draining = []
        if self._fh is not None:
            self._fh.close()
            self._fh = None
