"""The click commands ``audit``, ``probe-relay``, ``dnsbl`` and ``password-check``.

Wired into the main group by ``relayguard.cli`` (``main.add_command``).  Text output is for
people (rich), ``--format json`` for machines.  Exit codes follow the project's contract: 0
clean, 1 something to act on (high/critical findings, open relay, listed, weak password), 2 usage
or input error with one line on stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

COLOURS = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan"}
FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                      show_default=True, help="text for people, json for scripts.")
CONFIG = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                      help="TOML configuration (default: /etc/relayguard/relayguard.toml when "
                           "present).")
CONFIG_DIR = click.option("--config-dir", type=click.Path(file_okay=False),
                          help="Postfix configuration directory (postconf -c DIR). Default: "
                               "Postfix's own.")


def _fail(message: str) -> NoReturn:
    from ..cli import fail

    fail(message)


def _config(path: str | None) -> dict[str, Any]:
    from ..cli import load_config

    return load_config(path)


def _exit(code_name: str) -> NoReturn:
    from .. import cli

    sys.exit(getattr(cli, code_name))


def _json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def _console() -> Console:
    return Console(highlight=False)


# --------------------------------------------------------------------------- audit
@click.command()
@CONFIG_DIR
@FORMAT
@click.option("--dovecot-config", type=click.Path(dir_okay=False),
              help="Also audit this dovecot.conf (doveconf -c FILE). Default: the system's "
                   "Dovecot when doveconf is installed.")
@click.option("--no-dovecot", is_flag=True, help="Do not look at Dovecot.")
@CONFIG
def audit(config_dir: str | None, fmt: str, dovecot_config: str | None, no_dovecot: bool,
          config_path: str | None) -> None:
    """Audit the effective Postfix configuration (and Dovecot's) for what lets spam out.

    Reads main.cf with its defaults and master.cf's per-service overrides through the real
    postconf; reports open relaying, over-wide trusted networks, AUTH on port 25, plaintext
    passwords, missing limits … each with the exact postconf commands that fix it.

    Exit code 0: no high or critical finding; 1: some; 2: usage or input error.
    """
    from ..postfix.postconf import PostconfError
    from .dovecot import DoveconfError
    from .engine import audit_config

    cfg = _config(config_path).get("audit", {})
    if no_dovecot and dovecot_config:
        _fail("--no-dovecot and --dovecot-config exclude each other")
    if no_dovecot:
        dovecot: str | None = None
    elif dovecot_config:
        dovecot = dovecot_config
    else:
        dovecot = "auto" if cfg.get("dovecot", True) else None
    try:
        report = audit_config(config_dir, dovecot, ignore=cfg.get("ignore", []))
    except (PostconfError, DoveconfError) as exc:
        _fail(str(exc))
    if fmt == "json":
        _json(report.to_dict())
    else:
        _print_audit(report)
    _exit("EXIT_FINDINGS" if report.has_high() else "EXIT_CLEAN")


def _print_audit(report: Any) -> None:
    con = _console()
    where = report.config_dir or "the system's Postfix"
    con.print(Text.assemble(("Postfix configuration audit", "bold"),
                            f" — {where} (Postfix {report.mail_version or '?'})"))
    if report.services:
        tb = Table(title="smtpd services", title_justify="left", show_edge=False)
        for col in ("service", "listens", "role", "reachable from", "AUTH"):
            tb.add_column(col)
        for s in report.services:
            tb.add_row(s.service, s.listen, s.role,
                       "this machine" if s.exposure == "local" else "the network",
                       "yes" if s.sasl else "no")
        con.print(tb)
    for f in report.findings:
        title = Text.assemble((f" {f.severity.upper()} ", COLOURS[f.severity]), " ",
                              (f.id, "bold"), f"  {f.title}")
        con.print(Panel(Text(f.detail), title=title, title_align="left"))
        # Outside the panel and soft-wrapped: the commands must copy-paste as one line each.
        for line in f.fix.splitlines():
            con.print(Text("  " + line, style="dim" if line.startswith("#") else "green"),
                      soft_wrap=True)
    counts = report.counts()
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no findings"
    con.print(Text.assemble(("Summary: ", "bold"), summary))
    if report.findings:
        reload = "postfix -c " + report.config_dir if report.config_dir else "postfix"
        con.print(Text(f"After applying fixes: {reload} reload", style="dim"))
    con.print(Text(f"Dovecot: {report.dovecot}", style="dim"))
    for w in report.warnings:
        con.print(Text(f"warning: {w}", style="yellow"))


# --------------------------------------------------------------------------- probe-relay
def _target(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address."""
    host, port = text, "25"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad target {text!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad target {text!r}: use HOST or HOST:PORT")
    return host, int(port)


@click.command("probe-relay")
@click.argument("target", metavar="HOST[:PORT]")
@click.option("--source", metavar="IP", help="Local address to connect from (test what that host "
                                               "may do).")
@click.option("--mail-from", default=None, metavar="ADDR",
              help="Envelope sender (default: relayguard-probe@example.com).")
@click.option("--rcpt-to", default=None, metavar="ADDR",
              help="Recipient at a domain the server must not relay to (default: "
                   "relayguard-probe@example.net).")
@click.option("--helo", metavar="NAME", help="EHLO name (default: this host's name when it is a FQDN).")
@click.option("--tls", type=click.Choice(["auto", "starttls", "implicit", "none"]),
              default="auto", show_default=True,
              help="auto: implicit TLS on 465, STARTTLS when offered.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=15.0, show_default=True,
              help="Seconds per network operation.")
@FORMAT
def probe_relay(target: str, source: str | None, mail_from: str | None, rcpt_to: str | None,
                helo: str | None, tls: str, timeout: float, fmt: str) -> None:
    """Ask a server whether it relays: SMTP up to RCPT TO an outside domain, then RSET, QUIT.

    DATA is never sent, so no message is ever queued or delivered. Run it from an address
    outside your trusted networks (--source, or another machine) to test for an open relay.

    Exit code 0: not relaying (or inconclusive: see the verdict); 1: open relay; 2: usage error
    or no SMTP session.
    """
    import ipaddress

    from .probe import DEFAULT_MAIL_FROM, DEFAULT_RCPT_TO, ProbeError
    from .probe import probe_relay as run_probe

    try:
        host, port = _target(target)
    except ValueError as exc:
        _fail(str(exc))
    if source:
        try:
            ipaddress.ip_address(source)
        except ValueError:
            _fail(f"--source: {source!r} is not an IP address")
    for name, addr in (("--mail-from", mail_from), ("--rcpt-to", rcpt_to)):
        if addr is not None and (any(c in addr for c in "\r\n<>") or addr.count("@") != 1):
            _fail(f"{name}: {addr!r} is not a plain address (local@domain)")
    try:
        result = run_probe(host, port, source=source, mail_from=mail_from or DEFAULT_MAIL_FROM,
                           rcpt_to=rcpt_to or DEFAULT_RCPT_TO, helo=helo, timeout=timeout,
                           tls=tls)
    except ProbeError as exc:
        _fail(str(exc))
    if fmt == "json":
        _json(result.to_dict())
    else:
        con = _console()
        style = {"open": "bold white on red", "closed": "bold green",
                 "inconclusive": "bold yellow"}[result.verdict]
        label = {"open": " RELAYS ", "closed": " not relaying ",
                 "inconclusive": " inconclusive "}[result.verdict]
        con.print(Text.assemble((label, style), f"  {host}:{port}",
                                f" from {source or 'this host'}", f" — {result.reason}"))
        if result.reply:
            con.print(Text(f"reply: {result.reply}", style="dim"))
        if result.open_relay:
            con.print(Text("Expected only when this client is one of the server's trusted "
                           "hosts (mynetworks). From anywhere else this is an OPEN RELAY: run "
                           "`relayguard audit` on the server.", style="bold red"))
        for line in result.transcript:
            con.print(Text("  " + line, style="cyan" if line.startswith("C:") else "dim"))
    _exit("EXIT_FINDINGS" if result.open_relay else "EXIT_CLEAN")


# --------------------------------------------------------------------------- dnsbl
@click.command()
@click.argument("addresses", nargs=-1, metavar="[IP ...]")
@click.option("--list", "lists", multiple=True, metavar="ZONE",
              help="Blocklist zone to ask (repeatable). Default: [dnsbl] lists of the config.")
@click.option("--resolver", metavar="ADDR[:PORT]",
              help="Ask this DNS resolver only (default: /etc/resolv.conf). Spamhaus refuses "
                   "public resolvers.")
@click.option("--timeout", type=click.FloatRange(min=0.05), default=None,
              help="Seconds per query (default: [dnsbl] timeout, 5).")
@CONFIG_DIR
@FORMAT
@CONFIG
def dnsbl(addresses: tuple[str, ...], lists: tuple[str, ...], resolver: str | None,
          timeout: float | None, config_dir: str | None, fmt: str, config_path: str | None
          ) -> None:
    """Check our outbound addresses against DNS blocklists, with what each answer means.

    Without IP arguments: Postfix's smtp_bind_address (postconf), else this machine's public
    addresses. Reports listed (with the reason and the delisting page), not listed, refused
    (e.g. Spamhaus answering a public resolver), timeout.

    Exit code 0: listed nowhere; 1: listed somewhere; 2: usage error or no list answered.
    """
    from ..postfix.postconf import PostconfError
    from .dnsbl import check_addresses, default_addresses

    cfg = _config(config_path).get("dnsbl", {})
    zones = list(lists) or list(cfg.get("lists", []))
    if not zones:
        _fail("no blocklist to ask: give --list ZONE or set [dnsbl] lists")
    ips = list(addresses) or list(cfg.get("addresses", []))
    source = "command line" if addresses else "[dnsbl] addresses"
    if not ips:
        try:
            ips, source = default_addresses(config_dir)
        except PostconfError as exc:
            _fail(str(exc))
        if not ips:
            _fail(source)
    try:
        results = check_addresses(ips, zones, resolver or cfg.get("resolver") or None,
                                  float(timeout or cfg.get("timeout", 5.0)))
    except ValueError as exc:
        _fail(str(exc))
    listed = any(r.status == "listed" for r in results)
    if fmt == "json":
        _json({"schema": "relayguard.dnsbl/1", "addresses": ips, "source": source,
               "listed": listed, "results": [r.to_dict() for r in results]})
    else:
        _print_dnsbl(results, ips, source)
    if not any(r.status in ("listed", "not_listed") for r in results):
        _fail("no blocklist gave a usable answer (timeouts or refusals): check --resolver")
    _exit("EXIT_FINDINGS" if listed else "EXIT_CLEAN")


def _print_dnsbl(results: list[Any], ips: list[str], source: str) -> None:
    con = _console()
    con.print(Text(f"Addresses: {', '.join(ips)} ({source})", style="dim"))
    styles = {"listed": "bold red", "not_listed": "green", "refused": "yellow",
              "timeout": "yellow", "unreliable": "yellow", "error": "yellow"}
    tb = Table(show_edge=False)
    for col in ("address", "blocklist", "status", "meaning"):
        tb.add_column(col)
    for r in results:
        meaning = ("; ".join(r.meanings) if r.status == "listed"
                   else "" if r.status == "not_listed" else r.detail)
        tb.add_row(r.ip, r.zone, Text(r.status.replace("_", " "), style=styles[r.status]),
                   Text(meaning))
    con.print(tb)
    for r in results:
        if r.status != "listed":
            continue
        con.print(Text.assemble((f"{r.ip} on {r.name}: ", "bold"),
                                "stop the spam first, then request removal"
                                + (f": {r.delist}" if r.delist else "")))
        for t in r.txt:
            con.print(Text(f"  TXT: {t}", style="dim"))
        if r.detail:
            con.print(Text(f"  {r.detail}", style="dim"))


# --------------------------------------------------------------------------- password-check
@click.command("password-check",
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("stray", nargs=-1, type=click.UNPROCESSED, metavar="")
@click.option("--user", "-u", metavar="LOGIN", help="The account's login: the password must not "
                                                    "contain it.")
@click.option("--min-length", type=click.IntRange(min=1), default=None,
              help="Minimum length (default: [password] min_length, 12).")
@FORMAT
@CONFIG
def password_check(stray: tuple[str, ...], user: str | None, min_length: int | None, fmt: str,
                   config_path: str | None) -> None:
    """Judge a new password read from standard input (never from the command line).

    \b
      printf '%s\\n' "$NEWPASS" | relayguard password-check --user alice@example.com
      relayguard password-check --user alice      # asks, without echo, on a terminal

    Checks length, variety, the login inside it, and common/guessable passwords (zxcvbn).
    Exit code 0: acceptable; 1: weak (reasons given); 2: usage or input error.
    """
    if stray:
        # Never echo what was given: it may be the password itself.
        _fail("the password is never taken from the command line (it would stay in the shell "
              "history and be visible in ps); give it on standard input, e.g. "
              "`relayguard password-check --user alice < file` or type it when asked")
    from .password import (
        DEFAULT_MIN_CLASSES,
        DEFAULT_MIN_LENGTH,
        DEFAULT_MIN_SCORE,
        check_password,
    )

    cfg = _config(config_path).get("password", {})
    password = _read_password()
    verdict = check_password(
        password, user,
        min_length=min_length or int(cfg.get("min_length", DEFAULT_MIN_LENGTH)),
        min_classes=int(cfg.get("min_classes", DEFAULT_MIN_CLASSES)),
        min_score=int(cfg.get("min_score", DEFAULT_MIN_SCORE)))
    del password
    if fmt == "json":
        _json(verdict.to_dict())
    else:
        con = _console()
        if verdict.ok:
            con.print(Text.assemble((" OK ", "bold white on green"),
                                    f"  strong enough ({verdict.length} characters"
                                    + (f", strength {verdict.score}/4" if verdict.score is not None
                                       else "") + ")"))
        else:
            con.print(Text.assemble((" WEAK ", "bold white on red"), "  do not use this password:"))
            for reason in verdict.reasons:
                con.print(Text(f"  - {reason}"))
            for tip in verdict.suggestions:
                con.print(Text(f"  → {tip}", style="green"))
    _exit("EXIT_CLEAN" if verdict.ok else "EXIT_FINDINGS")


def _read_password() -> str:
    """One line from stdin; on a terminal, a no-echo prompt."""
    if sys.stdin is None:
        _fail("no standard input to read the password from")
    try:
        if sys.stdin.isatty():
            import getpass

            line = getpass.getpass("Password (not shown): ")
        else:
            line = sys.stdin.readline()
    except (EOFError, KeyboardInterrupt):
        _fail("no password given")
    except UnicodeDecodeError:
        _fail("the password on standard input is not valid UTF-8")
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        _fail("no password on standard input (one line expected)")
    return password
