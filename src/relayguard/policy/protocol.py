"""The Postfix policy delegation protocol (SMTPD_POLICY_README), both directions.

A request is a block of `name=value` lines, each ended by a newline, the block ended by an
empty line; the answer is one `action=...` line and an empty line. Postfix keeps a connection
open for many requests, one at a time. Facts this module relies on:

- attribute names never contain `=`, NUL or newline; values never contain NUL or newline, so
  a line without `=` or any NUL byte means the peer is not Postfix (or is broken);
- unknown attributes are ignored, and when a name is repeated either value may be kept (we
  keep the last);
- "in case of trouble the policy server must not send a reply": it logs and disconnects, and
  Postfix retries on a new connection. So malformed input closes the connection
  (`ProtocolError`) instead of being answered with a guess.

Everything here works on bytes: one `split` per request and a dict of the attributes, decoded
only when a value is used (Postfix may send UTF-8 or, from old clients, anything at all).
"""

from __future__ import annotations

import re

from ..config import parse_listen  # re-exported: the server and its callers

__all__ = ["DEFAULT_MAX_ATTRIBUTES", "DEFAULT_MAX_REQUEST", "ProtocolError", "RequestReader",
           "answer", "decode", "parse_listen"]

#: A Postfix 3.7 request is about 30 attributes and well under 1 KiB; 8 KiB leaves room for long
#: addresses and TLS certificate attributes while keeping a hostile client's buffer small.
DEFAULT_MAX_REQUEST = 8192
DEFAULT_MAX_ATTRIBUTES = 100

_TERMINATOR = b"\n\n"


class ProtocolError(Exception):
    """The peer sent something that is not a policy request: log it and close the connection."""


class RequestReader:
    """Incremental reader: `feed(bytes)` returns the complete requests received so far.

    Raises `ProtocolError` (and should not be fed again) when a request is larger than
    `max_request` bytes, has more than `max_attributes` lines, or holds a line that is not
    `name=value`. A lone `\\r` before a newline is tolerated (people testing by hand with
    telnet or `nc -C`).
    """

    __slots__ = ("_buf", "max_attributes", "max_request")

    def __init__(self, max_request: int = DEFAULT_MAX_REQUEST,
                 max_attributes: int = DEFAULT_MAX_ATTRIBUTES) -> None:
        self._buf = b""
        self.max_request = max_request
        self.max_attributes = max_attributes

    @property
    def pending(self) -> int:
        """Bytes of an incomplete request waiting for more input."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[dict[bytes, bytes]]:
        if self._buf:
            data = self._buf + data
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        end = data.find(_TERMINATOR)
        if end < 0:
            # A request may start with its blank line only after one attribute; an empty line
            # alone (keep-alive habit of some clients) is skipped rather than kept forever.
            if len(data) > self.max_request:
                raise ProtocolError(f"request larger than {self.max_request} bytes")
            self._buf = data.lstrip(b"\n") if data[:1] == b"\n" else data
            return []
        requests = []
        start = 0
        while end >= 0:
            block = data[start:end]
            start = end + 2
            # Empty lines between requests (e.g. a client ending its block with three newlines)
            # are not requests of their own.
            block = block.lstrip(b"\n")
            if block:
                if len(block) > self.max_request:
                    raise ProtocolError(f"request larger than {self.max_request} bytes")
                requests.append(self._parse(block))
            end = data.find(_TERMINATOR, start)
        rest = data[start:]
        if rest[:1] == b"\n":
            rest = rest.lstrip(b"\n")
        if len(rest) > self.max_request:
            raise ProtocolError(f"request larger than {self.max_request} bytes")
        self._buf = rest
        return requests

    def _parse(self, block: bytes) -> dict[bytes, bytes]:
        if b"\0" in block:
            raise ProtocolError("NUL byte in request")
        lines = block.split(b"\n")
        if len(lines) > self.max_attributes:
            raise ProtocolError(f"more than {self.max_attributes} attributes")
        attrs: dict[bytes, bytes] = {}
        # The plain loop is the fastest of the pure-Python ways tried (dict(map(split)),
        # regex findall): about 4 µs for Postfix's 30 attributes.
        for line in lines:
            name, sep, value = line.partition(b"=")
            if not sep or not name:
                raise ProtocolError(f"not a name=value line: {_show(line)}")
            attrs[name] = value  # a repeated name keeps its last value
        return attrs


def decode(value: bytes | None) -> str:
    """A value as text: UTF-8, and undecodable bytes kept distinct (surrogateescape)."""
    if not value:
        return ""
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return value.decode("utf-8", "surrogateescape")


# What may appear in the text of an answer: it becomes part of an SMTP reply line, so printable
# ASCII only, no newline (that would end the answer early and desynchronise the connection).
_UNSAFE_TEXT = re.compile(r"[^\x20-\x7e]+")
_ACTION = re.compile(r"^[A-Za-z0-9_:.-]+$")
MAX_TEXT = 400


def clean_text(text: str) -> str:
    """Text safe inside an SMTP reply: printable ASCII, one line, at most 400 characters."""
    return _UNSAFE_TEXT.sub(" ", text).strip()[:MAX_TEXT]


def answer(action: str, text: str = "") -> bytes:
    """The reply block for `action` (an access(5) action such as DUNNO or REJECT) and text."""
    if not _ACTION.match(action):
        raise ValueError(f"not an access(5) action: {action!r}")
    text = clean_text(text)
    return f"action={action} {text}\n\n".encode() if text else f"action={action}\n\n".encode()


def _show(line: bytes, limit: int = 60) -> str:
    """A piece of hostile input made safe for one log line."""
    s = repr(line[:limit])
    return s + ("…" if len(line) > limit else "")
