"""Follow log files like `tail -F`, without losing or repeating a line.

Polling (not inotify): a `stat` and a `read` per file every poll interval cost nothing next to
parsing, work on every filesystem (NFS, overlay, bind mounts) and see every kind of rotation:

- rename (logrotate's default, `create`): the path gets a new inode. The old file stays open and
  is read to its end — through the descriptor we hold, even when it has been renamed, compressed
  and deleted — and kept open a few seconds (`grace`) more for the lines syslog writes to it
  before it reopens. Until then it stays in the checkpoint.
- `copytruncate`: the same inode shrinks. The lines we had not read yet were copied into the
  rotated file (`mail.log.1`…): it is found by its first bytes, and read on from our offset.
- deleted and recreated: like a rename whose old file has no name any more.

A file is named by its device and inode and by a fingerprint of its first bytes (an inode is
reused once its file is deleted; a compressed copy has another inode but the same first bytes).
The checkpoint is the chain of files a source is reading — rotated files not finished yet,
oldest first, then the current one — each with its offset (see `Checkpoints`). A restart finds
every file of the chain among `mail.log.1`, `mail.log.2.gz`… (compressed or not), and every file
rotated after them, and reads them in order; what it cannot find is said, in bytes.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import logging
import lzma
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..sources.files import CUT, MAX_LINE, InputError, open_bytes, order_by_time

log = logging.getLogger("relayguard.watch")

CHUNK = 1 << 20
MAX_BYTES_PER_POLL = 8 << 20  # per file: one huge backlog must not starve the other sources
HEAD_BYTES = 1024  # the fingerprint: first bytes of a file (its first lines carry time stamps)
MAX_SIBLINGS = 100  # rotated files examined at start (a year of weekly logs)
_READ_ERRORS = (OSError, EOFError, lzma.LZMAError, ValueError, InputError)


@dataclass
class FilePos:
    """One file of a source's chain and how far it was read."""

    dev: int | None
    ino: int | None
    offset: int
    line_hash: str | None = None  # of the line ending at `offset`
    head: str | None = None  # fingerprint: line_hash() of the file's first min(offset, 1 KiB) bytes
    size: int = 0  # its size when saved: what a lost file held at least
    lines: int = 0  # lines read from it so far (across restarts)
    name: str = ""  # the name it was read under


@dataclass
class Checkpoint:
    """Where a source stopped: a chain of files (oldest first, the current file last; `inode`,
    `offset`, `line_hash` repeat the current file's), or a journal cursor."""

    source: str
    inode: int | None = None
    offset: int = 0
    line_hash: str | None = None  # "LENGTH:HEX" of the line ending at `offset` (newline included)
    cursor: str | None = None
    files: list[FilePos] = field(default_factory=list)


def line_hash(line: bytes) -> str:
    """Length and digest: the length says how many bytes to read back to check it."""
    return f"{len(line)}:{hashlib.blake2b(line, digest_size=16).hexdigest()}"


def fingerprint(head: bytes) -> str:
    """A short name for a file, from its first bytes (the same across renames and compression)."""
    return line_hash(head)[:20] if head else "empty"


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


class _Cut(bytes):
    """A line longer than MAX_LINE (or its first part, see `_File.read`)."""


class _Skipped(bytes):
    """The end of a run of bytes of a cut line, skipped (a suffix: enough for the hash)."""


def _texts(lines: list[bytes]) -> list[str]:
    """`_File.read`'s lines as text, without newline; a cut line as in sources.files (CUT)."""
    return [_decode(x[:MAX_LINE]) + CUT if isinstance(x, _Cut) else _decode(x[:-1])
            for x in lines if not isinstance(x, _Skipped)]


def _compressed(fh: BinaryIO) -> bool:
    return isinstance(fh, gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile)


def _read_at(fh: BinaryIO, offset: int, length: int) -> bytes:
    """`length` bytes at `offset`; a plain file is read with pread (its position stays), a
    compressed one by seeking (forward through a compressed stream decompresses)."""
    if offset < 0:
        return b""
    try:
        if not _compressed(fh):
            return os.pread(fh.fileno(), length, offset)
        fh.seek(offset)
        return fh.read(length)
    except _READ_ERRORS:
        return b""


