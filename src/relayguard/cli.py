"""The `relayguard` command: a thin layer of argument parsing over the library.

Exit codes: 0 nothing at high or above, 1 high or critical findings, 2 usage or input error.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any, NoReturn

import click
from rich.console import Console

from . import config as config_mod
from . import timefmt
from .analysis import analyze as run_analysis
from .enrich.geo import GeoError
from .pipeline import run
from .postfix.programs import PostfixError
from .sources import InputError

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def fail(message: str) -> NoReturn:
    """One clear line on stderr and exit 2: never a traceback for bad input."""
    click.echo(f"relayguard: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def parse_duration(text: str) -> float:
    """`90s`, `10m`, `2h`, `1d` → seconds (a unit is required on the command line)."""
    if text.strip()[-1:].isdigit():
        raise ValueError(f"bad duration {text!r} (use e.g. 90s, 10m, 2h, 1d)")
    return config_mod.duration(text)


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


def load_config(path: str | None) -> dict[str, Any]:
    try:
        return config_mod.load(path)
    except config_mod.ConfigError as exc:
        fail(str(exc))


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


def _progress(paths: list[str]) -> tuple[Any, Callable[[int], None] | None]:
    """A byte-based progress bar on stderr, only for people (a terminal) and large inputs."""
    if not sys.stderr.isatty() or "-" in paths:
        return None, None
    try:
        total = sum(os.stat(p).st_size for p in paths)
    except OSError:
        return None, None
    if total < 50_000_000:
        return None, None
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    prog = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    task = prog.add_task("reading logs", total=total)
    pending = [0]

    def on_bytes(n: int) -> None:
        pending[0] += n
        if pending[0] > 4_000_000:
            prog.advance(task, pending[0])
            pending[0] = 0

    return prog, on_bytes


FILES = click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
CONFIG = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                      help="TOML configuration (default: /etc/relayguard/relayguard.toml when present).")
YEAR = click.option("--year", type=click.IntRange(1970, 9998),  # timefmt.in_range
                    help="Year of classic syslog stamps (default: inferred from the file's mtime).")


# Commands that live in their own package, imported only when used: `relayguard analyze` and
# `relayguard ban add` start in a tenth of a second instead of loading every subsystem.
LAZY_COMMANDS = {
    "queue": "relayguard.queue.cli:queue",
    "history": "relayguard.queue.cli:history",
    "ban": "relayguard.respond.cli:ban",
    "lock": "relayguard.respond.cli:lock",
    "unlock": "relayguard.respond.cli:unlock",
    "locks": "relayguard.respond.cli:locks",
    "watch": "relayguard.watch.cli:watch",
    "policy": "relayguard.policy.cli:policy",
    "serve": "relayguard.dashboard.cli:serve",
    "audit": "relayguard.audit.cli:audit",
    "probe-relay": "relayguard.audit.cli:probe_relay",
    "dnsbl": "relayguard.audit.cli:dnsbl",
    "password-check": "relayguard.audit.cli:password_check",
    "trusted": "relayguard.trusted.cli:trusted",
    "firewall": "relayguard.firewall.cli:firewall",
    "config": "relayguard.config_cli:config",
    "setup": "relayguard.setup_cli:setup",
    "status": "relayguard.setup_cli:status",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            import importlib

            module, _, attr = LAZY_COMMANDS[name].partition(":")
            try:
                return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
            except ModuleNotFoundError as exc:
                if exc.name and module.startswith(exc.name):
                    return None  # a subsystem not in this build
                raise
        return super().get_command(ctx, name)


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """`relayguard 0.1.0 (compiled with mypyc)` or `(pure Python: <why>)`."""
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import PackageNotFoundError, version

    from .buildinfo import describe

    try:
        number = version("relayguard")
    except PackageNotFoundError:  # run from a source tree that was never installed
        number = "(not installed)"
    click.echo(f"relayguard {number} ({describe()})")
    ctx.exit()


@click.group(cls=LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Show the version and whether the hot path is compiled, then exit.")
def main() -> None:
    """relayguard — find who is sending spam through your Postfix server, stop it, prevent it.

    Start with `relayguard analyze` on your mail log.
    """


@main.command()
@FILES
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text",
              show_default=True, help="html: a self-contained incident report (use with -o).")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), help="Write the report to this file.")
@click.option("--trusted", multiple=True, metavar="CIDR",
              help="Trusted network (repeatable; !CIDR excludes). Default: config, else "
                   "Postfix's mynetworks.")
@click.option("--config-dir", type=click.Path(file_okay=False),
              help="Postfix config_directory whose mynetworks is trusted (postconf -c DIR).")
@click.option("--since", help="Only lines at or after this time (ISO 8601, or a duration ago: 2h).")
@click.option("--until", help="Only lines at or before this time.")
@YEAR
@CONFIG
def analyze(files: tuple[str, ...], fmt: str, out: str | None, trusted: tuple[str, ...],
            config_dir: str | None, since: str | None, until: str | None, year: int | None,
            config_path: str | None) -> None:
    """Name the accounts, hosts and addresses sending spam, with evidence and the fix.

    FILES are Postfix logs (plain, .gz, .bz2, .xz — detected by content; `-` for stdin;
    rotated sets in any order). Without FILES, the system's mail log is read.
    Exit code 0: nothing high; 1: high or critical findings; 2: usage or input error, also
    when no line is a Postfix or firewall line, or none is inside --since/--until.
    """
    cfg = load_config(config_path)
    paths = list(files)
    from .postfix.mynetworks import parse_network

    for t in trusted:
        net, problem = parse_network(t.removeprefix("!"))
        if net is None or (problem and problem.startswith("host bits")):
            fail(f"--trusted {t}: {problem or 'not an address or network'} (e.g. "
                 "192.168.0.0/16, !192.168.1.50)")
    lo, hi = parse_window(since, until)
    prog, on_bytes = _progress(paths)
    try:
        if prog is not None:
            with prog:
                result = run_analysis(paths, cfg, list(trusted), year, lo, hi, on_bytes,
                                      config_dir=config_dir)
        else:
            result = run_analysis(paths, cfg, list(trusted), year, lo, hi, config_dir=config_dir)
        result.input.require()  # no report about a log with nothing in it to analyze
    except (InputError, GeoError, PostfixError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted")
    from .report import render_html, render_json, render_text

    with output(out) as fh:
        if fmt == "json":
            fh.write(render_json(result))
        elif fmt == "html":
            fh.write(render_html(result))
        else:
            console = Console(file=fh, force_terminal=None if out is None else False,
                              width=None if out is None else 120)
            render_text(result, console)
    sys.exit(EXIT_FINDINGS if result.has_high() else EXIT_CLEAN)


def _write_jsonl(fh: IO[str], obj: dict[str, Any]) -> None:
    fh.write(json.dumps(obj, ensure_ascii=False))
    fh.write("\n")


@main.command()
@FILES
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--stats", is_flag=True, help="Print line counts (read, unparsed) on stderr.")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False))
@YEAR
def parse(files: tuple[str, ...], fmt: str, stats: bool, out: str | None, year: int | None) -> None:
    """One JSON object per recognised log line (for jq, Elasticsearch, Loki).

    Lines with no readable header are counted as unparsed (see --stats), never fatal.
    """
    from .sources import files as srcfiles

    try:
        paths = list(files) or srcfiles.default_logs()
        with output(out) as fh:
            seen = run(paths, year, on_event=lambda ev: _write_jsonl(fh, ev.to_dict()))
            seen.summary().require()
    except InputError as exc:
        fail(str(exc))
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_CLEAN)
    if stats:
        click.echo(f"lines={seen.lines} unparsed={seen.unparsed}", err=True)


@main.command("messages")
@FILES
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False))
@YEAR
def messages_cmd(files: tuple[str, ...], fmt: str, out: str | None, year: int | None) -> None:
    """One correlated record per message (client, SASL user, sender, recipients and outcomes).

    In order of completion; messages still open at the end of input come last, "removed": false.
    """
    from .sources import files as srcfiles

    try:
        paths = list(files) or srcfiles.default_logs()
        with output(out) as fh:
            run(paths, year, on_message=lambda m: _write_jsonl(fh, m.to_dict())).summary().require()
    except InputError as exc:
        fail(str(exc))
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_CLEAN)


@main.group()
def show() -> None:
    """Everything the logs, the queue and the state say about one account or one address."""


def _show(kind: str, subject: str, files: tuple[str, ...], fmt: str, year: int | None,
          config_path: str | None, state_path: str | None, config_dir: str | None,
          no_queue: bool) -> None:
    from .investigate import investigate
    from .report.investigation import render_investigation

    cfg = load_config(config_path)
    try:
        inv = investigate(kind, subject, list(files), cfg, year, state_path=state_path,
                          config_dir=config_dir, with_queue=not no_queue)
        inv.input.require()
    except (InputError, GeoError, PostfixError) as exc:
        fail(str(exc))
    if fmt == "json":
        click.echo(json.dumps(inv.to_dict(), indent=2, ensure_ascii=False))
    else:
        render_investigation(inv, Console())
    sys.exit(EXIT_FINDINGS if any(f.severity in ("critical", "high") for f in inv.findings) else EXIT_CLEAN)


SHOW_OPTIONS = [
    click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True),
    YEAR, CONFIG,
    click.option("--state", "state_path", type=click.Path(dir_okay=False),
                 help="State database (bans, locks); default from the config."),
    click.option("--config-dir", type=click.Path(file_okay=False),
                 help="Postfix config_directory of the instance: its queue, mynetworks, maillog_file."),
    click.option("--no-queue", is_flag=True, help="Do not look in the mail queue."),
]


def _with_show_options(f):  # type: ignore[no-untyped-def]
    for opt in reversed(SHOW_OPTIONS):
        f = opt(f)
    return f


@show.command("user")
@click.argument("user")
@FILES
@_with_show_options
def show_user(user: str, files: tuple[str, ...], fmt: str, year: int | None, config_path: str | None,
              state_path: str | None, config_dir: str | None, no_queue: bool) -> None:
    """One SASL login: where it logged in from, failures, what it sent, lock, queued mail.

    `admin` also matches `admin@realm` (Cyrus logs the realm). Exit 1 when a finding about the
    account is high or critical.
    """
    _show("user", user, files, fmt, year, config_path, state_path, config_dir, no_queue)


@show.command("ip")
@click.argument("ip")
@FILES
@_with_show_options
def show_ip(ip: str, files: tuple[str, ...], fmt: str, year: int | None, config_path: str | None,
            state_path: str | None, config_dir: str | None, no_queue: bool) -> None:
    """One client address: logins, failures and usernames tried, mail relayed, rejects,
    direct-SMTP connections, ban, queued mail. Exit 1 when a finding about it is high or critical.
    """
    import ipaddress

    try:
        ip = str(ipaddress.ip_address(ip))
    except ValueError:
        fail(f"{ip!r} is not an IP address")
    _show("ip", ip, files, fmt, year, config_path, state_path, config_dir, no_queue)


@main.command()
@click.option("--scenario", default="all", show_default=True,
              help="baseline, compromised-account, trusted-relay, bruteforce, direct-smtp, blocklisted, all")
@click.option("--lines", "nlines", type=click.IntRange(min=1), default=20000, show_default=True,
              help="Approximate number of log lines.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              show_default=True, help="Log file to write.")
@click.option("--labels", type=click.Path(dir_okay=False), help="Write the ground truth (JSON) here.")
def simulate(scenario: str, nlines: int, seed: int, out: str, labels: str | None) -> None:
    """Write deterministic, labeled synthetic Postfix traffic (for demos, tests, benchmarks)."""
    from .simulate import write_simulation

    try:
        if out == "-":
            write_simulation(scenario, nlines, sys.stdout, seed=seed,
                             labels=Path(labels) if labels else None)
        else:
            write_simulation(scenario, nlines, Path(out), seed=seed,
                             labels=Path(labels) if labels else None)
    except ValueError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write: {exc}")
