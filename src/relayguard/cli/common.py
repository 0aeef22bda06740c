"""What every command shares: the one `fail`, the one configuration loader, the options
several families take, time and duration parsing, confirmation, safe text and output.

Only the modules of relayguard.cli import this (nothing below the command layer may)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.text import Text

from .. import config as config_mod
from .. import timefmt
from ..state import StateError, Store, audit_trail, resolve_path

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def fail(message: str) -> NoReturn:
    """One clear line on stderr and exit 2: never a traceback for bad input."""
    click.echo(f"relayguard: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def warn(lines: Iterable[str]) -> None:
    for line in lines:
        click.echo(f"relayguard: warning: {line}", err=True)


def load_config(path: str | None) -> dict[str, Any]:
    try:
        return config_mod.load(path)
    except config_mod.ConfigError as exc:
        fail(str(exc))


def open_store(state_path: str | None, cfg: dict[str, Any]) -> Store:
    """The state database (audit trail, bans, locks), or exit 2 saying why it cannot be opened."""
    try:
        return Store(resolve_path(state_path, cfg))
    except StateError as exc:
        fail(str(exc))


def not_recorded(what: str, exc: StateError) -> NoReturn:
    """The one failure policy of the audit trail: no entry, no change."""
    fail(f"{what} not done: the audit trail cannot be written: {exc}")


def begin_or_fail(store: Store | None, action: str, **entry: Any) -> audit_trail.Entry:
    """Open the audit entry of a change about to be made, or exit 2 without making it."""
    try:
        return audit_trail.begin(store, action, **entry)
    except StateError as exc:
        not_recorded(action, exc)


def parse_duration(text: str) -> float:
    """`90s`, `10m`, `2h`, `1d` → seconds (a unit is required on the command line)."""
    if text.strip()[-1:].isdigit():
        raise ValueError(f"bad duration {text!r} (use e.g. 90s, 10m, 2h, 1d)")
    return config_mod.duration(text)


def duration_option(opt: str, text: str | None) -> float | None:
    """An option holding a duration, None when not given; a bad one is a usage error."""
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        fail(f"{opt}: {exc}")


def parse_when(text: str | None) -> float | None:
    """`--since`/`--until`: an ISO 8601 time, or a duration ago (`2h`, `1d`)."""
    if text is None:
        return None
    try:
        ts = time.time() - parse_duration(text)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            fail(f"bad time {text!r}: use ISO 8601 (2026-06-21T08:00) or a duration ago (2h, 1d)")
        try:
            ts = dt.timestamp() if dt.tzinfo else time.mktime(dt.timetuple())
        except (OverflowError, ValueError):
            ts = float("nan")  # not in range, below
    if not timefmt.in_range(ts):  # no log line carries it (and it could not be shown)
        fail(f"bad time {text!r}: give a time between 1970 and 9998")
    return ts


def parse_window(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    """--since and --until as epoch seconds; an empty window is a usage error, before any reading."""
    lo, hi = parse_when(since), parse_when(until)
    if lo is not None and hi is not None and lo > hi:
        fail(f"--since {since} is after --until {until}: no time is in between")
    return lo, hi


def interactive() -> bool:
    return sys.stdin.isatty()


def confirm(question: str, yes: bool, what: str) -> None:
    """--yes, or a person at a terminal who says yes; otherwise refuse (exit 2) or stop (0)."""
    if yes:
        return
    if not interactive():
        fail(f"refusing to {what} without confirmation (no terminal): re-run with --yes to do "
             "it, or --dry-run to preview only; nothing was changed")
    if not click.confirm(question, default=False, err=True):
        click.echo("Nothing changed.", err=True)
        sys.exit(0)


def text(value: Any) -> Text:
    """Data from logs, the queue and files reaches rich as Text, never as markup: a sender such
    as `[red]x` or an escape sequence is shown, not interpreted."""
    s = "" if value is None else str(value)
    return Text("".join(c if c.isprintable() else "?" for c in s))


def console(fmt: str = "text", soft_wrap: bool = False) -> Console:
    # In JSON mode stdout carries only JSON, so text for people goes to stderr.
    return Console(stderr=fmt != "text", highlight=False, soft_wrap=soft_wrap)


def json_out(obj: Any, indent: int | None = None) -> None:
    click.echo(json.dumps(obj, indent=indent, ensure_ascii=False))


@contextmanager
def output(path: str | None):  # type: ignore[no-untyped-def]
    """Where a report goes. A file is written beside its name and renamed into place once
    complete, so an error or an interrupt never leaves half a report (or an empty one) behind.
    What is not a plain file (/dev/stdout, a FIFO, a symlink), or sits in a directory we may
    not create files in, is written directly."""
    if path is None:
        yield sys.stdout
        return
    target = Path(path)
    direct = target.is_symlink() or (target.exists() and not target.is_file())
    tmp = str(target.with_name(f".{target.name}.{os.getpid()}.tmp"))
    done = False
    try:
        try:
            fh = open(path if direct else tmp, "w", encoding="utf-8")  # noqa: SIM115 — closed below
        except PermissionError:
            if direct or not target.exists():
                raise
            direct = True
            fh = open(path, "w", encoding="utf-8")  # noqa: SIM115
        with fh:
            if not direct and target.exists():
                os.chmod(tmp, target.stat().st_mode & 0o7777)
            yield fh
        if not direct:
            os.replace(tmp, path)
        done = True
    except OSError as exc:
        fail(f"{path}: cannot write ({exc.strerror})")
    finally:
        if not done and not direct:
            Path(tmp).unlink(missing_ok=True)


FILES = click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
CONFIG = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                      help="TOML configuration (default: /etc/relayguard/relayguard.toml when present).")
YEAR = click.option("--year", type=click.IntRange(1970, 9998),  # timefmt.in_range
                    help="Year of classic syslog stamps (default: inferred from the file's mtime).")