def _matches_at(fh: BinaryIO, offset: int, h: str | None) -> bool:
    n = _hash_length(h)
    if n <= 0 or n > offset:
        return False
    data = _read_at(fh, offset - n, n)
    return len(data) == n and line_hash(data) == h


class _File:
    """An open file of the chain: where its next line starts, its first bytes, its last line."""

    def __init__(self, fh: BinaryIO, name: str, offset: int = 0, lines: int = 0) -> None:
        st = os.fstat(fh.fileno())
        self.fh = fh
        self.name = name
        self.ident = (st.st_dev, st.st_ino)
        self.compressed = _compressed(fh)
        self.pos = offset  # just after the last complete line handed out
        self.pending = b""  # a line being written (no newline yet); it starts at pos
        self.last = b""  # the last complete line handed out, newline included
        self.head = b""  # the first min(pos, HEAD_BYTES) bytes
        self.lines = lines
        self.grew = time.monotonic()
        if self.compressed:  # read its head now: a compressed stream does not seek back cheaply;
            self.head = _read_at(fh, 0, HEAD_BYTES)  # and it is complete: all of it counts
        else:
            self.update_head()
        fh.seek(offset)

    def update_head(self) -> None:
        want = min(self.pos, HEAD_BYTES)
        if len(self.head) < want and not self.compressed:
            self.head = _read_at(self.fh, 0, want)

    def position(self) -> FilePos:
        self.update_head()
        try:
            size = os.fstat(self.fh.fileno()).st_size
        except OSError:
            size = 0
        return FilePos(self.ident[0], self.ident[1], self.pos,
                       line_hash(self.last) if self.last else None,
                       line_hash(self.head) if self.head else None,
                       max(size, self.pos), self.lines, self.name)

    def read(self, budget: int | None) -> tuple[list[bytes], bool]:
        """Complete lines now available (within `budget` bytes, None: to the end); True when
        the budget stopped it. `_texts` decodes them.

        A line longer than MAX_LINE is not held: it is handed out as a _Cut (unparsed), its
        rest consumed as _Skipped runs up to its newline, and an empty _Skipped pending says
        the line being read is such a rest. Every item is the file's own bytes ending where
        the consumed bytes end, so offsets and the last line's hash stay exact."""
        lines: list[bytes] = []
        read = 0
        while budget is None or read < budget:
            try:
                chunk = self.fh.read(CHUNK if budget is None else min(CHUNK, budget - read))
            except _READ_ERRORS as exc:
                log.warning("%s: cannot read on (%s)", self.name, exc)
                break
            if not chunk:
                break
            read += len(chunk)
            if isinstance(self.pending, _Skipped):
                nl = chunk.find(b"\n")
                skip = chunk if nl < 0 else chunk[:nl + 1]
                self.pos += len(skip)
                lines.append(_Skipped(skip[-256:]))
                if nl < 0:
                    continue
                chunk, self.pending = chunk[nl + 1:], b""
            buf = self.pending + chunk
            cut = buf.rfind(b"\n")
            block, self.pending = buf[:cut + 1], buf[cut + 1:]
            if block:
                self.pos += len(block)
                parts = block.splitlines(keepends=True)
                if max(map(len, parts)) > MAX_LINE:
                    parts = [_Cut(x) if len(x) > MAX_LINE else x for x in parts]
                lines.extend(parts)
            if len(self.pending) > MAX_LINE:
                self.pos += len(self.pending)
                lines.append(_Cut(self.pending))
                self.pending = _Skipped()
        if lines:
            self.last = lines[-1]
            self.lines += sum(1 for x in lines if not isinstance(x, _Skipped))
            self.update_head()
        return lines, budget is not None and read >= budget

    def close(self) -> None:
        _close(self.fh)


def _close(fh: BinaryIO) -> None:
    """A decompressing reader does not close the file it was given: both are closed."""
    raw = getattr(fh, "fileobj", None) or getattr(fh, "_fp", None)
    fh.close()
    if raw is not None:
        raw.close()


