"""`relayguard queue …` and `relayguard history`.

Wired into the main command with `main.add_command(queue)` and `main.add_command(history)`.
relayguard.cli imports this module at its end, so its helpers (fail, parse_duration, …) are
imported inside functions here, never at module level (that would be an import cycle).

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
from typing import Any, NoReturn

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import timefmt
from ..state import StateError, Store, resolve_path
from .actions import ACTIONS, postsuper
from .backup import backup_messages, load_backup, mark_dir_synced, new_backup_dir, reinject
from .postqueue import QueuedMessage, read_queue
from .select import (
    QUEUE_NAMES,
    Selection,
    Selector,
    iter_selected,
    origins_from_logs,
    parse_domain,
    parse_network,
    select,
)
from .summary import BUCKET_LABELS, QueueSummary
from .tools import PostfixTools, QueueError, valid_queue_id

DEFAULT_BACKUP_DIR = "/var/lib/relayguard/backups"
SAMPLE = 5
EXIT_OVER = 1


# --------------------------------------------------------------------------- helpers

def _fail(message: str) -> NoReturn:
    from ..cli import fail

    fail(message)


def _duration(opt: str, text: str | None) -> float | None:
    if text is None:
        return None
    from ..cli import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        _fail(f"{opt}: {exc}")


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
        _fail(f"--min-size: bad size {text!r} (bytes, or with k/M/G)")
    if value < 0:
        _fail(f"--min-size: bad size {text!r}")
    return value


def _config(path: str | None) -> dict[str, Any]:
    from ..cli import load_config

    return load_config(path)


def _tools(config_dir: str | None) -> PostfixTools:
    try:
        return PostfixTools(config_dir)
    except QueueError as exc:
        _fail(str(exc))


def _console(fmt: str = "text") -> Console:
    # Tables go to stdout; in JSON mode stdout carries only JSON, so people text goes to stderr.
    return Console(stderr=fmt != "text", highlight=False, soft_wrap=False)


def _t(value: Any) -> Text:
    """Queue and log data reach rich as Text, never as markup: a sender such as `[red]x` or
    an escape sequence is shown, not interpreted."""
    s = "" if value is None else str(value)
    return Text("".join(c if c.isprintable() else "?" for c in s))


def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def _json_out(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


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
            client_ips=tuple(parse_network(i) for i in kw.get("client_ips") or ()),
            older_than=_duration("--older-than", kw.get("older_than")),
            newer_than=_duration("--newer-than", kw.get("newer_than")),
            queues=tuple(kw.get("queues") or ()),
            min_size=_size(kw.get("min_size")),
            queue_ids=tuple(kw.get("queue_ids") or ()),
        )
    except ValueError as exc:
        _fail(str(exc))
    bad = [q for q in sel.queue_ids if not valid_queue_id(q)]
    if bad:
        _fail(f"--queue-id: {bad[0]!r} is not a Postfix queue ID")
    if kw.get("sasl_users") is not None and any(not u.strip() for u in kw["sasl_users"]):
        _fail("--sasl-user: empty login")
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
    cfg = _config(config_path)
    return _Run(cfg, _tools(config_dir), fmt, _console(fmt))


def _select(run: _Run, sel: Selector, logs: list[str] | None, year: int | None,
            with_origin: bool = False) -> Selection:
    from ..sources import InputError

    try:
        return select(run.tools, sel, logs, year, with_origin=with_origin)
    except QueueError as exc:
        _fail(str(exc))
    except InputError as exc:
        _fail(str(exc))


def _open_store(state_path: str | None, cfg: dict[str, Any]) -> Store:
    try:
        return Store(resolve_path(state_path, cfg))
    except StateError as exc:
        _fail(str(exc))


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


def _warn(run: _Run, lines: Iterable[str]) -> None:
    for ln in lines:
        click.echo(f"relayguard: warning: {ln}", err=True)


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
        _fail(str(exc))
    _warn(run, warnings)
    if fmt == "json":
        d = result.to_dict()
        if not sel.is_empty():
            d["selector"] = sel.describe()
        _json_out(d)
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
            _warn(run, warnings)
            return
        selection = select(run.tools, sel, logs, kw.get("year"), now, with_origin)
    except (QueueError, InputError) as exc:
        _fail(str(exc))
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(0)
    _warn(run, selection.warnings)
    msgs = selection.messages
    if fmt != "text":
        shown = msgs[:limit] if limit else msgs
        if fmt == "json":
            _json_out([m.to_dict() for m in shown])
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
        _fail(str(exc))
    _warn(run, warnings)
    over = total >= threshold
    if fmt == "json":
        d: dict[str, Any] = {"schema": "relayguard.queue-check/1", "messages": total,
                             "threshold": threshold, "over": over, "queues": counts}
        if not sel.is_empty():
            d["selector"] = sel.describe()
        _json_out(d)
    else:
        state = "OVER" if over else "ok"
        per = ", ".join(f"{q} {n}" for q, n in sorted(counts.items()))
        click.echo(f"queue {state}: {total} message(s) (threshold {threshold})"
                   + (f": {per}" if per else ""))
    sys.exit(EXIT_OVER if over else 0)


# --------------------------------------------------------------------------- actions

def _interactive() -> bool:
    return sys.stdin.isatty()


def _confirm(run: _Run, question: str, yes: bool, what: str) -> None:
    """--yes, or a person at a terminal who says yes; otherwise refuse (exit 2) or stop."""
    if yes:
        return
    if not _interactive():
        _fail(f"refusing to {what} without confirmation (no terminal): "
              "re-run with --yes to do it, or --dry-run to preview only; nothing was changed")
    if not click.confirm(question, default=False, err=True):
        click.echo("Nothing changed.", err=True)
        sys.exit(0)


def _backup_base(cfg: dict[str, Any], cli_value: str | None) -> str:
    if cli_value:
        return cli_value
    return str((cfg.get("queue") or {}).get("backup_dir") or DEFAULT_BACKUP_DIR)


def _do_action(action: str, kw: dict[str, Any]) -> None:
    fmt = kw.pop("fmt")
    run = _setup(kw.pop("config_path"), kw.pop("config_dir"), fmt)
    yes, dry_run, select_all = kw.pop("yes"), kw.pop("dry_run"), kw.pop("select_all")
    state_path = kw.pop("state_path")
    backup_dir_opt = kw.pop("backup_dir", None)
    sel = _make_selector(kw)
    if sel.is_empty() and not select_all:
        _fail(f"no selector given: name what to {action} (--sender, --sasl-user, --client-ip, "
              f"--queue …) or say --all")
    if action == "release":
        if sel.queues and set(sel.queues) != {"hold"}:
            _fail("release applies to held mail only (--queue hold)")
        sel = _with_queues(sel, ("hold",))
    selection = _select(run, sel, _log_paths(kw), kw.get("year"))
    skipped = 0
    if action == "hold" or (action == "requeue" and "hold" not in sel.queues):
        # Holding held mail does nothing; requeueing it would release quarantined mail, so
        # that needs an explicit --queue hold.
        before = len(selection.messages)
        selection.messages = [m for m in selection.messages if m.queue_name != "hold"]
        skipped = before - len(selection.messages)
    _warn(run, selection.warnings)
    act = ACTIONS.get(action)
    verb = (act.verb if act else action).capitalize()
    extra = ""
    if skipped:
        extra = (f"; {skipped} already on hold" if action == "hold"
                 else f"; {skipped} on hold left alone (--queue hold to include them)")
    if fmt == "text":
        _preview(run, f"{verb}{' (dry run)' if dry_run else ''}", selection, extra)
    result: dict[str, Any] = {
        "schema": "relayguard.queue-action/1", "action": action, "dry_run": dry_run,
        "selector": sel.describe(), "matched": len(selection.messages),
        "by_queue": selection.by_queue(),
        "top_senders": [{"sender": s, "messages": n} for s, n in selection.top_senders()],
        "queue_ids": selection.ids, "on_hold_skipped": skipped,
    }
    if not selection.messages or dry_run:
        if fmt == "json":
            _json_out(result | {"done": [], "gone": []})
        elif dry_run and selection.messages:
            run.console.print("Dry run: nothing changed.")
        return
    n = len(selection.messages)
    _confirm(run, f"{verb} these {n} message(s)?", yes, f"{action} {n} message(s)")
    # Opened before acting: if the audit trail cannot be written, nothing is done either.
    with _open_store(state_path, run.cfg) as store:
        _execute(run, action, selection, store, result, backup_dir_opt)


def _with_queues(sel: Selector, queues: tuple[str, ...]) -> Selector:
    from dataclasses import replace

    return replace(sel, queues=queues)


def _execute(run: _Run, action: str, selection: Selection, store: Store,
             result: dict[str, Any], backup_dir_opt: str | None) -> None:
    msgs = selection.messages
    tools = run.tools
    done: list[str] = []
    gone: list[str] = list(selection.gone)
    failed: list[tuple[str, str]] = []
    backup_dir: Path | None = None
    warnings: list[str] = []
    status = "ok"
    try:
        if action in ("delete", "export"):
            backup_dir = new_backup_dir(_backup_base(run.cfg, backup_dir_opt), action)
            to_save = msgs
            if action == "delete":
                # Freeze first: a held message cannot be delivered while it is being saved,
                # so the backup holds exactly the recipients that were still pending.
                held = postsuper(tools, "hold", [m.queue_id for m in msgs if m.queue_name != "hold"])
                warnings += held.warnings
                frozen = set(held.done)
                to_save = [m for m in msgs if m.queue_name == "hold" or m.queue_id in frozen]
                gone += held.gone
            report = backup_messages(tools, backup_dir, to_save, action, selection.selector.describe())
            gone += report.gone
            failed += report.failed
            if action == "delete":
                # Only what is safely on disk, and only from hold, where it was frozen.
                res = postsuper(tools, "delete", report.saved, queue="hold")
                warnings += res.warnings
                done, gone = res.done, gone + res.gone
            else:
                done = report.saved
        else:
            res = postsuper(tools, action, [m.queue_id for m in msgs])
            warnings += res.warnings
            done, gone = res.done, gone + res.gone
    except (QueueError, OSError, KeyboardInterrupt) as exc:
        if isinstance(exc, KeyboardInterrupt):
            why = "interrupted" + (" (messages being deleted stay on hold)"
                                   if action == "delete" else "")
        else:
            why = str(exc) if isinstance(exc, QueueError) else f"{exc.strerror or exc}"
        _audit(store, action, selection, done, gone, backup_dir, run, "failed", why)
        _fail(f"{action} failed: {why}" + (f" (partial backup in {backup_dir})" if backup_dir else ""))
    if failed:
        status = "partial"
    detail = None
    if failed:
        detail = f"{len(failed)} not backed up (kept{' on hold' if action == 'delete' else ''})"
    audit_id = _audit(store, action, selection, done, gone, backup_dir, run, status, detail)
    _warn(run, warnings)
    result |= {"done": done, "gone": gone,
               "failed": [{"queue_id": q, "reason": r} for q, r in failed],
               "backup_dir": str(backup_dir) if backup_dir else None, "audit_id": audit_id}
    if run.fmt == "json":
        _json_out(result)
    else:
        _report_action(run, action, done, gone, failed, backup_dir, audit_id)
    if failed:
        _fail(f"{len(failed)} message(s) could not be backed up"
              + (" and were left on hold" if action == "delete" else ""))


def _audit(store: Store, action: str, selection: Selection, done: list[str], gone: list[str],
           backup_dir: Path | None, run: _Run, status: str, detail: str | None) -> int:
    try:
        return store.record(action, selector=selection.selector.describe(),
                            matched=len(selection.messages), queue_ids=done, gone=gone,
                            backup_dir=backup_dir, config_dir=run.tools.config_dir, status=status,
                            detail=detail, command=sys.argv)
    except StateError as exc:
        # The action happened; losing its record must be loud but must not hide the outcome.
        click.echo(f"relayguard: warning: {exc}", err=True)
        return 0


def _report_action(run: _Run, action: str, done: list[str], gone: list[str],
                   failed: list[tuple[str, str]], backup_dir: Path | None, audit_id: int) -> None:
    act = ACTIONS.get(action)
    past = act.past if act else "exported"
    c = run.console
    c.print(Text(f"{past.capitalize()} {len(done)} message(s).", style="bold green"))
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
    if audit_id:
        c.print(f"Audit entry #{audit_id} (relayguard history).")


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
        _fail(str(exc))
    bad = [q for q in queue_ids if not valid_queue_id(q)]
    if bad:
        _fail(f"--queue-id: {bad[0]!r} is not a Postfix queue ID")
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
            _json_out(result | {"done": [], "failed": []})
        elif dry_run and entries:
            run.console.print("Dry run: nothing changed.")
        return
    _confirm(run, f"Re-inject these {len(entries)} message(s)?", yes,
             f"restore {len(entries)} message(s)")
    done: list[str] = []
    failed: list[tuple[str, str]] = []
    with _open_store(state_path, run.cfg) as store:
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
        try:
            audit_id = store.record("restore", selector={"queue_ids": list(queue_ids)} if queue_ids else {},
                                    matched=len(entries), queue_ids=done,
                                    backup_dir=os.path.abspath(directory),
                                    config_dir=run.tools.config_dir, status=status, detail=detail,
                                    command=sys.argv)
        except StateError as exc:
            click.echo(f"relayguard: warning: {exc}", err=True)
            audit_id = 0
    result |= {"done": done, "failed": [{"queue_id": q, "reason": r} for q, r in failed],
               "audit_id": audit_id}
    if fmt == "json":
        _json_out(result)
    else:
        run.console.print(Text(f"Re-injected {len(done)} message(s).", style="bold green"))
        for qid, why in failed[:10]:
            run.console.print(Text(f"failed: {qid}: ", style="bold red") + _t(why))
        if audit_id:
            run.console.print(f"Audit entry #{audit_id} (relayguard history).")
    if failed:
        _fail(f"{len(failed)} of {len(entries)} message(s) could not be re-injected "
              f"(the others were)")


# --------------------------------------------------------------------------- history

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
    from ..cli import parse_when

    cfg = _config(config_path)
    try:
        path = resolve_path(state_path, cfg)
    except StateError as exc:
        _fail(str(exc))
    if not path.exists():
        entries: list[dict[str, Any]] = []
    else:
        store = _open_store(str(path), cfg)
        with store:
            entries = store.history(limit or None, action, parse_when(since))
    if fmt == "json":
        _json_out({"schema": "relayguard.history/1", "entries": entries})
        return
    c = _console()
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
