"""What bans, locks and hooks share: errors, durations, argv templates run without a shell,
atomic file replacement, and a rate-limited `postfix reload`.

Safety: a value that came from a log (a login, an address, a reason) only ever becomes one
element of an argv list or one sanitised line of a map; nothing reaches a shell.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import duration as config_duration
from ..queue.tools import find_tool

log = logging.getLogger("relayguard.respond")

PLACEHOLDER = re.compile(r"\{(\w*)\}")
OUTPUT_LIMIT = 4000  # bytes of a command's output kept for the log and the audit trail


class RespondError(Exception):
    """A response cannot be carried out; the message is one line meant for the user."""


class Refused(RespondError):
    """A response that relayguard will not carry out by policy (allowlisted network, …)."""


def duration(value: Any, what: str) -> float:
    """Seconds from a config value: a number of seconds, or "90s", "20m", "2h", "1d"."""
    try:
        return config_duration(value)
    except ValueError as exc:
        raise RespondError(f"{what}: {exc}") from None


def one_line(text: str, limit: int = 200) -> str:
    """A single printable line: for map comments and audit details (log data can hold anything)."""
    flat = "".join(c if c.isprintable() else " " for c in str(text))
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def find_program(name: str) -> str | None:
    """PATH first, then the sbin directories (often not on a service's or a user's PATH)."""
    return find_tool(name)


# ------------------------------------------------------------------------- argv templates

def check_template(template: Any, names: Sequence[str], what: str) -> list[str]:
    """Validate an argv template from the configuration: a non-empty list of strings whose
    placeholders are among `names`. Raises RespondError naming the setting."""
    if (not isinstance(template, list | tuple) or not template
            or not all(isinstance(a, str) for a in template)):
        raise RespondError(f"{what}: an argv list of strings is needed, e.g. "
                           f'["fail2ban-client", "set", "postfix", "banip", "{{ip}}"] (no shell)')
    for arg in template:
        for name in PLACEHOLDER.findall(arg):
            if name not in names:
                raise RespondError(f"{what}: unknown placeholder {{{name}}} "
                                   f"(known: {', '.join('{' + n + '}' for n in names)})")
    return list(template)


def expand(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Each placeholder is replaced inside its own argument: a value never splits into several
    arguments and is never parsed (no str.format, no shell)."""
    return [PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), arg) for arg in template]


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int | None  # None: could not start, or killed on timeout
    output: str = ""        # stdout and stderr, truncated
    error: str | None = None  # why it failed, one line (None: exit 0)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> str:
        if self.ok:
            return "exit 0"
        return self.error or "failed"

    def to_dict(self) -> dict[str, Any]:
        return {"argv": self.argv, "returncode": self.returncode, "ok": self.ok,
                "error": self.error, "output": self.output, "seconds": round(self.seconds, 3)}


def run_argv(argv: Sequence[str], timeout: float, stdin: bytes | None = None,
             env: Mapping[str, str] | None = None) -> CommandResult:
    """Run a program (argv list, no shell) with a timeout; never raises. The program gets its
    own process group so that on timeout its children are killed too (a hook that forks would
    otherwise keep the pipes open and hang us)."""
    argv = [str(a) for a in argv]
    start = time.monotonic()
    prog = argv[0]
    if "/" not in prog:
        prog = find_program(prog) or prog
    try:
        proc = subprocess.Popen([prog, *argv[1:]], stdin=subprocess.PIPE if stdin is not None
                                else subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=None if env is None else {**os.environ, **env})
    except OSError as exc:
        return CommandResult(argv, None, "", f"cannot run {argv[0]}: {exc.strerror or exc}",
                             time.monotonic() - start)
    try:
        out, _ = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            out, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            out = b""
        text = out.decode("utf-8", "replace")[-OUTPUT_LIMIT:]
        return CommandResult(argv, None, text, f"{argv[0]} did not finish in {timeout:g}s (killed)",
                             time.monotonic() - start)
    text = out.decode("utf-8", "replace")
    if len(text) > OUTPUT_LIMIT:
        text = text[:OUTPUT_LIMIT] + "…"
    err = None
    if proc.returncode != 0:
        last = [ln for ln in text.strip().splitlines() if ln.strip()]
        err = f"{argv[0]} exited {proc.returncode}" + (f": {one_line(last[-1])}" if last else "")
    return CommandResult(argv, proc.returncode, text, err, time.monotonic() - start)


# ------------------------------------------------------------------------------ files

def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` in one step (temporary file in the same directory, fsync, rename): Postfix
    never reads a half-written map."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
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


# ------------------------------------------------------------------ postfix reload

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
        """The shared bookkeeping, locked for the duration (also serialises map rewrites)."""
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
        """Apply a postponed reload when its time has come."""
        with self.locked() as st:
            return self.maybe_reload(st, now) if st["pending"] else None

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
        postfix = find_program("postfix")
        if postfix is None:
            return "postfix not found: the map is written, reload Postfix yourself"
        argv = [postfix] + (["-c", self.config_dir] if self.config_dir else []) + ["reload"]
        r = run_argv(argv, self.timeout)
        if r.ok:
            log.info("postfix reload%s", f" -c {self.config_dir}" if self.config_dir else "")
            return None
        if "not running" in r.output:
            return None  # Postfix reads the map when it starts
        return f"postfix reload failed ({r.error}): the map is written, reload Postfix yourself"