class _Candidate:
    """A file found at start (the path or a rotated sibling), opened lazily."""

    def __init__(self, path: str) -> None:
        self.path = path
        st = os.stat(path)
        self.ident = (st.st_dev, st.st_ino)
        self.plain = True
        self.first = b""
        try:
            fh = open_bytes(path)
        except _READ_ERRORS:
            return
        try:
            self.plain = not _compressed(fh)
            self.first = fh.read(HEAD_BYTES)
        except _READ_ERRORS:
            pass
        finally:
            _close(fh)

    def matches(self, fp: FilePos) -> bool:
        n = _hash_length(fp.head)
        if n:
            return len(self.first) >= n and line_hash(self.first[:n]) == fp.head
        if not fp.offset:  # an empty file when saved: only its inode names it
            return self.plain and fp.ino == self.ident[1] and fp.dev in (None, self.ident[0])
        # A checkpoint of an older version (no fingerprint): our last line at our offset.
        try:
            fh = open_bytes(self.path)
        except _READ_ERRORS:
            return False
        try:
            return _matches_at(fh, fp.offset, fp.line_hash)
        finally:
            _close(fh)


def _copies(cands: list[_Candidate], found: dict[int, FilePos], current: str) -> set[int]:
    """Candidates that are a second copy of another one's file, not to be read twice:
    copytruncate's copy before the truncation, a `.2.gz` still being written from `.1` (its
    first bytes a prefix of the other's). The one kept: the followed path, else the one the
    checkpoint names, else the uncompressed one."""
    def rank(i: int) -> tuple[bool, bool, bool, int]:
        c = cands[i]
        return (c.path == current, i in found, c.plain, len(c.first))

    skip: set[int] = set()
    for i, c in enumerate(cands):
        for j, o in enumerate(cands):
            if i == j or j in skip:
                continue
            if c.plain:
                same = bool(c.first) and o.first == c.first
            else:
                same = o.plain and o.first.startswith(c.first)
            if same and rank(j) > rank(i):
                skip.add(i)
                break
    return skip


