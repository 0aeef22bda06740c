"""The open-relay probe: an SMTP dialogue up to ``RCPT TO`` an outside domain, never ``DATA``.

A server that answers ``250`` to ``RCPT TO:<someone@outside>`` from a client that did not log in
would relay that client's mail: that is all an open-relay test needs to know.  Stopping before
``DATA`` means no message is ever created — nothing reaches the queue, nothing is delivered,
no third party receives a test message — and ``RSET`` + ``QUIT`` end the session cleanly.

Run it from the address whose trust you want to test (``--source``): from inside mynetworks a
``250`` is expected (trusted relaying), from outside it means an open relay.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_MAIL_FROM = "relayguard-probe@example.com"
DEFAULT_RCPT_TO = "relayguard-probe@example.net"
#: Replies to RCPT TO that say "relaying refused", even when they are 4xx
#: (``defer_unauth_destination``: ``454 4.7.1 <x>: Relay access denied``).
RELAY_DENIED = ("relay access denied", "relaying denied", "relay not permitted",
                "unable to relay", "relaying not allowed", "not permitted to relay")


class ProbeError(Exception):
    """The probe could not talk to the server at all (connection refused, bad source address)."""


@dataclass
class ProbeResult:
    host: str
    port: int
    source: str | None
    mail_from: str
    rcpt_to: str
    #: ``open`` (RCPT accepted), ``closed`` (refused), ``inconclusive`` (temporary failure or
    #: the dialogue broke before RCPT TO was answered).
    verdict: str
    reason: str
    reply: str | None = None  # the reply to RCPT TO (or the reply that ended the dialogue)
    tls: bool = False
    transcript: list[str] = field(default_factory=list)

    @property
    def open_relay(self) -> bool:
        return self.verdict == "open"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["open_relay"] = self.open_relay
        return d


class _Transcript(smtplib.SMTP):
    """smtplib with every command and reply written down (``C:``/``S:`` lines)."""

    def __init__(self, log: list[str], **kw: Any) -> None:
        self.log = log
        super().__init__(**kw)

    def putcmd(self, cmd: str, args: str = "") -> None:
        # smtplib sends AUTH secrets through here too; the probe never authenticates.
        self.log.append(f"C: {cmd.upper()} {args}".rstrip())
        super().putcmd(cmd, args)

    def getreply(self) -> tuple[int, bytes]:
        code, msg = super().getreply()
        lines = msg.decode("utf-8", "replace").splitlines() or [""]
        for i, line in enumerate(lines):
            sep = "-" if i < len(lines) - 1 else " "
            self.log.append(f"S: {code}{sep}{line}".rstrip())
        return code, msg


class _TranscriptSSL(_Transcript, smtplib.SMTP_SSL):
    pass


def _helo_name() -> str:
    # gethostname() only: getfqdn() would ask DNS, and a probe must not talk to anyone else.
    name = socket.gethostname()
    return name if "." in name and not name.startswith("localhost") else "relayguard-probe.invalid"


def _text(msg: bytes) -> str:
    return msg.decode("utf-8", "replace").replace("\n", " ")


def probe_relay(host: str, port: int = 25, *, source: str | None = None,
                mail_from: str = DEFAULT_MAIL_FROM, rcpt_to: str = DEFAULT_RCPT_TO,
                helo: str | None = None, timeout: float = 15.0, tls: str = "auto"
                ) -> ProbeResult:
    """Ask ``host:port`` to accept ``rcpt_to`` for ``mail_from``, from ``source``.

    ``tls``: ``auto`` (implicit TLS on 465, STARTTLS when offered — as a spammer's software
    would), ``starttls`` (required), ``implicit``, or ``none``.  Certificates are not verified:
    the probe asks what the server would do, not whom it talks to.  Raises :class:`ProbeError`
    when no SMTP session can be had.
    """
    log: list[str] = []
    result = ProbeResult(host, port, source, mail_from, rcpt_to, "inconclusive", "", None,
                         False, log)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    implicit = tls == "implicit" or (tls == "auto" and port == 465)
    kw: dict[str, Any] = {"timeout": timeout,
                          "source_address": (source, 0) if source else None,
                          "local_hostname": helo or _helo_name()}
    log.append(f"-- connecting to {host}:{port}" + (f" from {source}" if source else ""))
    cls = _TranscriptSSL if implicit else _Transcript
    try:
        # Connecting in the constructor also tells smtplib the host name that STARTTLS needs.
        smtp = cls(log, host=host, port=port, **kw)
    except smtplib.SMTPConnectError as exc:
        # A banner other than 220 (554 "no SMTP service here", 421 "too busy").
        result.verdict = _by_code(exc.smtp_code)
        result.reason = "the server refused the session"
        result.reply = f"{exc.smtp_code} {_text(exc.smtp_error)}"
        return result
    except (OSError, smtplib.SMTPException) as exc:
        raise ProbeError(f"cannot connect to {host}:{port}"
                         + (f" from {source}" if source else "") + f": {_reason(exc)}") from None
    result.tls = implicit
    try:
        code, msg = smtp.ehlo()
        if code != 250:
            code, msg = smtp.helo()
            if code != 250:
                return _end(result, smtp, code, msg, _by_code(code), "HELO was refused")
        if not implicit and tls != "none" and smtp.has_extn("starttls"):
            code, msg = smtp.starttls(context=ctx)
            if code != 220:
                return _end(result, smtp, code, msg, "inconclusive", "STARTTLS failed")
            result.tls = True
            smtp.ehlo()
        elif tls == "starttls" and not implicit:
            return _end(result, smtp, None, b"", "inconclusive",
                        "the server does not offer STARTTLS")
        code, msg = smtp.mail(mail_from)
        if code != 250:
            return _end(result, smtp, code, msg, _by_code(code), "MAIL FROM was refused")
        code, msg = smtp.rcpt(rcpt_to)
        text = _text(msg)
        if 200 <= code < 300:
            verdict, why = "open", f"the server accepted a recipient at an outside domain " \
                                   f"({rcpt_to}) from this client without authentication"
        elif code >= 500 or any(s in text.lower() for s in RELAY_DENIED):
            verdict, why = "closed", "the server refused the outside recipient"
        else:
            verdict, why = "inconclusive", "temporary failure at RCPT TO (greylisting, a " \
                                           "policy service, a DNS lookup): try again later"
        # Never DATA: end the transaction and the session.
        return _end(result, smtp, code, msg, verdict, why)
    except smtplib.SMTPServerDisconnected as exc:
        result.verdict, result.reason = "inconclusive", f"the server hung up: {_reason(exc)}"
        return result
    except (OSError, smtplib.SMTPException) as exc:
        result.verdict, result.reason = "inconclusive", f"dialogue failed: {_reason(exc)}"
        _close(smtp)
        return result


def _by_code(code: int) -> str:
    return "closed" if code >= 500 else "inconclusive"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _end(result: ProbeResult, smtp: smtplib.SMTP, code: int | None, msg: bytes, verdict: str,
         reason: str) -> ProbeResult:
    result.verdict, result.reason = verdict, reason
    if code is not None:
        result.reply = f"{code} {_text(msg)}".strip()
    with contextlib.suppress(OSError, smtplib.SMTPException):
        smtp.rset()
    _close(smtp)
    return result


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()
