"""`relayguard history`: the audit trail (state/audit_trail.py reads it), newest first."""

from __future__ import annotations

import click
from rich import box
from rich.table import Table

from .. import timefmt
from ..state import StateError, audit_trail
from .common import console, fail, json_out, load_config, parse_when
from .common import text as _t


@click.command()
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Newest N entries (0: all).")
@click.option("--action", metavar="ACTION",
              help="Only this action: hold, release, requeue, delete, export, restore, ban, unban, "
                   "lock, unlock, hook, trusted-add, trusted-remove…")
@click.option("--since", help="Only entries at or after this time (ISO 8601, or a duration ago: 2h).")
@click.option("--state", "state_path", type=click.Path(dir_okay=False), help="State database.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def history(limit: int, action: str | None, since: str | None, state_path: str | None,
            config_path: str | None, fmt: str) -> None:
    """The audit trail: every queue action relayguard took — when, who, what, how many, which
    queue IDs, where the backup is. Newest first."""
    cfg = load_config(config_path)
    when = parse_when(since)
    try:
        entries = audit_trail.history(state_path, cfg, limit or None, action, when)
    except StateError as exc:
        fail(str(exc))
    if fmt == "json":
        json_out({"schema": "relayguard.history/1", "entries": entries})
        return
    c = console()
    if not entries:
        c.print("No recorded actions.")
        return
    table = Table(box=box.SIMPLE_HEAD, header_style="bold")
    for col in ("#", f"When ({timefmt.label()})", "Who", "Action", "Count", "Selector", "Backup", "Status"):
        table.add_column(col, overflow="fold")
    for e in entries:
        who = e["user"] + (f" (sudo {e['sudo_user']})" if e.get("sudo_user") else "")
        sel = e.get("selector") or {}
        sel_text = " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                            for k, v in sel.items()) if isinstance(sel, dict) else str(sel)
        table.add_row(_t(e["id"]), _t(timefmt.text(e["ts"])), _t(who), _t(e["action"]),
                      _t(f"{e['count']}/{e['matched']}"), _t(sel_text), _t(e.get("backup_dir") or ""),
                      _t(e["status"] + (f": {e['detail']}" if e.get("detail") else "")))
    c.print(table)