class FileFollower:
    """One followed path. `poll()` returns the complete lines written since the last call."""

    kind = "file"

    def __init__(self, path: str, checkpoint: Checkpoint | None = None, *,
                 grace: float = 5.0, start_at_end: bool = False) -> None:
        self.path = str(path)
        self.name = self.path  # the checkpoint key
        self.grace = grace
        self._cur: _File | None = None
        self._draining: list[_File] = []  # rotated files not finished yet, oldest first
        self._mtime_ns = 0
        self._counts: dict[str, int] = {}  # lines per file name, not yet taken by the daemon
        self.run_counts: dict[str, int] = {}  # lines per file name since start
        self.behind = False  # the last poll stopped at its byte budget: poll again at once
        self.dirty = False  # the chain changed since the last checkpoint (a file finished)
        self.rotations = 0
        self.truncations = 0
        self.lost = 0  # times where we could not find where we stopped (logged as warnings)
        self._closed: Checkpoint | None = None  # where we were when closed
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

    def _open(self, path: str, offset: int = 0, lines: int = 0) -> _File | None:
        try:
            fh = open_bytes(path)
        except InputError as exc:
            if os.path.exists(path):
                log.warning("%s", exc)
            return None
        return _File(fh, self.path if path == self.path else path, offset, lines)

    def _open_current(self, offset: int = 0, lines: int = 0) -> bool:
        self._cur = self._open(self.path, offset, lines)
        return self._cur is not None

    def _open_initial(self, cp: Checkpoint | None, start_at_end: bool) -> None:
        if cp is None or (cp.inode is None and not cp.files):
            st = self._stat()
            self._open_current(st.st_size if st is not None and start_at_end else 0)
            return
        chain = cp.files or [FilePos(None, cp.inode, cp.offset, cp.line_hash)]
        cands = []
        for p in [*order_by_time(self._siblings()), self.path]:
            try:
                cands.append(_Candidate(p))
            except OSError:
                continue  # gone since the listing (logrotate at work)
        # Each file of the chain to the one candidate holding it (its own inode preferred).
        found: dict[int, FilePos] = {}
        for fp in chain:
            hits = [i for i, c in enumerate(cands) if i not in found and c.matches(fp)]
            if not hits:
                self._gap(fp)
                continue
            own = [i for i in hits if cands[i].ident[1] == fp.ino and cands[i].plain
                   and fp.dev in (None, cands[i].ident[0])]
            found[(own or hits)[-1]] = fp
        copies = _copies(cands, found, self.path)
        if not found:
            self._open_current(0)
            return
        first = min(found)
        for i in range(first, len(cands)):
            if i in copies:
                continue
            c = cands[i]
            at = found.get(i)
            offset, lines = (at.offset, at.lines) if at is not None else (0, 0)
            f = self._open(c.path, offset, lines)
            if f is None:
                continue
            n = _hash_length(at.line_hash) if at is not None else 0
            if n and not f.compressed:  # our last line: regrowth past it is then seen
                f.last = _read_at(f.fh, offset - n, n)
            if c.path == self.path:
                self._cur = f
                continue
            self._draining.append(f)
            log.info("%s: %s %s from byte %d", self.path,
                     "reading on" if at is not None else "rotated while stopped; reading",
                     c.path, offset)

    def _gap(self, fp: FilePos) -> None:
        """The file a checkpoint points to is nowhere: say what is lost."""
        self.lost += 1
        unread = max(fp.size - fp.offset, 0)
        log.warning("%s: the file the checkpoint points to (%s, inode %s, read to byte %d) was "
                    "not found: at least %d bytes of it are not read, and whatever was written to "
                    "it after that", self.path, fp.name or self.path, fp.ino, fp.offset, unread)

    def _siblings(self) -> list[str]:
        """Rotated copies of our path: `mail.log.1`, `mail.log.2.gz`, `mail.log-20260621`…"""
        p = Path(self.path)
        try:
            names = [e.path for e in os.scandir(p.parent)
                     if e.name != p.name and e.name.startswith(p.name)
                     and e.name[len(p.name):len(p.name) + 1] in (".", "-", "_") and e.is_file()]
        except OSError:
            return []
        return order_by_time(names)[-MAX_SIBLINGS:]

    def _find_copy(self, cur: _File) -> str | None:
        """copytruncate's copy of the file we were reading: its first bytes are ours, and it is
        at least as long as what we read."""
        if not cur.head:
            return None
        want = FilePos(None, None, cur.pos, None, line_hash(cur.head))
        for path in reversed(self._siblings()):  # newest first
            try:
                c = _Candidate(path)
            except OSError:
                continue
            if c.matches(want):
                return path
        return None

    # ------------------------------------------------------------------ reading
    def _take(self, f: _File, out: list[str], budget: int | None) -> bool:
        lines, stopped = f.read(budget)
        if lines:
            texts = _texts(lines)
            out.extend(texts)
            self._count(f.name, len(texts))
            f.grew = time.monotonic()
        return stopped

    def _count(self, name: str, n: int) -> None:
        self._counts[name] = self._counts.get(name, 0) + n
        self.run_counts[name] = self.run_counts.get(name, 0) + n

    def take_counts(self) -> dict[str, int]:
        """Lines per file name read since the last call (for the metrics)."""
        out, self._counts = self._counts, {}
        return out

    def _still_ours(self, cur: _File) -> bool:
        """Are the file's first bytes and our last line still where we left them?
        (`copytruncate` and regrowth past our offset between two polls would otherwise go
        unnoticed, and we would read from the middle of a line.)"""
        if cur.head and _read_at(cur.fh, 0, len(cur.head)) != cur.head:
            return False
        if cur.last:
            return _read_at(cur.fh, cur.pos - len(cur.last), len(cur.last)) == cur.last
        return True

    def poll(self) -> list[str]:
        """New complete lines, oldest first. Never raises for a missing or rotated file."""
        self.behind = False
        out: list[str] = []
        self._drain(out, MAX_BYTES_PER_POLL)
        if self._cur is None:
            if self._open_current(0):
                self.behind = self._take(self._cur, out, MAX_BYTES_PER_POLL)  # type: ignore[arg-type]
            return out
        cur = self._cur
        st = self._stat()
        if st is not None and cur.ident == (st.st_dev, st.st_ino):
            end = cur.pos + len(cur.pending)
            changed = st.st_mtime_ns != self._mtime_ns
            self._mtime_ns = st.st_mtime_ns
            # Shrunk: truncated. Grown, or rewritten to the very same size: truncated only if
            # our last line is not where we left it.
            if st.st_size < end or ((st.st_size > end or changed) and not self._still_ours(cur)):
                self._truncated(cur, out)
        self.behind = self._take(cur, out, MAX_BYTES_PER_POLL) or self.behind
        if st is None:
            return out  # renamed or deleted, not recreated yet: the old file may still grow
        if cur.ident != (st.st_dev, st.st_ino):
            self._rotated(cur, out)
        return out

    def _truncated(self, cur: _File, out: list[str]) -> None:
        """copytruncate: read what we missed from the copy (kept in the chain until read to its
        end), then the file from its start."""
        self.truncations += 1
        if cur.pos:
            copy = self._find_copy(cur)
            f = self._open(copy, cur.pos) if copy is not None else None
            if f is not None:
                f.last, f.lines = cur.last, cur.lines  # one file: what we read of it counts
                self._draining.append(f)
                self.behind = self._take(f, out, MAX_BYTES_PER_POLL) or self.behind
                log.info("%s: truncated (copytruncate); reading on in %s from byte %d",
                         self.path, copy, cur.pos)
            elif cur.pending:
                out.append(_decode(cur.pending))
                self._count(cur.name, 1)
            else:
                self.lost += 1
                log.warning("%s: truncated and its copy was not found: lines written after byte "
                            "%d, before the truncation, are not read", self.path, cur.pos)
        cur.fh.seek(0)
        cur.pos = 0
        cur.pending = b""
        cur.last = b""
        cur.head = b""
        cur.lines = 0

    def _rotated(self, cur: _File, out: list[str]) -> None:
        """A new file at our path: the old one joins the files being drained (it stays in the
        checkpoint until read to its end), the new one is read from its beginning."""
        self.rotations += 1
        cur.grew = time.monotonic()
        self._draining.append(cur)
        self._cur = None
        if self._open_current(0):
            self.behind = self._take(self._cur, out, MAX_BYTES_PER_POLL) or self.behind  # type: ignore[arg-type]
        log.info("%s: rotated; following the new file", self.path)

    def _drain(self, out: list[str], budget: int | None) -> None:
        """Read the rotated files; one that has been silent for `grace` seconds at its end is
        finished (a compressed one at once: nobody writes to it)."""
        now = time.monotonic()
        keep = []
        for f in self._draining:
            stopped = self._take(f, out, budget)
            self.behind = self.behind or stopped
            if not stopped and (f.compressed or now - f.grew >= self.grace):
                if f.pending:  # its writer is gone: a last line without newline is complete
                    out.append(_decode(f.pending))
                    f.lines += 1
                    self._count(f.name, 1)
                log.info("%s: finished %s (inode %d, file %s): %d lines read", self.path,
                         f.name, f.ident[1], fingerprint(f.head), f.lines)
                f.close()
                self.dirty = True
            else:
                keep.append(f)
        self._draining = keep

    # ------------------------------------------------------------------ state
    def checkpoint(self) -> Checkpoint:
        """Where a restart must resume: after the last line handed out by `poll`, in every file
        not finished yet."""
        self.dirty = False
        if self._closed is not None:
            return self._closed
        files = [f.position() for f in self._draining]
        if self._cur is not None:
            files.append(self._cur.position())
        if not files:
            return Checkpoint(self.name)
        last = files[-1]
        return Checkpoint(self.name, last.ino, last.offset, last.line_hash, files=files)

    def finish(self) -> list[str]:
        """At shutdown: the rotated files read to their end, whatever their size. They stay in
        the checkpoint (syslog may still write to one); a restart reads on and finishes them."""
        out: list[str] = []
        for f in self._draining:
            self._take(f, out, None)
        return out

    def close(self) -> None:
        if self._closed is None:  # a checkpoint asked for after close still says where we were
            self._closed = self.checkpoint()
        if self.run_counts:
            log.info("%s: lines read: %s", self.path,
                     ", ".join(f"{name} {n}" for name, n in self.run_counts.items()))
        for f in self._draining:
            f.close()
        self._draining = []
        if self._cur is not None:
            self._cur.close()
            self._cur = None

