"""Running Postfix's own queue tools (postqueue, postsuper, postcat, postkick, sendmail).

Every command is an argv list handed to `subprocess` — never a shell — so nothing read from the
queue or a log (sender addresses such as `"x;touch /tmp/pwned"@evil.example` included) can be
interpreted as a command. Queue IDs are validated before they reach `postsuper`.
"""

from __future__ import annotations

import os
import re
import subprocess

from ..postfix import programs
from ..postfix.programs import PostfixError

# Short IDs are hexadecimal (microseconds + inode); long IDs (enable_long_queue_ids = yes) use
# Postfix's base-52 alphabet (digits and consonants) with `z` as the separator. Anything else,
# in particular `/`, `.`, `-` or whitespace, is refused before postsuper sees it.
SHORT_ID = re.compile(r"[0-9A-F]{6,32}")
LONG_ID = re.compile(r"[0-9BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz]{10,32}")


class QueueError(PostfixError):
    """A queue operation cannot be done; the message is one line meant for the user."""


def valid_queue_id(qid: str) -> bool:
    """True for a well-formed short (hex) or long (base-52) Postfix queue ID."""
    return bool(SHORT_ID.fullmatch(qid) or LONG_ID.fullmatch(qid))


class PostfixTools:
    """The queue tools of one Postfix instance (`config_dir`; None: the default one), found and
    run by :mod:`relayguard.postfix.programs` (`-c DIR`, `-C DIR` for sendmail). A missing
    program, or one that cannot start or finish in time, raises QueueError."""

    def __init__(self, config_dir: str | os.PathLike[str] | None = None,
                 timeout: float = 600.0) -> None:
        if config_dir is not None:
            try:
                config_dir = programs.check_config_dir(config_dir)
            except PostfixError as exc:
                raise QueueError(str(exc)) from None
        self.config_dir: str | None = config_dir
        self.timeout = timeout

    def run(self, name: str, *args: str, stdin: bytes | None = None,
            timeout: float | None = None) -> programs.Result:
        """Run a tool to completion (judge `returncode` yourself)."""
        try:
            return programs.run(name, *args, config_dir=self.config_dir,
                                timeout=timeout or self.timeout, stdin=stdin)
        except PostfixError as exc:
            raise QueueError(str(exc)) from None

    def popen(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        try:
            return programs.popen(name, *args, config_dir=self.config_dir)
        except PostfixError as exc:
            raise QueueError(str(exc)) from None

    def postconf(self, name: str) -> str:
        """One main.cf parameter's effective value (empty when postconf fails)."""
        try:
            r = self.run("postconf", "-h", name, timeout=30)
        except QueueError:
            return ""
        return r.stdout.strip() if r.ok else ""


def stderr_text(r: programs.Result) -> str:
    """A tool's complaint on one line (for error messages)."""
    return r.complaint()
