"""`relayguard firewall log-smtp enable|disable|status`.

Exit codes: 0 done (or nothing to do); 2 usage error or nft failure.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.text import Text

from ..firewall.nft import (
    DEFAULT_BURST,
    DEFAULT_PORTS,
    DEFAULT_PREFIX,
    DEFAULT_RATE,
    FAMILY,
    TABLE,
    FirewallError,
    LogSmtpRule,
    Nft,
    Status,
    disable,
    enable,
    forwarding,
    status,
)
from ..state import audit_trail
from .common import begin_or_fail, console, fail, load_config, open_store, warn

WHERE_LOGS_GO = ("Lines go to the kernel log (journalctl -k, /var/log/kern.log or "
                 "/var/log/messages); `relayguard analyze` reads them with the mail log, e.g. "
                 "relayguard analyze /var/log/mail.log /var/log/kern.log")


def _nft() -> Nft:
    try:
        return Nft()
    except FirewallError as exc:
        fail(str(exc))


def _ports(text: str) -> list[int]:
    try:
        return [int(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        fail(f"--ports {text!r}: comma-separated port numbers (e.g. 25,465,587)")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def firewall() -> None:
    """Firewall rules that give relayguard data (nftables)."""


@firewall.group("log-smtp")
def log_smtp() -> None:
    """Log PCs that send mail straight to the internet (port 25/465/587), bypassing the server.

    On the gateway, `enable` installs an nftables rule (its own table, inet relayguard_log,
    hooked on forward) that logs each new TCP connection to those ports, rate-limited, with a
    recognisable prefix; the `direct_smtp` finding of `analyze` counts them. The rule only
    observes: it never blocks anything. `disable` removes the table.
    """


def _show(c: Console, st: Status) -> None:
    if not st.enabled:
        c.print(f"Direct-SMTP logging is off (no table {FAMILY} {TABLE}).")
        return
    if st.rule is not None:
        r = st.rule
        c.print(Text("Direct-SMTP logging is on", style="bold green")
                + Text(f": new TCP connections forwarded to port(s) "
                       f"{', '.join(map(str, r.ports))} are logged with the prefix "
                       f"\"{r.log_prefix}\", at most {r.rate} (burst {r.burst})."))
        if st.packets is not None:
            c.print(f"Connections seen since enabled: {st.packets}.")
        c.print(WHERE_LOGS_GO)
        if forwarding() is False:
            c.print(Text("note: ", style="bold yellow")
                    + Text("this host does not route packets (ip_forward is 0): the rule sees "
                           "only traffic forwarded through it; install it on the LAN's gateway."))
    for p in st.problems:
        c.print(Text("warning: ", style="bold yellow") + Text(p))
    if st.text:
        c.print(Text(st.text.rstrip()))


def _begin(state_path: str | None, cfg: dict[str, Any], action: str) -> audit_trail.Entry:
    # Written before acting: if the audit trail cannot be written, nothing is done either.
    return begin_or_fail(open_store(state_path, cfg), action,
                         selector={"table": f"{FAMILY} {TABLE}"}, command=sys.argv)


def _done(entry: audit_trail.Entry, changed: bool, detail: str) -> int:
    """Complete the entry (0: nothing changed, so nothing is recorded)."""
    try:
        if not changed:
            entry.discard()
            return 0
        warn(filter(None, [entry.complete("ok", detail=detail)]))
        return entry.id
    finally:
        if entry.store is not None:
            entry.store.close()


def _failed(entry: audit_trail.Entry, why: str) -> NoReturn:
    warn(filter(None, [entry.complete("failed", detail=why)]))
    fail(why)


FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                      show_default=True)
STATE = click.option("--state", "state_path", type=click.Path(dir_okay=False),
                     help="State database (audit trail).")
CONFIG = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                      help="relayguard configuration (TOML).")


@log_smtp.command("enable")
@click.option("--prefix", default=DEFAULT_PREFIX, show_default=True,
              help='Log prefix (the kernel writes "PREFIX: IN=… SRC=… DPT=25 …").')
@click.option("--rate", default=DEFAULT_RATE, show_default=True,
              help="At most this many log lines (N/second, N/minute, N/hour).")
@click.option("--burst", type=int, default=DEFAULT_BURST, show_default=True,
              help="Lines allowed at once before the rate applies.")
@click.option("--ports", "ports_text", default=",".join(map(str, DEFAULT_PORTS)),
              show_default=True, help="TCP destination ports to log.")
@click.option("-n", "--dry-run", is_flag=True, help="Print the nft script; change nothing.")
@STATE
@CONFIG
@FORMAT
def enable_cmd(prefix: str, rate: str, burst: int, ports_text: str, dry_run: bool,
               state_path: str | None, config_path: str | None, fmt: str) -> None:
    """Install the logging rule (idempotent: twice is still one rule)."""
    cfg = load_config(config_path)
    try:
        rule = LogSmtpRule.make(prefix, rate, burst, _ports(ports_text))
    except FirewallError as exc:
        fail(str(exc))
    if dry_run:
        if fmt == "json":
            click.echo(json.dumps({"schema": "relayguard.firewall-log-smtp/1", "dry_run": True,
                                   "script": rule.script(), **rule.to_dict()}))
        else:
            click.echo(rule.script(), nl=False)
        return
    nft = _nft()
    entry = _begin(state_path, cfg, "firewall-log-smtp-enable")
    try:
        outcome, st = enable(nft, rule)
    except FirewallError as exc:
        _failed(entry, str(exc))
    audit_id = _done(entry, outcome != "unchanged", f"{outcome}: {rule.rule_text()}")
    if fmt == "json":
        click.echo(json.dumps(st.to_dict() | {"outcome": outcome, "audit_id": audit_id or None}))
        return
    c = console(fmt, soft_wrap=True)
    c.print({"enabled": "Enabled.", "updated": "Updated (the previous rule was replaced).",
             "unchanged": "Already enabled with these settings: nothing changed."}[outcome])
    _show(c, st)
    if audit_id:
        c.print(f"Audit entry #{audit_id} (relayguard history).")


@log_smtp.command("disable")
@STATE
@CONFIG
@FORMAT
def disable_cmd(state_path: str | None, config_path: str | None, fmt: str) -> None:
    """Remove the logging rule (relayguard's table, nothing else)."""
    cfg = load_config(config_path)
    nft = _nft()
    entry = _begin(state_path, cfg, "firewall-log-smtp-disable")
    try:
        removed = disable(nft)
    except FirewallError as exc:
        _failed(entry, str(exc))
    audit_id = _done(entry, removed, f"deleted table {FAMILY} {TABLE}")
    if fmt == "json":
        click.echo(json.dumps({"schema": "relayguard.firewall-log-smtp/1", "enabled": False,
                               "removed": removed, "audit_id": audit_id or None}))
        return
    console(fmt, soft_wrap=True).print(f"Disabled: table {FAMILY} {TABLE} deleted." if removed
                        else "Already disabled: nothing to remove.")


@log_smtp.command("status")
@FORMAT
def status_cmd(fmt: str) -> None:
    """Is the rule installed, with which settings, and how many connections it has seen."""
    nft = _nft()
    try:
        st = status(nft)
    except FirewallError as exc:
        fail(str(exc))
    if fmt == "json":
        click.echo(json.dumps(st.to_dict()))
        return
    _show(console(fmt, soft_wrap=True), st)

