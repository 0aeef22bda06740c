"""Test harness: a private Postfix instance, a fake internet and SMTP sending helpers.

See :mod:`harness.postfix`, :mod:`harness.internet` and :mod:`harness.mail`.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .internet import ACCEPT, BLOCKLIST, DEFER, REJECT, FakeInternet, Received
from .mail import (
    AuthError,
    SendResult,
    connect,
    login,
    make_message,
    recipients_in,
    run_parallel,
    send_mail,
    send_on,
    try_login,
)
from .postfix import (
    DEFAULT_USERS,
    INSTALL_HINT,
    LogWindow,
    PostfixError,
    PostfixInstance,
    free_port,
    missing_requirements,
    reap_stale_instances,
)

__all__ = [
    "PostfixCase",
    "ACCEPT",
    "BLOCKLIST",
    "DEFAULT_USERS",
    "DEFER",
    "INSTALL_HINT",
    "REJECT",
    "AuthError",
    "FakeInternet",
    "LogWindow",
    "PostfixError",
    "PostfixInstance",
    "Received",
    "SendResult",
    "connect",
    "free_port",
    "login",
    "make_message",
    "missing_requirements",
    "reap_stale_instances",
    "recipients_in",
    "run_parallel",
    "send_mail",
    "send_on",
    "try_login",
]


@dataclass
class PostfixCase:
    """What a test gets from the ``postfix`` fixture: the shared instance, the fake internet
    (reset to "accept everything"), an empty queue, and a window on the log lines written
    since the test began."""

    instance: PostfixInstance
    internet: FakeInternet
    window: LogWindow
    tmp_path: Path

    @property
    def address(self) -> tuple[str, int]:
        return self.instance.address

    @property
    def domain(self) -> str:
        return self.instance.domain

    def send(self, **kwargs: Any) -> list[SendResult]:
        """:func:`harness.mail.send_mail` against the instance."""
        return send_mail(self.instance, **kwargs)

    def try_login(self, **kwargs: Any) -> bool:
        """:func:`harness.mail.try_login` against the instance."""
        return try_login(self.instance, **kwargs)

    def settle(self, timeout: float = 30.0, allow: tuple[str, ...] = ("deferred", "hold")):
        """Wait until only ``allow``-ed queues hold mail and the log is written; the queue."""
        return self.instance.wait_queue_settled(timeout, allow)

    def lines(self) -> list[str]:
        """Log lines written since the test began."""
        return self.window.lines()

    def save_log(self, name: str = "maillog") -> Path:
        """Copy the log lines written since the test began into ``tmp_path / name``."""
        return self.window.save(self.tmp_path / name)
