"""The fake internet: one aiosmtpd server on loopback standing for every remote MTA.

The private Postfix uses it as ``relayhost``, so every message for a non-local domain ends up
here.  A test switches its behaviour at run time, globally or per recipient domain::

    net.set_mode("defer")                                  # 451 for every recipient
    net.set_mode("blocklist")                              # 554 ... blocked using zen.spamhaus.org
    net.set_mode("reject", domains=["victim.example"])    # 550 only for that domain
    net.reset()                                            # accept everything, forget mail

Replies are given at RCPT TO (like most real refusals), so Postfix logs them as
``status=deferred (host 127.0.0.1[127.0.0.1] said: 451 4.7.1 ... (in reply to RCPT TO command))``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller

from .postfix import free_port

ACCEPT = "accept"
DEFER = "defer"
REJECT = "reject"
BLOCKLIST = "blocklist"
MODES = (ACCEPT, DEFER, REJECT, BLOCKLIST)

#: The public address the remote sites "see" for our server (TEST-NET-2, RFC 5737).
PUBLIC_IP = "198.51.100.25"


def default_replies(public_ip: str = PUBLIC_IP) -> dict[str, str]:
    return {
        ACCEPT: "250 2.1.5 Ok",
        DEFER: "451 4.7.1 Try again later: too many messages from your server",
        REJECT: "550 5.7.1 Message rejected as spam",
        BLOCKLIST: (
            f"554 5.7.1 Service unavailable; Client host [{public_ip}] blocked using "
            f"zen.spamhaus.org; https://www.spamhaus.org/query/ip/{public_ip}"
        ),
    }


@dataclass
class Received:
    """One message the fake internet accepted."""

    peer: str
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


@dataclass
class _Rule:
    mode: str
    reply: str | None = None


@dataclass
class _State:
    default: _Rule = field(default_factory=lambda: _Rule(ACCEPT))
    domains: dict[str, _Rule] = field(default_factory=dict)


class _Handler:
    def __init__(self, net: FakeInternet) -> None:
        self.net = net

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        reply = self.net.reply_for(address)
        with self.net._lock:
            self.net.attempts.append((address, reply))
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        msg = Received(
            peer=str(session.peer[0]) if session.peer else "",
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(envelope.original_content or envelope.content or b""),
        )
        with self.net._lock:
            self.net.received.append(msg)
            n = len(self.net.received)
        return f"250 2.0.0 Ok: queued as FAKE{n:06d}"


class FakeInternet:
    """An SMTP sink on ``127.0.0.1:<free port>`` whose answers a test controls."""

    def __init__(
        self, host: str = "127.0.0.1", port: int | None = None, public_ip: str = PUBLIC_IP
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.public_ip = public_ip
        self.replies = default_replies(public_ip)
        self.received: list[Received] = []
        self.attempts: list[tuple[str, str]] = []  # (recipient, reply) for every RCPT TO
        self._lock = threading.Lock()
        self._state = _State()
        self._controller: Controller | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def start(self) -> FakeInternet:
        self._controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            server_hostname="mx.fake-internet.example",
            ident="FakeInternet",
            data_size_limit=0,
            ready_timeout=10.0,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> FakeInternet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- control
    def set_mode(
        self, mode: str, *, reply: str | None = None, domains: Iterable[str] | None = None
    ) -> None:
        """Answer recipients with ``mode`` (accept, defer, reject, blocklist).

        ``reply`` overrides the SMTP reply text (code included); ``domains`` limits the rule to
        recipients in those domains (the rest keep the default rule).
        """
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        rule = _Rule(mode, reply)
        with self._lock:
            if domains is None:
                self._state.default = rule
            else:
                for d in domains:
                    self._state.domains[d.lower()] = rule

    def reset(self) -> None:
        """Accept everything again and forget what was received."""
        with self._lock:
            self._state = _State()
            self.received.clear()
            self.attempts.clear()

    def reply_for(self, address: str) -> str:
        domain = address.rpartition("@")[2].strip(">").lower()
        with self._lock:
            rule = self._state.domains.get(domain, self._state.default)
        return rule.reply or self.replies[rule.mode]

    def recipients(self) -> list[str]:
        """Every recipient of every accepted message, in order of arrival."""
        with self._lock:
            return [r for m in self.received for r in m.rcpt_tos]
