"""`relayguard trusted list|add|remove` — Postfix's trusted networks (mynetworks).

Wired into the main command by ``main.add_command(trusted)`` at the end of relayguard.cli; the
helpers of relayguard.cli are imported inside functions (it imports this module last).

Exit codes: 0 done or nothing to do; 2 usage error, a refused or failed change (rolled back).
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..changes import confirm
from ..postfix.instance import Postfix
from ..postfix.mynetworks import Mynetworks, Network, read_mynetworks
from ..postfix.programs import PostfixError
from ..state import StateError, Store, resolve_path
from .edit import DEFAULT_BACKUP_DIR, Plan, apply, make_probe, plan_add, plan_remove
from .mynetworks import parse_target


def _fail(message: str) -> NoReturn:
    from ..cli import fail

    fail(message)


def _config(path: str | None) -> dict[str, Any]:
    from ..cli import load_config

    return load_config(path)


def _t(value: Any) -> Text:
    """File contents reach rich as Text, never as markup."""
    s = "" if value is None else str(value)
    return Text("".join(c if c.isprintable() else "?" for c in s))


def _console(fmt: str) -> Console:
    # In JSON mode stdout carries only JSON: text for people goes to stderr.
    return Console(stderr=fmt != "text", highlight=False, soft_wrap=True)


def _open(config_dir: str | None) -> tuple[Postfix, Mynetworks]:
    try:
        pf = Postfix(config_dir)
        return pf, read_mynetworks(pf)
    except PostfixError as exc:
        _fail(str(exc))


CONFIG_DIR = click.option("--config-dir", type=click.Path(file_okay=False),
                          help="Postfix configuration directory (default: the system's instance).")
CONFIG = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                      help="relayguard configuration (TOML).")
FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                      show_default=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def trusted() -> None:
    """Postfix's trusted networks (mynetworks): hosts there relay without a password.

    A compromised host inside them (a monitoring box, an intranet app) sends spam through your
    server: `relayguard trusted remove IP` stops it. Inline lists, cidr:, hash: and texthash:
    tables and pattern files are understood; every change is previewed, confirmed, backed up,
    validated (rolled back on error), followed by `postfix reload`, and written to the audit
    trail (`relayguard history`).
    """


# ------------------------------------------------------------------------------ list

def _entry_notes(model: Mynetworks) -> dict[int, list[str]]:
    notes: dict[int, list[str]] = {}
    entries = model.entries
    for i, e in enumerate(entries):
        out = []
        if e.problem:
            out.append(e.problem)
        if e.negated:
            out.append("excluded (not trusted)")
        n = e.network
        if n is not None and not e.negated and not e.problem:
            if not (n.is_private or n.is_loopback or n.is_link_local):
                out.append("public addresses: anyone there can relay")
            for prev in entries[:i]:
                if prev.negated or prev.network is None or prev.problem:
                    continue
                if prev.network == n:
                    out.append(f"duplicate of {prev.where}")
                    break
                if prev.covers(n):
                    out.append(f"redundant: inside {prev.pattern} ({prev.where})")
                    break
        if e.conditional:
            out.append("inside an if block")
        if e.origin:
            out.append(f"from {e.origin}")
        notes[i] = out
    return notes


def _count(net: Network) -> str:
    n = net.num_addresses
    return f"{n:,}" if n < 10**9 else f"2^{net.max_prefixlen - net.prefixlen}"


@trusted.command("list")
@CONFIG_DIR
@CONFIG
@FORMAT
def list_cmd(config_dir: str | None, config_path: str | None, fmt: str) -> None:
    """Every trusted network, where it is written (main.cf or which table, which line) and what
    looks wrong (host bits set, public networks, duplicates, hash: tables holding networks)."""
    _config(config_path)
    _pf, model = _open(config_dir)
    entries = model.entries
    notes = _entry_notes(model)
    warnings = list(model.warnings)
    for s in model.sources:
        if not s.editable and s.why_not:
            warnings.append(f"{s.spec}: {s.why_not}; consulted by Postfix, not shown here")
    for o in model.overrides:
        warnings.append(f"master.cf overrides it for one service: {o} (relayguard edits main.cf)")
    if fmt == "json":
        click.echo(json.dumps({
            "schema": "relayguard.trusted/1", "config_dir": _pf.config_dir,
            "main_cf": str(model.main_cf), "explicit": model.explicit, "mynetworks": model.raw,
            "mynetworks_style": model.style,
            "entries": [e.to_dict() | {"notes": notes[i]} for i, e in enumerate(entries)],
            "sources": [s.to_dict() for s in model.sources], "overrides": model.overrides,
            "warnings": warnings}, ensure_ascii=False))
        return
    c = _console(fmt)
    head = Text("mynetworks", style="bold") + _t(f" in {model.main_cf}")
    if not model.explicit:
        head += _t(f": not set; Postfix's default from mynetworks_style = {model.style}")
    c.print(head)
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for col, just in (("Entry", "left"), ("Where", "left"), ("Addresses", "right"),
                      ("Note", "left")):
        table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for i, e in enumerate(entries):
        n = e.network
        count = "" if n is None or e.negated else _count(n)
        style = "red" if e.problem else ("yellow" if notes[i] and not e.negated else "")
        note = _t("; ".join(notes[i]))
        if style:
            note.stylize(style)
        table.add_row(_t(("!" if e.negated else "") + e.pattern), _t(e.where), count, note)
    for s in model.sources:
        if s.path is None or s.path not in model.texts:
            kind = "(pattern file)" if s.kind == "file" else "(table)"
            why = "no such file" if s.missing else (s.why_not or "not read")
            table.add_row(_t(s.spec), _t(kind), "", _t(why))
    if entries or model.sources:
        c.print(table)
    else:
        c.print("Nothing is trusted (mynetworks is empty): every client must authenticate.")
    for w in warnings:
        c.print(Text("warning: ", style="bold yellow") + _t(w))


# ------------------------------------------------------------------------ add/remove

def _change_options(f: Any) -> Any:
    opts = [
        CONFIG_DIR, CONFIG,
        click.option("-y", "--yes", is_flag=True, help="Do it without asking."),
        click.option("-n", "--dry-run", is_flag=True, help="Show the change; write nothing."),
        click.option("--no-reload", is_flag=True,
                     help="Do not run `postfix reload` afterwards (it is run only when Postfix "
                          "is running)."),
        click.option("--backup-dir", type=click.Path(file_okay=False),
                     help=f"Where backups go (default: [trusted] backup_dir, {DEFAULT_BACKUP_DIR})."),
        click.option("--state", "state_path", type=click.Path(dir_okay=False),
                     help="State database (audit trail)."),
        FORMAT,
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _target(text: str) -> Network:
    try:
        return parse_target(text)
    except PostfixError as exc:
        _fail(str(exc))


def _print_plan(c: Console, plan: Plan, model: Mynetworks, dry_run: bool) -> None:
    verb = {"add": "Trust", "remove": "Stop trusting"}[plan.action]
    c.print(Text(f"{verb} {plan.label}" + (" (dry run)" if dry_run else "") + ":", style="bold"))
    for ch in plan.changes:
        if ch.is_main_cf:
            before = ch.before if plan.explicit_before else f"(not set; default: {ch.before})"
            c.print(Text(f"  {model.main_cf}"))
            c.print(Text("    before: mynetworks = ") + _t(before))
            c.print(Text("    after:  mynetworks = ") + _t(ch.after), style="bold")
        else:
            c.print(Text(f"  {ch.source.spec}"))
            for r in ch.removed:
                c.print(Text("    - ", style="red") + _t(r))
            for a in ch.added:
                c.print(Text("    + ", style="green") + _t(a))
    for n in plan.notes:
        c.print(_t(n))
    for w in plan.warnings:
        c.print(Text("warning: ", style="bold yellow") + _t(w))


def _run_change(action: str, cidr: str, kw: dict[str, Any], **plan_kw: Any) -> None:
    fmt = kw["fmt"]
    cfg = _config(kw["config_path"])
    net = _target(cidr)
    pf, model = _open(kw["config_dir"])
    probe = make_probe(pf)
    from ..state.store import whoami

    try:
        if action == "add":
            who = whoami()
            plan = plan_add(pf, model, net, probe=probe, who=who["sudo_user"] or who["user"],
                            **plan_kw)
        else:
            plan = plan_remove(pf, model, net, probe=probe, **plan_kw)
    except PostfixError as exc:
        _fail(str(exc))
    c = _console(fmt)
    result: dict[str, Any] = {"schema": "relayguard.trusted-change/1", "config_dir": pf.config_dir,
                              "main_cf": str(model.main_cf), "dry_run": kw["dry_run"],
                              **plan.to_dict(), "changed": False, "backup_dir": None,
                              "reloaded": None, "audit_id": None}
    if not plan.changes:
        for n in plan.notes:
            c.print(_t(n))
        for w in plan.warnings:
            c.print(Text("warning: ", style="bold yellow") + _t(w))
        if fmt == "json":
            click.echo(json.dumps(result, ensure_ascii=False))
        return
    _print_plan(c, plan, model, kw["dry_run"])
    if kw["dry_run"]:
        if fmt == "json":
            click.echo(json.dumps(result, ensure_ascii=False))
        else:
            c.print("Dry run: nothing changed.")
        return
    confirm("Apply this change?", kw["yes"], f"{action} {plan.label}", _fail)
    # Opened before acting: if the audit trail cannot be written, nothing is done either.
    try:
        store = Store(resolve_path(kw["state_path"], cfg))
    except StateError as exc:
        _fail(str(exc))
    backup_base = kw["backup_dir"] or str((cfg.get("trusted") or {}).get("backup_dir")
                                          or DEFAULT_BACKUP_DIR)
    selector = {"network": plan.label, "exclude": plan.exclude,
                "where": [ch.source.spec for ch in plan.changes]}
    with store:
        try:
            done = apply(pf, model, plan, backup_base, reload=not kw["no_reload"], probe=probe)
        except PostfixError as exc:
            _record(store, action, selector, plan, None, pf, "failed", str(exc))
            _fail(f"{action} {plan.label} failed: {exc}")
        detail = _detail(plan)
        audit_id = _record(store, action, selector, plan, str(done.backup_dir), pf, "ok", detail)
    result |= {"changed": True, "backup_dir": str(done.backup_dir), "reloaded": done.reloaded,
               "audit_id": audit_id, "warnings": plan.warnings + done.warnings}
    if fmt == "json":
        click.echo(json.dumps(result, ensure_ascii=False))
        for w in done.warnings:
            click.echo(f"relayguard: warning: {w}", err=True)
        return
    past = {"add": "Trusted", "remove": "Stopped trusting"}[action]
    c.print(Text(f"{past} {plan.label}.", style="bold green"))
    c.print(Text("Backup: ") + _t(done.backup_dir))
    if done.reloaded:
        c.print("Postfix reloaded: new connections use the new list.")
    elif done.reloaded is None:
        c.print("Postfix reload skipped (not running, or --no-reload): the change applies "
                "when it starts.")
    for w in done.warnings:
        c.print(Text("warning: ", style="bold yellow") + _t(w))
    undo = "add" if action == "remove" else "remove"
    cd = f" --config-dir {pf.config_dir}" if pf.config_dir else ""
    c.print(Text("Undo: ") + _t(f"relayguard trusted {undo} {plan.label}{cd}"))
    if audit_id:
        c.print(f"Audit entry #{audit_id} (relayguard history).")


def _detail(plan: Plan) -> str:
    parts = []
    for ch in plan.changes:
        for r in ch.removed:
            parts.append(f"-{r} ({ch.source.spec})")
        for a in ch.added:
            parts.append(f"+{a} ({ch.source.spec})")
    if plan.still_trusted_by:
        parts.append("still trusted through " + ", ".join(plan.still_trusted_by))
    return "; ".join(parts)


def _record(store: Store, action: str, selector: dict[str, Any], plan: Plan,
            backup_dir: str | None, pf: Postfix, status: str, detail: str) -> int:
    try:
        return store.record(f"trusted-{action}", selector=selector,
                            matched=sum(len(c.removed) + len(c.added) for c in plan.changes),
                            backup_dir=backup_dir, config_dir=pf.config_dir, status=status,
                            detail=detail, command=sys.argv)
    except StateError as exc:
        # The change happened (or was rolled back); losing its record must be loud.
        click.echo(f"relayguard: warning: {exc}", err=True)
        return 0


@trusted.command()
@click.argument("cidr")
@click.option("--table", "table", metavar="TYPE:FILE",
              help="Add to this table of mynetworks (default: its cidr: table if it has one, "
                   "else main.cf).")
@click.option("--inline", is_flag=True, help="Add to main.cf's mynetworks even if it uses tables.")
@_change_options
def add(cidr: str, table: str | None, inline: bool, **kw: Any) -> None:
    """Trust CIDR (an address or a network): its hosts may relay without a password.

    Refuses 0.0.0.0/0; warns about public and very wide networks. An address excluded with
    `remove --exclude` is trusted again.
    """
    if table and inline:
        _fail("--table and --inline: choose one")
    _run_change("add", cidr, kw, where="inline" if inline else table)


@trusted.command()
@click.argument("cidr")
@click.option("--exclude", is_flag=True,
              help="Also stop trusting CIDR when a wider network or table still covers it: "
                   "writes !CIDR first in main.cf's mynetworks (first match wins).")
@_change_options
def remove(cidr: str, exclude: bool, **kw: Any) -> None:
    """Stop trusting CIDR: remove it from main.cf's mynetworks and from the tables it uses.

    The one-command fix for a compromised host in the trusted networks (`analyze` reports it as
    trusted_host_relay): afterwards it gets "554 5.7.1 Relay access denied" unless it logs in.
    Refuses what is not listed, naming the wider network that trusts it instead.
    """
    _run_change("remove", cidr, kw, exclude=exclude)
