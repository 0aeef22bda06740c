"""`relayguard queue …`.

Exit codes: 0 done (or nothing to do); 1 `queue check` over the threshold; 2 usage or input
error, a refused unconfirmed action, or a Postfix tool failure.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..queue import operations
from ..queue.actions import ACTIONS
from ..queue.backup import load_backup, mark_dir_synced, reinject
from ..queue.postqueue import QueuedMessage, read_queue
from ..queue.select import (
    QUEUE_NAMES,
    Selection,
    Selector,
    iter_selected,
    origins_from_logs,
    parse_domain,
    parse_ip_or_cidr,
    select,
)
from ..queue.summary import BUCKET_LABELS, QueueSummary
from ..queue.tools import PostfixTools, QueueError, valid_queue_id
from ..state import StateError
from .common import (
    begin_or_fail,
    confirm,
    console,
    duration_option,
    fail,
    json_out,
    load_config,
    not_recorded,
    open_store,
    warn,
)
from .common import text as _t

SAMPLE = 5
EXIT_OVER = 1


# --------------------------------------------------------------------------- helpers

def _size(text: str | None) -> int | None:
    if text is None:
        return None
    t = text.strip().lower()
    mult = 1
    for suffix, m in (("k", 1024), ("m", 1024 ** 2), ("g", 1024 ** 3)):
        if t.endswith(suffix):
            t, mult = t[:-1], m
            break
    try:
        value = int(float(t) * mult)
    except ValueError:
        fail(f"--min-size: bad size {text!r} (bytes, or with k/M/G)")
    if value < 0:
        fail(f"--min-size: bad size {text!r}")
    return value


def _tools(config_dir: str | None) -> PostfixTools:
    try:
        return PostfixTools(config_dir)
    except QueueError as exc:
        fail(str(exc))


def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


# -------------------------------------------------------------------------- options

def _selector_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--sender", "senders", multiple=True, metavar="ADDR",
                     help="Envelope sender, exact address (case-insensitive; '<>' for the null "
                          "sender). Repeat for any of several."),
        click.option("--sender-domain", "sender_domains", multiple=True, metavar="DOMAIN",
                     help="Sender domain (.example.com: also its subdomains)."),
        click.option("--recipient", "recipients", multiple=True, metavar="ADDR",
                     help="A pending recipient, exact address."),
        click.option("--recipient-domain", "recipient_domains", multiple=True, metavar="DOMAIN",
                     help="Any pending recipient in this domain."),
        click.option("--sasl-user", "sasl_users", multiple=True, metavar="USER",
                     help="SASL login the message was sent with ('admin' also matches "
                          "'admin@realm'). From the queue file, and the logs with --log."),
        click.option("--client-ip", "client_ips", multiple=True, metavar="IP/CIDR",
                     help="Client address the message came from (queue file, --log)."),
        click.option("--older-than", metavar="AGE", help="Queued longer than AGE (90s, 10m, 2h, 1d)."),
        click.option("--newer-than", metavar="AGE", help="Queued for less than AGE."),
        click.option("--queue", "queues", multiple=True, type=click.Choice(QUEUE_NAMES),
                     help="Only this queue (repeatable)."),
        click.option("--min-size", metavar="BYTES", help="At least this size (e.g. 500k, 2M)."),
        click.option("--queue-id", "queue_ids", multiple=True, metavar="QID",
                     help="This queue ID (repeatable)."),
        click.option("--log", "logs", multiple=True, type=click.Path(dir_okay=False),
                     help="Mail log to resolve --sasl-user/--client-ip through (repeatable; "
                          "plain or compressed). Without it the queue files are read."),
        click.option("--year", type=click.IntRange(1970, 9998), help="Year of classic syslog stamps in --log files."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _common_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--config-dir", type=click.Path(file_okay=False),
                     help="Postfix configuration directory of the instance (postqueue -c DIR)."),
        click.option("--config", "config_path", type=click.Path(dir_okay=False),
                     help="relayguard TOML configuration."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _action_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--all", "select_all", is_flag=True,
                     help="Act on every message (required when no selector is given)."),
        click.option("-y", "--yes", is_flag=True, help="Do it without asking (scripts, cron)."),
        click.option("-n", "--dry-run", is_flag=True, help="Show what would be done; change nothing."),
        click.option("--state", "state_path", type=click.Path(dir_okay=False),
                     help="State database for the audit trail (default: [state] path, "
                          "$RELAYGUARD_STATE, /var/lib/relayguard/state.db)."),
        click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                     show_default=True),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _make_selector(kw: dict[str, Any]) -> Selector:
    try:
        sel = Selector(
            senders=tuple(kw.get("senders") or ()),
            sender_domains=tuple(parse_domain(d) for d in kw.get("sender_domains") or ()),
            recipients=tuple(r.strip() for r in kw.get("recipients") or ()),
            recipient_domains=tuple(parse_domain(d) for d in kw.get("recipient_domains") or ()),
            sasl_users=tuple(u.strip() for u in kw.get("sasl_users") or () if u.strip()),
            client_ips=tuple(parse_ip_or_cidr(i) for i in kw.get("client_ips") or ()),
            older_than=duration_option("--older-than", kw.get("older_than")),
            newer_than=duration_option("--newer-than", kw.get("newer_than")),
            queues=tuple(kw.get("queues") or ()),
            min_size=_size(kw.get("min_size")),
            queue_ids=tuple(kw.get("queue_ids") or ()),
        )
    except ValueError as exc:
        fail(str(exc))
    bad = [q for q in sel.queue_ids if not valid_queue_id(q)]
    if bad:
        fail(f"--queue-id: {bad[0]!r} is not a Postfix queue ID")
    if kw.get("sasl_users") is not None and any(not u.strip() for u in kw["sasl_users"]):
        fail("--sasl-user: empty login")
    return sel


def _log_paths(kw: dict[str, Any]) -> list[str] | None:
    logs = list(kw.get("logs") or ())
    return logs or None


@dataclass
class _Run:
    """What every queue subcommand needs."""

    cfg: dict[str, Any]
    tools: PostfixTools
    fmt: str
    console: Console


def _setup(config_path: str | None, config_dir: str | None, fmt: str) -> _Run:
    cfg = load_config(config_path)
    return _Run(cfg, _tools(config_dir), fmt, console(fmt))


# ---------------------------------------------------------------------------- tables

def _message_table(msgs: Iterable[QueuedMessage], now: float, origin: bool,
                   title: str | None = None, width: int = 80) -> Table:
    msgs = list(msgs)
    reason_col = width >= 120  # the delay reason only when there is room for it
    table = Table(title=title, box=box.SIMPLE_HEAD, header_style="bold", title_justify="left",
                  pad_edge=False)
    id_width = max([8, *(len(m.queue_id) for m in msgs)])
    table.add_column("Queue ID", no_wrap=True, min_width=id_width)
    table.add_column("Queue", no_wrap=True, min_width=8)
    table.add_column("Age", justify="right", no_wrap=True, min_width=5)
    table.add_column("Size", justify="right", no_wrap=True, min_width=6)
    table.add_column("Sender", overflow="fold")
    table.add_column("Recipients", overflow="fold")
    if origin:
        table.add_column("SASL user", overflow="fold")
        table.add_column("Client IP", overflow="fold")
    if reason_col:
        table.add_column("Reason", overflow="ellipsis", no_wrap=True, max_width=40)
    for m in msgs:
        rc = m.recipients
        rtext = ", ".join(r.address for r in rc[:2]) + (f" +{len(rc) - 2}" if len(rc) > 2 else "")
        row = [_t(m.queue_id), _t(m.queue_name), _t(_age(m.age(now))), _t(m.size),
               _t(m.sender or "<>"), _t(rtext)]
        if origin:
            row += [_t(m.sasl_username or ""), _t(m.client_address or "")]
        if reason_col:
            row.append(_t(next((r.delay_reason for r in rc if r.delay_reason), "")))
        table.add_row(*row)
    return table


def _preview(run: _Run, verb: str, selection: Selection, extra: str = "") -> None:
    msgs = selection.messages
    c = run.console
    by_queue = ", ".join(f"{q} {n}" for q, n in selection.by_queue().items())
    c.print(Text(f"{verb}: {len(msgs)} message(s) ({by_queue or 'none'}), "
                 f"{selection.total_recipients()} recipient(s){extra}", style="bold"))
    if not msgs:
        return
    senders = ", ".join(f"{s} ({n})" for s, n in selection.top_senders())
    c.print(Text("Top senders: ") + _t(senders))
    users = selection.top_users()
    if users:
        c.print(Text("SASL users: ") + _t(", ".join(f"{u} ({n})" for u, n in users)))
    origin = any(m.origin_source for m in msgs)
    c.print(_message_table(msgs[:SAMPLE], selection.taken_at, origin,
                           title=f"sample ({min(SAMPLE, len(msgs))} of {len(msgs)})",
                           width=c.width))


# ---------------------------------------------------------------------------- group

@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def queue() -> None:
    """Inspect and control the Postfix queue: who is queued, hold, release, requeue, delete
    (with backup), export and restore — by sender, SASL user, client IP, domain or age.

    Selectors combine with AND; a selector given twice means either value. Actions show a
    preview, then ask (on a terminal) or need --yes; --dry-run changes nothing. Every change is
    written to the audit trail (`relayguard history`).
    """


@queue.command()
@_selector_options
@_common_options
@click.option("--origins", is_flag=True,
              help="Also count per SASL user and client IP from the queue files (implied by --log).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Rows per table.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def summary(config_dir: str | None, config_path: str | None, origins: bool, top: int, fmt: str,
            **kw: Any) -> None:
    """qshape-like counts per queue, sender, sender domain and recipient domain by age (minutes);
    with --log or --origins, also per SASL user and client IP."""
    run = _setup(config_path, config_dir, fmt)
    sel = _make_selector(kw)
    logs = _log_paths(kw)
    now = time.time()
    warnings: list[str] = []
    gone: list[str] = []
    result = QueueSummary(now, top)
    from ..sources import InputError

    try:
        log_map = None
        source: Iterable[QueuedMessage] | None = None
        if logs:
            candidates = [m for m in read_queue(run.tools, warnings) if sel.matches_envelope(m, now)]
            log_map = origins_from_logs(logs, {m.queue_id for m in candidates}, kw.get("year"))
            source = candidates
        for m in iter_selected(run.tools, sel, log_map, now, origins or bool(logs), source,
                               gone, warnings):
            result.add(m)
    except (QueueError, InputError) as exc:
        fail(str(exc))
    warn(warnings)
    if fmt == "json":
        d = result.to_dict()
        if not sel.is_empty():
            d["selector"] = sel.describe()
        json_out(d)
        return
    _render_summary(run.console, result)


def _shape_table(title: str, key: str, rows: list[dict[str, Any]], total: bool = True) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, header_style="bold", title_justify="left",
                  pad_edge=False)
    table.add_column(key, overflow="fold", min_width=16)
    table.add_column("T", justify="right", style="bold", no_wrap=True)
    for label in BUCKET_LABELS:
        table.add_column(label, justify="right", no_wrap=True)
    if total:
        table.add_column("rcpts", justify="right", no_wrap=True)
    for r in rows:
        cells = [_t(r["key"]), _t(r["messages"]), *(_t(n or "") for n in r["by_age"])]
        if total:
            cells.append(_t(r["recipients"]))
        table.add_row(*cells)
    return table


def _render_summary(c: Console, s: QueueSummary) -> None:
    d = s.to_dict()
    if not s.messages:
        c.print("The queue is empty (for this selection).")
        return
    oldest = f", oldest {_age(s.now - s.oldest)}" if s.oldest is not None else ""
    c.print(Text(f"{s.messages} message(s), {s.recipients} recipient(s), "
                 f"{s.size / 1024:.0f} KiB{oldest}. Columns: minutes in the queue.", style="bold"))
    c.print(_shape_table("Queues", "queue", d["queues"]))
    c.print(_shape_table("Recipient domains", "domain", d["recipient_domains"]))
    c.print(_shape_table("Sender domains", "domain", d["sender_domains"]))
    c.print(_shape_table("Senders", "sender", d["senders"]))
    if s.with_origin:
        c.print(_shape_table("SASL users", "login", d["sasl_users"]))
        c.print(_shape_table("Client IPs", "client", d["client_ips"]))
        if s.origin_unknown:
            c.print(f"{s.origin_unknown} message(s) of unknown origin (local submission?).")


@queue.command("list")
@_selector_options
@_common_options
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="At most N messages (default: 100 in a table, all in JSON; 0: all).")
@click.option("--origins", is_flag=True, help="Show SASL user and client IP (reads queue files).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "jsonl"]), default="text",
              show_default=True, help="json: one array; jsonl: one object per line (streams).")
def list_cmd(config_dir: str | None, config_path: str | None, limit: int | None, origins: bool,
             fmt: str, **kw: Any) -> None:
    """List queued messages (oldest first in a table; queue order in JSON)."""
    run = _setup(config_path, config_dir, "json" if fmt != "text" else "text")
    sel = _make_selector(kw)
    logs = _log_paths(kw)
    now = time.time()
    if limit is None:
        limit = 100 if fmt == "text" else 0
    with_origin = origins or bool(logs) or sel.needs_origin
    warnings: list[str] = []
    from ..sources import InputError

    try:
        if fmt != "text" and not logs:
            # Stream: 100,000 messages never sit in memory at once.
            n = 0
            out = sys.stdout
            if fmt == "json":
                out.write("[")
            for m in iter_selected(run.tools, sel, None, now, with_origin, None, None, warnings):
                if fmt == "json":
                    out.write(("\n " if n == 0 else ",\n ") + json.dumps(m.to_dict(), ensure_ascii=False))
                else:
                    out.write(json.dumps(m.to_dict(), ensure_ascii=False) + "\n")
                n += 1
                if limit and n >= limit:
                    break
            if fmt == "json":
                out.write("\n]\n" if n else "]\n")
            out.flush()
            warn(warnings)
            return
        selection = select(run.tools, sel, logs, kw.get("year"), now, with_origin)
    except (QueueError, InputError) as exc:
        fail(str(exc))
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(0)
    warn(selection.warnings)
    msgs = selection.messages
    if fmt != "text":
        shown = msgs[:limit] if limit else msgs
        if fmt == "json":
            json_out([m.to_dict() for m in shown])
        else:
            for m in shown:
                click.echo(json.dumps(m.to_dict(), ensure_ascii=False))
        return
    msgs = sorted(msgs, key=lambda m: m.arrival_time)
    shown = msgs[:limit] if limit else msgs
    if not msgs:
        run.console.print("No message in the queue matches." if not sel.is_empty()
                          else "The queue is empty.")
        return
    run.console.print(_message_table(shown, now, with_origin, width=run.console.width))
    more = len(msgs) - len(shown)
    tail = f" ({more} more: --limit 0 or --format json for all)" if more else ""
    run.console.print(f"{len(msgs)} message(s){tail}")


@queue.command()
@_selector_options
@_common_options
@click.option("--threshold", type=click.IntRange(min=1), default=None,
              help="Messages that make it an alarm (default: [detect.queue_surge] threshold, 200).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def check(config_dir: str | None, config_path: str | None, threshold: int | None, fmt: str,
          **kw: Any) -> None:
    """For cron and monitoring: exit 1 when the queue (or the selection) holds THRESHOLD
    messages or more, 0 below it. Selectors narrow what is counted (e.g. --queue deferred)."""
    run = _setup(config_path, config_dir, fmt)
    sel = _make_selector(kw)
    if threshold is None:
        threshold = int(run.cfg.get("detect", {}).get("queue_surge", {}).get("threshold", 200))
    now = time.time()
    counts: dict[str, int] = {}
    total = 0
    warnings: list[str] = []
    logs = _log_paths(kw)
    from ..sources import InputError

    try:
        if logs or sel.needs_origin:
            msgs: Iterable[QueuedMessage] = select(run.tools, sel, logs, kw.get("year"), now).messages
        else:
            msgs = iter_selected(run.tools, sel, None, now, False, None, None, warnings)
        for m in msgs:
            total += 1
            counts[m.queue_name] = counts.get(m.queue_name, 0) + 1
    except (QueueError, InputError) as exc:
        fail(str(exc))
    warn(warnings)
    over = total >= threshold
    if fmt == "json":
        d: dict[str, Any] = {"schema": "relayguard.queue-check/1", "messages": total,
                             "threshold": threshold, "over": over, "queues": counts}
        if not sel.is_empty():
            d["selector"] = sel.describe()
        json_out(d)
    else:
        state = "OVER" if over else "ok"
        per = ", ".join(f"{q} {n}" for q, n in sorted(counts.items()))
        click.echo(f"queue {state}: {total} message(s) (threshold {threshold})"
                   + (f": {per}" if per else ""))
    sys.exit(EXIT_OVER if over else 0)


# --------------------------------------------------------------------------- actions

def _do_action(action: str, kw: dict[str, Any]) -> None:
    fmt = kw.pop("fmt")
    run = _setup(kw.pop("config_path"), kw.pop("config_dir"), fmt)
    yes, dry_run, select_all = kw.pop("yes"), kw.pop("dry_run"), kw.pop("select_all")
    state_path = kw.pop("state_path")
    backup_dir_opt = kw.pop("backup_dir", None)
    sel = _make_selector(kw)
    if sel.is_empty() and not select_all:
        fail(f"no selector given: name what to {action} (--sender, --sasl-user, --client-ip, "
             f"--queue …) or say --all")
    from ..sources import InputError

    try:
        p = operations.plan(run.tools, action, sel, _log_paths(kw), kw.get("year"))
    except (operations.PlanError, QueueError, InputError) as exc:
        fail(str(exc))
    warn(p.warnings)
    act = ACTIONS.get(action)
    verb = (act.verb if act else action).capitalize()
    extra = ""
    if p.on_hold_skipped:
        extra = (f"; {p.on_hold_skipped} already on hold" if action == "hold"
                 else f"; {p.on_hold_skipped} on hold left alone (--queue hold to include them)")
    if fmt == "text" and p.selection is not None:
        _preview(run, f"{verb}{' (dry run)' if dry_run else ''}", p.selection, extra)
    result: dict[str, Any] = {"schema": "relayguard.queue-action/1", "action": action,
                              "dry_run": dry_run} | p.summary()
    if not p.ids or dry_run:
        if fmt == "json":
            json_out(result | {"done": [], "gone": []})
        elif dry_run and p.ids:
            run.console.print("Dry run: nothing changed.")
        return
    n = p.matched
    confirm(f"{verb} these {n} message(s)?", yes, f"{action} {n} message(s)")
    with open_store(state_path, run.cfg) as store:
        try:
            res = operations.execute(p, run.tools, store,
                                     operations.backup_base(run.cfg, backup_dir_opt),
                                     command=sys.argv)
        except StateError as exc:
            not_recorded(action, exc)
        except operations.Interrupted as exc:
            res = exc.result
    if res.audit_warning:
        warn([res.audit_warning])
    if res.error is not None:
        fail(f"{action} failed: {res.error}"
             + (f" (partial backup in {res.backup_dir})" if res.backup_dir else ""))
    warn(res.warnings)
    result |= {"done": res.done, "gone": res.gone,
               "failed": [{"queue_id": q, "reason": r} for q, r in res.failed],
               "backup_dir": str(res.backup_dir) if res.backup_dir else None,
               "audit_id": res.audit_id}
    if run.fmt == "json":
        json_out(result)
    else:
        _report_action(run, res)
    if res.failed:
        fail(f"{len(res.failed)} message(s) could not be backed up"
             + (" and were left on hold" if action == "delete" else ""))


def _report_action(run: _Run, res: operations.QueueResult) -> None:
    action, done, gone, failed, backup_dir = res.action, res.done, res.gone, res.failed, res.backup_dir
    c = run.console
    c.print(Text(f"{operations.past_tense(action).capitalize()} {len(done)} message(s).",
                 style="bold green"))
    if gone:
        c.print(Text(f"{len(gone)} message(s) had already left the queue: ")
                + _t(", ".join(gone[:10]) + (" …" if len(gone) > 10 else "")))
    for qid, why in failed[:10]:
        c.print(Text(f"not backed up, left in place: {qid}: ", style="bold red") + _t(why))
    if backup_dir is not None:
        c.print(Text("Backup: ") + _t(backup_dir))
        c.print(Text("  restore with: ") + _t(f"relayguard queue restore {backup_dir}"))
    if action == "release" and done:
        c.print("Released mail is retried at the next queue run (postqueue -f to retry now).")
    if res.audit_id:
        c.print(f"Audit entry #{res.audit_id} (relayguard history).")


def _make_action(name: str, doc: str, backup: bool = False) -> click.Command:
    def cmd(**kw: Any) -> None:
        _do_action(name, kw)

    cmd.__doc__ = doc
    cmd.__name__ = f"{name}_cmd"
    f: Callable[..., Any] = cmd
    if backup:
        f = click.option("--backup-dir", type=click.Path(file_okay=False),
                         help="Where backups go (default: [queue] backup_dir, "
                              "/var/lib/relayguard/backups).")(f)
    f = _action_options(f)
    f = _common_options(f)
    f = _selector_options(f)
    return queue.command(name)(f)


hold = _make_action("hold", """Put the selected mail on hold (quarantine): nothing is delivered
    or lost; `release` sends it on, `delete` removes it with a backup.""")
release = _make_action("release", """Release held mail (postsuper -H) to be delivered.""")
requeue = _make_action("requeue", """Requeue the selected mail (postsuper -r): rewritten and
    retried from scratch (after a fix to transport, relayhost or rewriting rules).""")
delete = _make_action("delete", """Delete the selected mail, after a backup of each message
    (content and envelope, fsync'ed) that `queue restore` can re-inject. The messages are
    put on hold first so nothing is delivered while they are being saved.""", backup=True)
export = _make_action("export", """Write the same backup as `delete` without deleting anything
    (evidence for an abuse report, a copy before an experiment).""", backup=True)


@queue.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--queue-id", "queue_ids", multiple=True, metavar="QID",
              help="Only this message of the backup (repeatable).")
@click.option("--again", is_flag=True, help="Also re-inject messages this backup already restored.")
@click.option("--config-dir", type=click.Path(file_okay=False),
              help="Postfix instance to inject into (sendmail -C DIR); default: the system's.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("-y", "--yes", is_flag=True, help="Do it without asking.")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would be re-injected.")
@click.option("--state", "state_path", type=click.Path(dir_okay=False), help="State database.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def restore(directory: str, queue_ids: tuple[str, ...], again: bool, config_dir: str | None,
            config_path: str | None, yes: bool, dry_run: bool, state_path: str | None,
            fmt: str) -> None:
    """Re-inject the messages of a backup DIRECTORY (from `delete` or `export`) with their
    original envelope: same sender, same pending recipients (sendmail -f SENDER -- RCPT…).
    They get a new queue ID; messages already restored from DIRECTORY are skipped."""
    run = _setup(config_path, config_dir, fmt)
    try:
        entries = load_backup(directory)
    except QueueError as exc:
        fail(str(exc))
    bad = [q for q in queue_ids if not valid_queue_id(q)]
    if bad:
        fail(f"--queue-id: {bad[0]!r} is not a Postfix queue ID")
    if queue_ids:
        entries = [e for e in entries if e.queue_id in queue_ids]
    already = [e for e in entries if e.restored]
    if not again:
        entries = [e for e in entries if not e.restored]
    recorded = {e.meta.get("config_dir") for e in entries}
    if fmt == "text":
        c = run.console
        c.print(Text(f"Restore{' (dry run)' if dry_run else ''}: {len(entries)} message(s) from ",
                     style="bold") + _t(directory)
                + Text(f"; {len(already)} already restored" if already and not again else ""))
        if recorded and recorded != {run.tools.config_dir}:
            c.print(Text("note: backed up from instance ")
                    + _t(", ".join(str(r or "(default)") for r in recorded))
                    + Text(", restoring into ") + _t(run.tools.config_dir or "(default)"))
        if entries:
            table = Table(title=f"sample ({min(SAMPLE, len(entries))} of {len(entries)})",
                          box=box.SIMPLE_HEAD, header_style="bold", title_justify="left")
            for col in ("Old ID", "Sender", "Recipients", "Arrived"):
                table.add_column(col, overflow="fold")
            for e in entries[:SAMPLE]:
                r = e.recipients
                table.add_row(_t(e.queue_id), _t(e.sender or "<>"),
                              _t(", ".join(r[:2]) + (f" +{len(r) - 2}" if len(r) > 2 else "")),
                              _t(e.meta.get("arrival") or ""))
            c.print(table)
    result: dict[str, Any] = {"schema": "relayguard.queue-action/1", "action": "restore",
                              "dry_run": dry_run, "backup_dir": str(directory),
                              "matched": len(entries), "queue_ids": [e.queue_id for e in entries],
                              "already_restored": [e.queue_id for e in already]}
    if not entries or dry_run:
        if fmt == "json":
            json_out(result | {"done": [], "failed": []})
        elif dry_run and entries:
            run.console.print("Dry run: nothing changed.")
        return
    confirm(f"Re-inject these {len(entries)} message(s)?", yes,
             f"restore {len(entries)} message(s)")
    done: list[str] = []
    failed: list[tuple[str, str]] = []
    with open_store(state_path, run.cfg) as store:
        entry = begin_or_fail(store, "restore",
                              selector={"queue_ids": list(queue_ids)} if queue_ids else {},
                              matched=len(entries), backup_dir=os.path.abspath(directory),
                              config_dir=run.tools.config_dir, command=sys.argv)
        try:
            for e in entries:
                why = reinject(run.tools, e)
                if why is None:
                    done.append(e.queue_id)
                else:
                    failed.append((e.queue_id, why))
        except QueueError as exc:
            failed.append(("*", str(exc)))
        mark_dir_synced(Path(directory))
        status = "ok" if not failed else ("partial" if done else "failed")
        detail = f"{len(failed)} could not be re-injected" if failed else None
        warn(filter(None, [entry.complete(status, queue_ids=done, detail=detail)]))
        audit_id = entry.id
    result |= {"done": done, "failed": [{"queue_id": q, "reason": r} for q, r in failed],
               "audit_id": audit_id}
    if fmt == "json":
        json_out(result)
    else:
        run.console.print(Text(f"Re-injected {len(done)} message(s).", style="bold green"))
        for qid, why in failed[:10]:
            run.console.print(Text(f"failed: {qid}: ", style="bold red") + _t(why))
        if audit_id:
            run.console.print(f"Audit entry #{audit_id} (relayguard history).")
    if failed:
        fail(f"{len(failed)} of {len(entries)} message(s) could not be re-injected "
              f"(the others were)")
