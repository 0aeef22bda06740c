"""`command`: site programs (fail2ban-client, …) run from argv templates, no shell."""

from __future__ import annotations

from ...sanitize import one_line
from ...state.shared import Ban
from ..common import RespondError, check_template, expand, log, run_argv
from .base import Active, remaining


class CommandBackend:
    """Site programs, e.g. fail2ban: `ban_command = ["fail2ban-client", "set", "postfix",
    "banip", "{ip}"]`, `unban_command = [..., "unbanip", "{ip}"]`. Placeholders: `{ip}` (the
    address or network), `{seconds}` (0 for until removed), `{reason}`. No shell."""

    name = "command"
    PLACEHOLDERS = ("ip", "seconds", "reason")

    def __init__(self, ban_command: list[str], unban_command: list[str] | None = None,
                 timeout: float = 30.0) -> None:
        self.ban_command = check_template(ban_command, self.PLACEHOLDERS, "[bruteforce] ban_command")
        self.unban_command = (check_template(unban_command, self.PLACEHOLDERS,
                                             "[bruteforce] unban_command")
                              if unban_command else None)
        self.timeout = timeout

    def _run(self, template: list[str], ban_network: str, seconds: int | None,
             reason: str) -> str | None:
        argv = expand(template, {"ip": ban_network, "seconds": str(seconds or 0),
                                 "reason": one_line(reason)})
        r = run_argv(argv, self.timeout)
        log.info("ban command %s: %s", argv, r.summary())
        return r.error

    def add(self, ban: Ban, active: Active, now: float) -> list[str]:
        err = self._run(self.ban_command, ban.network, remaining(ban, now), ban.reason)
        if err:
            raise RespondError(f"ban command failed: {err}")
        return []

    def remove(self, network: str, active: Active, now: float) -> list[str]:
        if self.unban_command is None:
            return ["no [bruteforce] unban_command: the ban stays in the external tool until it "
                    "expires there"]
        err = self._run(self.unban_command, network, None, "")
        if err:
            raise RespondError(f"unban command failed: {err}")
        return []

    def expire(self, expired: list[Ban], active: Active, now: float) -> list[str]:
        if self.unban_command is None:
            return []
        notes = []
        for b in expired:
            err = self._run(self.unban_command, b.network, None, "")
            if err:
                notes.append(f"unban command for expired {b.network} failed: {err}")
        return notes

    def sync(self, active: Active, now: float) -> list[str]:
        notes = []
        for b in active():
            err = self._run(self.ban_command, b.network, remaining(b, now), b.reason)
            if err:
                notes.append(f"ban command for {b.network} failed: {err}")
        return notes

