"""Running Postfix's own queue tools (postqueue, postsuper, postcat, postkick, sendmail).

Every command is an argv list handed to `subprocess` — never a shell — so nothing read from the
queue or a log (sender addresses such as `"x;touch /tmp/pwned"@evil.example` included) can be
interpreted as a command. Queue IDs are validated before they reach `postsuper`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

# Postfix installs its administrative tools in sbin, which is often not on a user's PATH.
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/lib/postfix/sbin")

# Short IDs are hexadecimal (microseconds + inode); long IDs (enable_long_queue_ids = yes) use
# Postfix's base-52 alphabet (digits and consonants) with `z` as the separator. Anything else,
# in particular `/`, `.`, `-` or whitespace, is refused before postsuper sees it.
SHORT_ID = re.compile(r"[0-9A-F]{6,32}")
LONG_ID = re.compile(r"[0-9BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz]{10,32}")


class QueueError(Exception):
    """A queue operation cannot be done; the message is one line meant for the user."""


def valid_queue_id(qid: str) -> bool:
    """True for a well-formed short (hex) or long (base-52) Postfix queue ID."""
    return bool(SHORT_ID.fullmatch(qid) or LONG_ID.fullmatch(qid))


def find_tool(name: str) -> str | None:
    """The path of a Postfix program: PATH first, then the usual sbin directories."""
    found = shutil.which(name)
    if found:
        return found
    for d in SBIN_DIRS:
        p = Path(d, name)
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


class PostfixTools:
    """Argv builders and runners for one Postfix instance (`config_dir`; None: the default one).

    `postqueue`, `postsuper`, `postcat`, `postkick` and `postconf` get `-c DIR`; `sendmail`
    gets `-C DIR`. Missing programs raise QueueError with an installation hint.
    """

    def __init__(self, config_dir: str | os.PathLike[str] | None = None,
                 timeout: float = 600.0) -> None:
        if config_dir is not None:
            d = Path(config_dir)
            if not (d / "main.cf").is_file():
                raise QueueError(f"--config-dir {d}: no main.cf there (a Postfix config_directory?)")
            config_dir = str(d)
        self.config_dir: str | None = config_dir
        self.timeout = timeout
        self._paths: dict[str, str] = {}

    def path(self, name: str) -> str:
        if name not in self._paths:
            found = find_tool(name)
            if found is None:
                raise QueueError(f"{name} not found: is Postfix installed? (apt-get install postfix)")
            self._paths[name] = found
        return self._paths[name]

    def argv(self, name: str, *args: str) -> list[str]:
        argv = [self.path(name)]
        if self.config_dir is not None:
            argv += ["-C" if name == "sendmail" else "-c", self.config_dir]
        argv += list(args)
        return argv

    def run(self, name: str, *args: str, stdin: bytes | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run a tool to completion; OSError and timeouts become QueueError."""
        argv = self.argv(name, *args)
        try:
            return subprocess.run(argv, input=stdin, capture_output=True,
                                  timeout=timeout or self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise QueueError(f"{name} did not finish in {timeout or self.timeout:g}s") from None
        except OSError as exc:
            raise QueueError(f"cannot run {argv[0]}: {exc.strerror}") from None

    def popen(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        argv = self.argv(name, *args)
        try:
            return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            raise QueueError(f"cannot run {argv[0]}: {exc.strerror}") from None

    def postconf(self, name: str) -> str:
        """One main.cf parameter's effective value (empty when postconf fails)."""
        try:
            r = self.run("postconf", "-h", name, timeout=30)
        except QueueError:
            return ""
        return r.stdout.decode("utf-8", "replace").strip() if r.returncode == 0 else ""


def stderr_text(r: subprocess.CompletedProcess[bytes]) -> str:
    """A tool's complaint on one line (for error messages)."""
    text = r.stderr.decode("utf-8", "replace").strip().splitlines()
    fatal = [ln for ln in text if "fatal:" in ln]
    return (fatal or text or [f"exit status {r.returncode}"])[-1]
