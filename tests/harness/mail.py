"""Sending helpers: real SMTP sessions (smtplib) from any 127.x.y.z source address.

Every 127.0.0.0/8 address is a distinct client on Linux loopback, so ``source_ip`` lets one test
play many hosts: trusted ones inside ``mynetworks`` and attackers outside it.
"""

from __future__ import annotations

import base64
import itertools
import re
import smtplib
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
_QUEUED = re.compile(r"queued as ([0-9A-Za-z]+)")
_counter = itertools.count(1)


class HasAddress(Protocol):
    @property
    def address(self) -> tuple[str, int]: ...


Target = tuple[str, int] | HasAddress


def _addr(target: Target) -> tuple[str, int]:
    return target if isinstance(target, tuple) else target.address


class AuthError(smtplib.SMTPAuthenticationError):
    """AUTH was refused where the caller expected it to succeed."""


@dataclass
class SendResult:
    """Outcome of one message: which recipients the server took and its final reply."""

    sender: str
    accepted: list[str] = field(default_factory=list)
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    code: int | None = None  # reply to DATA (None when every recipient was refused)
    reply: str = ""
    queue_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.code == 250 and not self.refused


def connect(
    target: Target, source_ip: str = "127.0.0.1", helo: str | None = None, timeout: float = 20
) -> smtplib.SMTP:
    """An SMTP connection from ``source_ip`` that has said EHLO."""
    host, port = _addr(target)
    smtp = smtplib.SMTP(host, port, timeout=timeout, source_address=(source_ip, 0))
    smtp.ehlo(helo or f"client-{source_ip.replace('.', '-')}.example")
    return smtp


def login(
    smtp: smtplib.SMTP, user: str, password: str, mechanism: str = "LOGIN"
) -> tuple[int, str]:
    """Try AUTH with ``mechanism`` (LOGIN or PLAIN); return (code, text) without raising."""
    mech = mechanism.upper()
    if mech == "PLAIN":
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        code, resp = smtp.docmd("AUTH", f"PLAIN {token}")
    elif mech == "LOGIN":
        code, resp = smtp.docmd("AUTH", "LOGIN " + base64.b64encode(user.encode()).decode())
        if code == 334:
            code, resp = smtp.docmd(base64.b64encode(password.encode()).decode())
    else:
        raise ValueError(f"unsupported mechanism {mechanism!r}")
    return code, resp.decode(errors="replace")


def make_message(
    sender: str,
    recipients: Sequence[str],
    *,
    message_id: bool | str = True,
    subject: str | None = None,
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """An RFC 5322 message; ``message_id=False`` leaves the Message-ID header out."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(recipients[:5]) + (", ..." if len(recipients) > 5 else "")
    msg["Date"] = formatdate(localtime=True)
    msg["Subject"] = subject or f"relayguard test message {next(_counter)}"
    if message_id is True:
        msg["Message-ID"] = f"<{uuid.uuid4().hex}@{sender.rpartition('@')[2] or 'localhost'}>"
    elif isinstance(message_id, str):
        msg["Message-ID"] = message_id
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body or "Hello,\n\nthis is a test message.\n")
    return msg.as_bytes()


def send_on(
    smtp: smtplib.SMTP,
    sender: str,
    recipients: Sequence[str],
    **message: Any,
) -> SendResult:
    """Send one message on an open connection; refusals are reported, not raised."""
    result = SendResult(sender=sender)
    code, resp = smtp.mail(sender)
    if code != 250:
        result.code, result.reply = code, resp.decode(errors="replace")
        smtp.rset()
        return result
    for rcpt in recipients:
        code, resp = smtp.rcpt(rcpt)
        if code in (250, 251):
            result.accepted.append(rcpt)
        else:
            result.refused[rcpt] = (code, resp.decode(errors="replace"))
    if not result.accepted:
        smtp.rset()
        return result
    code, resp = smtp.data(make_message(sender, recipients, **message))
    result.code, result.reply = code, resp.decode(errors="replace")
    m = _QUEUED.search(result.reply)
    result.queue_id = m.group(1) if m else None
    return result


def send_mail(
    target: Target,
    *,
    sender: str,
    recipients: Sequence[str],
    source_ip: str = "127.0.0.1",
    user: str | None = None,
    password: str | None = None,
    mechanism: str = "LOGIN",
    count: int = 1,
    helo: str | None = None,
    **message: Any,
) -> list[SendResult]:
    """One SMTP session from ``source_ip``: optional AUTH, then ``count`` messages.

    ``message`` goes to :func:`make_message` (``message_id=False`` for no Message-ID,
    ``subject``, ``body``, ``headers``).  Raises :class:`AuthError` when AUTH is refused.
    """
    smtp = connect(target, source_ip, helo)
    try:
        if user is not None:
            code, text = login(smtp, user, password or "", mechanism)
            if code != 235:
                raise AuthError(code, f"AUTH {mechanism} as {user!r} from {source_ip}: {text}")
        return [send_on(smtp, sender, recipients, **message) for _ in range(count)]
    finally:
        try:
            smtp.quit()
        except smtplib.SMTPException:
            smtp.close()


def try_login(
    target: Target, *, user: str, password: str, source_ip: str, mechanism: str = "LOGIN"
) -> bool:
    """One session that only tries AUTH (e.g. a brute-force attempt); True when accepted."""
    smtp = connect(target, source_ip)
    try:
        code, _ = login(smtp, user, password, mechanism)
        return code == 235
    finally:
        try:
            smtp.quit()
        except smtplib.SMTPException:
            smtp.close()


def run_parallel(calls: Iterable[Callable[[], T]], workers: int = 4) -> list[T]:
    """Run zero-argument callables on ``workers`` threads; results in call order.

    The first exception is re-raised after all calls finished.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(c) for c in calls]
        return [f.result() for f in futures]


def recipients_in(domains: Sequence[str], n: int, local_parts: Sequence[str] = ()) -> list[str]:
    """``n`` addresses spread round-robin over ``domains`` (user1@d1, user2@d2, ...)."""
    parts = list(local_parts) or [f"user{i}" for i in range(1, n + 1)]
    return [f"{parts[i % len(parts)]}@{domains[i % len(domains)]}" for i in range(n)]
