"""What bans, locks and hooks share: errors, durations, configuration sections, and argv
templates run without a shell (map files and `postfix reload` are
:mod:`relayguard.postfix.maps`'s).

Safety: a value that came from a log (a login, an address, a reason) only ever becomes one
element of an argv list or one sanitised line of a map; nothing reaches a shell.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import duration as config_duration
from ..postfix.programs import find_program
from ..sanitize import one_line

log = logging.getLogger("relayguard.respond")

PLACEHOLDER = re.compile(r"\{(\w*)\}")
OUTPUT_LIMIT = 4000  # bytes of a command's output kept for the log and the audit trail
SYSTEM_POSTFIX_DIR = "/etc/postfix"


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


def config_section(cfg: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """The `[name]` table of the configuration (a copy; empty when absent)."""
    return dict((cfg or {}).get(name) or {})


def postfix_config_dir(cfg: Mapping[str, Any] | None, override: str | None = None) -> str | None:
    """The Postfix instance (`postfix -c DIR`): --config-dir, else [respond] postfix_config_dir."""
    value = override or config_section(cfg, "respond").get("postfix_config_dir") or None
    return str(value) if value else None


def in_instance(path: str, default: str, config_dir: str | None) -> str:
    """The shipped default map path (`/etc/postfix/NAME`) follows the Postfix instance: with
    postfix_config_dir (or --config-dir) naming another instance, the map lives beside that
    instance's main.cf. A path the configuration names explicitly is kept as it is."""
    if config_dir and path == default and str(Path(config_dir)) != SYSTEM_POSTFIX_DIR:
        return str(Path(config_dir) / Path(default).name)
    return path


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
