"""`relayguard setup postfix` and `relayguard status` (registered lazily in relayguard/cli.py).

Exit codes: setup — 0 done or nothing to change, 2 refused (no confirmation) or failed (rolled
back). status — 0 everything configured is enforced, 1 something is not (each problem named,
with its fix), 2 on error (Postfix or the state database cannot be read).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from .changes import confirm
from .postfix.programs import PostfixError
from .respond.enforcement import Plan, Report, Wanted, open_postfix, plan, read_current, wanted
from .state.store import StateError, Store, resolve_path

CONFIG_DIR = click.option("--config-dir", type=click.Path(file_okay=False),
                          help="Postfix configuration directory (postfix -c DIR). Default: "
                               "[respond] postfix_config_dir, else /etc/postfix.")
CONFIG = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                      help="relayguard configuration (TOML).")
STATE = click.option("--state", "state_path", type=click.Path(dir_okay=False),
                     help="State database (audit trail, bans, locks).")


def _fail(message: str) -> NoReturn:
    from .cli import fail

    fail(message)


def _config(path: str | None) -> dict[str, Any]:
    from .cli import load_config

    return load_config(path)


def _clean(text: Any) -> str:
    """main.cf values and state come from files and logs: printable only."""
    return "".join(c if c.isprintable() else "?" for c in str(text))


# ------------------------------------------------------------------------------ setup

@click.group()
def setup() -> None:
    """Make Postfix enforce what relayguard decides (bans, locks, rate limits)."""


def _print_plan(w: Wanted, p: Plan) -> None:
    if p.create:
        # A table main.cf names but that does not exist fails every lookup (451 for all mail).
        click.echo("The maps main.cf will name must exist first (--apply builds them from the "
                   "active locks and bans); by hand:")
        for path in p.create:
            if w.lock_map and path == str(w.lock_index):
                kind, _, source = w.lock_map.partition(":")
                click.echo(f"  {_clean(shlex.join(['touch', source]))}")
                if kind != "texthash":
                    click.echo(f"  {_clean(shlex.join(['postmap', '-c', w.config_dir, w.lock_map]))}")
            else:
                click.echo(f"  {_clean(shlex.join(['touch', path]))}")
    click.echo("Changes (main.cf; master.cf for services with lists of their own):")
    for e in p.edits:
        click.echo(f"  {_clean(e.command_line(w.config_dir))}")
        click.echo(f"      before: {_clean(e.before) or '(empty)'}")
        for a in e.added:
            click.echo(f"      adds:   {_clean(a)}")
        for m in e.moved:
            click.echo(f"      moves:  {_clean(m)} (to where it takes effect)")
    for n in p.notes:
        click.echo(f"relayguard: warning: {_clean(n)}", err=True)


@setup.command("postfix")
@CONFIG_DIR
@click.option("--apply", "do_apply", is_flag=True,
              help="Make the changes (preview, confirm, back up main.cf, postconf -e, validate "
                   "with rollback, postfix reload). Without it: print the commands only.")
@click.option("-y", "--yes", is_flag=True, help="Do it without asking (--apply, --undo).")
@click.option("--undo", is_flag=True,
              help="Put main.cf back as it was before the last `setup postfix --apply`.")
@click.option("--backup-dir", type=click.Path(file_okay=False),
              help="Where main.cf is copied first (default: [setup] backup_dir).")
@CONFIG
@STATE
def setup_postfix(config_dir: str | None, do_apply: bool, yes: bool, undo: bool,
                  backup_dir: str | None, config_path: str | None,
                  state_path: str | None) -> None:
    """The main.cf lines that make Postfix consult the policy server (bans, locks, rate limits),
    the lock map (check_sasl_access, first) and, for ban_backend = "postfix-access", the ban
    map — edited into the existing restriction lists, never replacing them.

    Idempotent: when everything is in place it says so and changes nothing.
    """
    from .respond import setup as lib

    if undo and do_apply:
        _fail("--apply and --undo: choose one")
    cfg = _config(config_path)
    w = wanted(cfg, config_dir)
    try:
        pf = open_postfix(w.config_dir)
        cur = read_current(pf)
    except PostfixError as exc:
        _fail(f"cannot read the Postfix configuration: {exc}")
    if undo:
        _undo(pf, cfg, state_path, yes)
        return
    if w.listen is None:
        _fail("[policy] listen is empty or not an address: set it (e.g. \"127.0.0.1:10031\")")
    p = plan(w, cur)
    if p.empty:
        click.echo(f"Nothing to change: Postfix in {_clean(w.config_dir)} already consults the "
                   "policy server" + (" and the lock map" if w.lock_map else "")
                   + (" and the ban map" if w.access_map else "") + ".")
        return
    _print_plan(w, p)
    if not do_apply:
        click.echo("Or let relayguard do it (backup, validation, rollback, reload): "
                   + shlex.join(["relayguard", "setup", "postfix", "--config-dir",
                                 w.config_dir, "--apply"]))
        return
    confirm("Apply these changes?", yes, "change main.cf", _fail)
    try:  # opened before acting: no change without its audit entry
        store = Store(resolve_path(state_path, cfg))
    except StateError as exc:
        _fail(str(exc))
    selector = {"edits": [e.to_dict() for e in p.edits], "create": p.create}
    with store:
        try:
            done = lib.apply(pf, w, p, cfg, backup_dir or lib.default_backup_dir(cfg),
                             state_path)
        except lib.SetupError as exc:
            _record(store, lib.ACTION, selector, None, pf.config_dir, "failed", str(exc))
            _fail(f"setup postfix failed: {exc}")
        detail = "; ".join([f"{e.param}: +{', +'.join(e.added + e.moved)}" for e in p.edits]
                           + [f"created {c}" for c in done.created])
        audit_id = _record(store, lib.ACTION, selector,
                           str(done.backup_dir) if done.backup_dir else None, pf.config_dir,
                           "ok", detail)
    for c in done.created:
        click.echo(f"Created {_clean(c)}.")
    if p.edits:
        click.echo(f"Postfix configuration changed; backup: {_clean(done.backup_dir)}")
    _after(done, audit_id)
    click.echo("Check: relayguard status" + (f" --config-dir {shlex.quote(w.config_dir)}"
                                             if config_dir else ""))


def _after(done: Any, audit_id: int) -> None:
    if done.reloaded:
        click.echo("Postfix reloaded.")
    elif done.reloaded is None:
        click.echo("Postfix is not running: the change applies when it starts.")
    for warn in done.warnings:
        click.echo(f"relayguard: warning: {_clean(warn)}", err=True)
    if audit_id:
        click.echo(f"Audit entry #{audit_id} (relayguard history).")


def _undo(pf: Any, cfg: dict[str, Any], state_path: str | None, yes: bool) -> None:
    from .respond import setup as lib

    try:
        store = Store(resolve_path(state_path, cfg))
    except StateError as exc:
        _fail(str(exc))
    with store:
        try:
            u = lib.find_undo(store, pf.config_dir)
        except lib.SetupError as exc:
            _fail(str(exc))
        if u is None:
            click.echo(f"Nothing to undo: no `setup postfix --apply` of {_clean(pf.config_dir)} "
                       "in the audit trail that was not undone already.")
            return
        click.echo(f"Restore {', '.join(_clean(r['original']) for r in u.saved)} from "
                   f"{_clean(u.backup_dir)} (audit entry #{u.audit_id}).")
        if u.edited_since:
            click.echo("relayguard: warning: the files were changed after that setup: those "
                       "changes are lost too", err=True)
        confirm("Restore main.cf?", yes, "restore main.cf", _fail)
        selector = {"undoes": u.audit_id}
        try:
            done = lib.undo(pf, u)
        except lib.SetupError as exc:
            _record(store, lib.UNDO, selector, str(u.backup_dir), pf.config_dir, "failed",
                    str(exc))
            _fail(f"undo failed: {exc}")
        audit_id = _record(store, lib.UNDO, selector, str(u.backup_dir), pf.config_dir, "ok",
                           f"main.cf restored from {u.backup_dir}")
    names = " and ".join(Path(r["original"]).name for r in u.saved)
    click.echo(f"{names} restored byte for byte.")
    _after(done, audit_id)


def _record(store: Store, action: str, selector: dict[str, Any], backup_dir: str | None,
            config_dir: str | None, status: str, detail: str) -> int:
    try:
        return store.record(action, selector=selector, backup_dir=backup_dir,
                            config_dir=config_dir, status=status, detail=detail,
                            command=sys.argv)
    except StateError as exc:
        click.echo(f"relayguard: warning: {exc}", err=True)  # done, but unrecorded: loud
        return 0


# ----------------------------------------------------------------------------- status

def _mark(ok: bool | None) -> str:
    return {True: "ok ", False: "NO ", None: " ? "}[ok]


def _enforced(value: bool | None) -> str:
    return {True: "enforced", False: "NOT ENFORCED", None: "cannot be verified"}[value]


@click.command()
@CONFIG_DIR
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@CONFIG
@STATE
def status(config_dir: str | None, fmt: str, config_path: str | None,
           state_path: str | None) -> None:
    """What enforces bans and locks on this machine, and whether it really does (the main.cf
    restrictions, the policy server answering a real request, the maps, the nftables table);
    whether `watch` is running; active bans and locks; recent authentication failures and
    findings. Exit 0: everything configured is enforced; 1: something is not; 2: error.
    """
    from .status import gather

    cfg = _config(config_path)
    st = gather(cfg, config_dir, state_path)
    if fmt == "json":
        click.echo(json.dumps(st.to_dict(), ensure_ascii=False, indent=2))
    else:
        _render(st.enforcement, st)
    if st.enforcement.error:
        click.echo(f"relayguard: error: {_clean(st.enforcement.error)}", err=True)
    if st.state_error:
        click.echo(f"relayguard: error: {_clean(st.state_error)}", err=True)
    sys.exit(st.exit_code)


def _render(rep: Report, st: Any) -> None:
    say = click.echo
    say(f"Postfix instance: {_clean(rep.config_dir)}   ban backend: {_clean(rep.backend)}")
    say(f"Bans:  {_enforced(rep.bans)}")
    say(f"Locks: {_enforced(rep.locks)}")
    for c in rep.checks:
        extra = "" if c.needed or c.ok else " (not needed here)"
        say(f"  [{_mark(c.ok)}] {c.label}: {_clean(c.detail)}{extra}")
    for n in rep.notes:
        say(f"  note: {_clean(n)}")
    if st.watch:
        say(f"watch: {_clean(st.watch['detail'])}")
    if st.bans:
        names = ", ".join(_clean(b["ip"]) for b in st.bans["shown"])
        say(f"Active bans: {st.bans['active']}" + (f" ({names}"
            + (", …" if st.bans["active"] > len(st.bans["shown"]) else "") + ")" if names else ""))
    if st.locks:
        names = ", ".join(_clean(lk["user"]) for lk in st.locks["shown"])
        say(f"Active locks: {st.locks['active']}" + (f" ({names}"
            + (", …" if st.locks["active"] > len(st.locks["shown"]) else "") + ")" if names
            else ""))
    if st.auth_failures:
        a = st.auth_failures
        top = ", ".join(f"{_clean(t['ip'])} ({t['failures']})" for t in a["top"])
        say(f"Auth failures in the last {a['window_seconds'] / 60:g}m: {a['total']} from "
            f"{a['addresses']} address(es)" + (f": {top}" if top else "") + f" ({a['note']})")
    if st.findings:
        say("Latest findings:")
        for f in st.findings:
            say(f"  {str(f.get('severity', '')).upper():8} {_clean(f.get('kind'))} "
                f"{_clean(f.get('subject'))}: {_clean(f.get('summary'))}")
    problems = rep.problems
    if problems:
        say(f"{len(problems)} problem(s):")
        for c in problems:
            say(f"  - {c.label}: {_clean(c.detail)}" + (f" — fix: {c.fix}" if c.fix else ""))
    elif not rep.error and not st.state_error:
        say("Everything configured is enforced.")


__all__ = ["setup", "status"]
