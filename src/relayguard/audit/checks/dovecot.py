"""Dovecot (when installed): IMAP/POP passwords must not travel in clear."""

from __future__ import annotations

from collections.abc import Iterable

from .. import dovecot as dovecot_mod
from ..context import ConfigFinding


def check_dovecot(facts: dovecot_mod.DovecotFacts) -> Iterable[ConfigFinding]:
    protos = [p for p in ("imap", "pop3") if p in facts.protocols]
    if not protos:
        return
    clear = [lst for lst in facts.listeners
             if lst.protocol in protos and lst.port and not lst.ssl
             and not dovecot_mod.is_local_address(lst.address)]
    if not clear:
        return
    ports = ", ".join(f"{lst.protocol} {lst.port}" for lst in clear)
    snippet = "\n".join([
        "# /etc/dovecot/conf.d/10-ssl.conf and 10-auth.conf (then: doveadm reload)",
        "ssl = required",
        "disable_plaintext_auth = yes   # Dovecot 2.4: auth_allow_cleartext = no",
        *[line for lst in clear for line in (
            f"service {lst.protocol}-login {{", f"  inet_listener {lst.name} {{",
            "    port = 0", "  }", "}")],
        "# and use imaps 993 / pop3s 995 in the mail clients",
    ])
    if facts.ssl == "no" or facts.cleartext_allowed:
        why = "ssl = no" if facts.ssl == "no" else "plaintext authentication is allowed"
        yield ConfigFinding(
            "plaintext_imap_pop", "high",
            "IMAP/POP passwords can travel in clear",
            f"Dovecot listens on {ports} without TLS and {why}: a user on an open network "
            f"sends the password readable — how the seeds' accounts were stolen.",
            snippet)
    else:
        yield ConfigFinding(
            "imap_pop_plain_ports", "low",
            "unencrypted IMAP/POP ports are open",
            f"Dovecot listens on {ports}; passwords are safe only because TLS is required before "
            f"login (ssl = {facts.ssl}). Close these ports when the clients can use 993/995.",
            snippet)

