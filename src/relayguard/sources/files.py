"""Read log files as raw byte lines, decompressing by magic number (rotated logs keep any name)."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

MAGIC = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open))
SYSTEM_LOGS = ("/var/log/mail.log", "/var/log/maillog")


class InputError(Exception):
    """A source cannot be read; the message is meant for the user, on one line."""


class NothingUnderstood(InputError):
    """The sources were read, but held no Postfix or firewall line (in the time window): see
    inputs.InputSummary. Defined here, compiled, so that it can subclass InputError."""


def open_bytes(path: str) -> BinaryIO:
    """A log file as bytes, decompressed when its first bytes say gzip, bzip2 or xz (`-`: stdin).
    Raises InputError with a message for the user."""
    if path == "-":
        return sys.stdin.buffer
    try:
        fh = open(path, "rb")  # noqa: SIM115 — returned to the caller, closed there
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied (try as root or with group adm)") from None
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from None
    head = fh.peek(6)[:6] if hasattr(fh, "peek") else b""
    for magic, opener in MAGIC:
        if head.startswith(magic):
            return opener(fh)  # type: ignore[return-value]
    return fh


_open = open_bytes
CHUNK = 1 << 20
# Longer lines are cut: no syslog daemon writes one (rsyslog's default limit is 8 KiB, Postfix
# cuts its own at 2 KiB), and a file without newlines must not be held in memory whole.
MAX_LINE = 64 << 10
# What a cut line becomes: its first MAX_LINE characters, then NUL, which no log line holds
# and the parser counts as unparsed (parse.LineParser); the rest of the line is skipped.
CUT = "\0"


def open_lines(path: str) -> Iterator[str]:
    """Yield the lines of one source as text, without their newline. Bytes that are not UTF-8
    arrive as surrogates (the parser counts such lines as unparsed); a line longer than
    MAX_LINE arrives cut (see CUT); a damaged compressed stream ends with InputError. Read by
    the megabyte: splitting a chunk is cheaper than iterating a text file line by line and
    stripping each one. Memory stays within a few chunks, time linear, whatever the input."""
    raw = _open(path)
    fh = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="\n")
    try:
        tail = ""  # the unfinished last line of the chunks so far (at most MAX_LINE)
        skipping = False  # inside a cut line: its rest is dropped up to its newline
        while True:
            chunk = fh.read(CHUNK)
            if not chunk:
                break
            if skipping:
                nl = chunk.find("\n")
                if nl < 0:
                    continue
                chunk = chunk[nl + 1:]
                skipping = False
            lines = (tail + chunk).split("\n")
            tail = lines.pop()
            if max(map(len, lines), default=0) > MAX_LINE:  # one pass in C: cheap
                lines = [x if len(x) <= MAX_LINE else x[:MAX_LINE] + CUT for x in lines]
            yield from lines
            if len(tail) > MAX_LINE:
                yield tail[:MAX_LINE] + CUT
                tail = ""
                skipping = True
        if tail:
            yield tail
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise InputError(f"{path}: damaged or truncated compressed data ({exc})") from None
    finally:
        if raw is sys.stdin.buffer:
            fh.detach()
        else:
            fh.close()


def _rotation_index(path: str) -> int:
    """`mail.log.2.gz` → 2, `mail.log` → 0: higher numbers are older."""
    m = re.search(r"\.(\d+)(?:\.(?:gz|bz2|xz))?$", path)
    return int(m.group(1)) if m else 0


def order_by_time(paths: list[str]) -> list[str]:
    """Oldest first: by rotation number (mail.log.2.gz before mail.log.1 before mail.log), then mtime."""
    def key(p: str) -> tuple[int, float]:
        try:
            mtime = os.stat(p).st_mtime
        except OSError:
            mtime = 0.0
        return (-_rotation_index(p), mtime)
    if "-" in paths:
        return paths
    return sorted(paths, key=key)


def mtime(path: str) -> float | None:
    if path == "-":
        return None
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def default_logs(config_dir: str | None = None) -> list[str]:
    """The system's mail log: Postfix's `maillog_file` (of the instance in `config_dir` when
    given) when set, else the usual syslog files."""
    from ..postfix.postconf import value  # only here: keeps the hot path lean
    from ..postfix.programs import PostfixError

    try:
        out = value("maillog_file", config_dir, expand=False)
    except PostfixError:
        out = ""  # no Postfix here, or no main.cf: the usual syslog files below
    if out and out.startswith("/") and Path(out).exists():
        return [out]
    for p in SYSTEM_LOGS:
        if Path(p).exists():
            return [p]
    raise InputError("no mail log found (/var/log/mail.log, /var/log/maillog, postconf maillog_file): give FILE")
