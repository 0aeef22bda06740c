"""Finding and running Postfix's programs: the one lookup and the one runner.

Postfix installs its administrative tools in sbin, which is often not on a user's (or sudo's,
or a service's) PATH, so the lookup tries PATH first — the test suite puts its guard shims
there — then the usual sbin directories. Every program runs from an argv list, never through
a shell, with a timeout, and with ``-c DIR`` whenever a config directory is given (``-C`` for
sendmail), so a private instance is never confused with the system's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/lib/postfix/sbin")
INSTALL_HINT = "is Postfix installed? (apt-get install postfix)"
#: Programs whose config-directory option is not ``-c``.
CONFIG_FLAG = {"sendmail": "-C"}


class PostfixError(Exception):
    """A Postfix program is missing, failed to start, timed out or refused; one line for people."""


def find_program(name: str) -> str | None:
    """The path of ``name``: PATH first, then the sbin directories (None: not installed)."""
    found = shutil.which(name)
    if found:
        return found
    for d in SBIN_DIRS:
        p = Path(d, name)
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def require(name: str, hint: str = INSTALL_HINT) -> str:
    """The path of ``name``, or PostfixError saying how to get it."""
    path = find_program(name)
    if path is None:
        raise PostfixError(f"{name} not found: {hint}")
    return path


def check_config_dir(config_dir: str | os.PathLike[str], option: str = "--config-dir") -> str:
    """``config_dir`` as a string, or PostfixError when it holds no main.cf."""
    d = Path(config_dir)
    if not (d / "main.cf").is_file():
        raise PostfixError(f"{option} {d}: no main.cf there (a Postfix config_directory?)")
    return str(d)


def require_instance(config_dir: str | os.PathLike[str] | None) -> str:
    """The configuration directory Postfix's tools would use (``config_dir``, else MAIL_CONFIG,
    else /etc/postfix), or PostfixError when it holds no main.cf: a fresh ``apt-get install
    postfix`` answered "No configuration" has none, and writing maps there helps nobody."""
    d = Path(config_dir or os.environ.get("MAIL_CONFIG") or "/etc/postfix")
    if not (d / "main.cf").is_file():
        raise PostfixError(f"no Postfix configuration: {d}/main.cf does not exist (is Postfix "
                           "configured? or set [respond] postfix_config_dir)")
    return str(d)


def argv(name: str, *args: str, config_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """``[path, -c DIR, *args]`` for a Postfix program (no -c without a config dir)."""
    out = [require(name)]
    if config_dir is not None and str(config_dir):
        out += [CONFIG_FLAG.get(name, "-c"), str(config_dir)]
    return out + list(args)


@dataclass
class Result:
    """What a program did: exit status and its output (decoded on demand, errors replaced)."""

    argv: list[str]
    returncode: int
    raw_stdout: bytes = b""
    raw_stderr: bytes = b""

    @cached_property
    def stdout(self) -> str:
        return self.raw_stdout.decode("utf-8", "replace")

    @cached_property
    def stderr(self) -> str:
        return self.raw_stderr.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def fatal(self) -> bool:
        """Postfix tools may print ``fatal:`` and still exit 0 (postmap on some errors)."""
        return any("fatal:" in ln for ln in self.stderr.splitlines())

    def complaint(self) -> str:
        """The program's complaint on one line: its last fatal line, else its last line."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        fatal = [ln for ln in lines if "fatal:" in ln]
        return (fatal or lines or [f"exit status {self.returncode}"])[-1]

    def warnings(self) -> list[str]:
        return [ln.strip() for ln in self.stderr.splitlines() if "warning:" in ln]


def run(name: str, *args: str, config_dir: str | os.PathLike[str] | None = None,
        timeout: float = 60.0, stdin: bytes | None = None) -> Result:
    """Run a Postfix program to completion. Raises PostfixError when it is missing, cannot be
    started or does not finish in ``timeout`` seconds (then its process group is killed: a
    script such as ``postfix`` may have children holding the pipes); a non-zero exit is the
    caller's to judge (``Result.ok``, ``Result.complaint()``)."""
    cmd = argv(name, *args, config_dir=config_dir)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None
                                else subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise PostfixError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=5)
        raise PostfixError(f"{name} did not finish in {timeout:g}s") from None
    return Result(cmd, proc.returncode, out, err)


def popen(name: str, *args: str, config_dir: str | os.PathLike[str] | None = None
          ) -> subprocess.Popen[bytes]:
    """Start a Postfix program whose output is read as it comes (``postqueue -j``)."""
    cmd = argv(name, *args, config_dir=config_dir)
    try:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    except OSError as exc:
        raise PostfixError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None
