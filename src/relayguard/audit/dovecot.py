"""Dovecot's effective settings through the real ``doveconf``, for the plaintext IMAP/POP check.

The seeds' third way to lose a password: "a network with an unsecure connection to external
POP3 or IMAP port" — the password crosses the network in clear and is sniffed.  ``doveconf``
(without ``-n``) prints every setting, defaults included, as nested ``section name { key = value }``
blocks; we read the few that decide whether a password can travel unencrypted.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

from ..postfix.programs import find_program


class DoveconfError(Exception):
    """doveconf is missing or refused the configuration (message for the user)."""


@dataclass
class Section:
    kind: str
    name: str
    settings: dict[str, str] = field(default_factory=dict)
    children: list[Section] = field(default_factory=list)

    def find(self, kind: str, name: str | None = None) -> list[Section]:
        return [c for c in self.children if c.kind == kind and (name is None or c.name == name)]


def parse(text: str) -> Section:
    """doveconf's output into a tree of sections (the root holds the global settings)."""
    root = Section("", "")
    stack = [root]
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line == "}":
            if len(stack) > 1:
                stack.pop()
            continue
        if line.endswith("{"):
            head = line[:-1].split(None, 1)
            sec = Section(head[0] if head else "", head[1].strip() if len(head) > 1 else "")
            stack[-1].children.append(sec)
            stack.append(sec)
            continue
        key, sep, value = line.partition("=")
        if sep:
            stack[-1].settings[key.strip()] = value.strip()
    return root


def available() -> bool:
    return find_program("doveconf") is not None


def load(config_file: str | None = None, timeout: float = 30.0) -> Section:
    """``doveconf [-c FILE]``: every effective setting."""
    exe = find_program("doveconf")
    if exe is None:
        raise DoveconfError("doveconf not found (is Dovecot installed?)")
    argv = [exe] + (["-c", config_file] if config_file else [])
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DoveconfError(f"doveconf did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise DoveconfError(f"cannot run doveconf: {exc.strerror}") from None
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise DoveconfError(f"doveconf: {msg.removeprefix('doveconf: ')}")
    return parse(r.stdout)


@dataclass
class Listener:
    protocol: str  # imap | pop3
    name: str
    port: int
    ssl: bool
    address: str


@dataclass
class DovecotFacts:
    version: str
    protocols: list[str]
    ssl: str                 # no | yes | required
    cleartext_allowed: bool  # passwords accepted without TLS from non-local clients
    listeners: list[Listener]


def facts(root: Section, version: str = "") -> DovecotFacts:
    s = root.settings
    # Dovecot 2.3: disable_plaintext_auth (default yes); 2.4: auth_allow_cleartext (default no).
    cleartext = s.get("disable_plaintext_auth", "yes") == "no" or \
        s.get("auth_allow_cleartext", "no") == "yes"
    listeners = []
    for proto in ("imap", "pop3"):
        for svc in root.find("service", f"{proto}-login"):
            for lst in svc.find("inet_listener"):
                try:
                    port = int(lst.settings.get("port", "0") or 0)
                except ValueError:
                    port = 0
                listeners.append(Listener(proto, lst.name, port,
                                          lst.settings.get("ssl", "no") == "yes",
                                          # An empty address means the global `listen`.
                                          lst.settings.get("address", "")
                                          or s.get("listen", "*, ::")))
    return DovecotFacts(version, s.get("protocols", "").split(), s.get("ssl", "yes"),
                        cleartext, listeners)


def is_local_address(address: str) -> bool:
    """A listener bound to loopback only (``address = 127.0.0.1, ::1``)."""
    addrs = [a for a in address.replace(",", " ").split() if a]
    return bool(addrs) and all(a in ("127.0.0.1", "::1", "localhost", "[::1]") for a in addrs)
