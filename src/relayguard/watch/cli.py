"""The `relayguard watch` command."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

import click

from ..cli import CONFIG, EXIT_CLEAN, EXIT_FINDINGS, fail, load_config
from ..postfix.programs import PostfixError
from ..respond.common import RespondError
from ..state import StateError
from .daemon import Watcher, WatchError
from .settings import SettingsError


@click.command()
@CONFIG
@click.option("--state", "state_path", type=click.Path(dir_okay=False),
              help="State database (default: [state] path, /var/lib/relayguard/state.db).")
@click.option("--log", "logs", multiple=True, type=click.Path(dir_okay=False),
              help="Follow this file instead of [watch] logs (repeatable).")
@click.option("--once", is_flag=True,
              help="Read what the logs hold now (from the checkpoint), check once, alert, exit. "
                   "Exit code 1 when findings of severity high or critical are in the window.")
@click.option("-v", "--verbose", is_flag=True, help="Log every line of what happens (debug).")
def watch(config_path: str | None, state_path: str | None, logs: tuple[str, ...], once: bool,
          verbose: bool) -> None:
    """Follow the mail log and the queue: ban brute force at once, alert, respond.

    Follows the files of [watch] logs (rotation and truncation handled; a restart resumes from
    the checkpoint in the state database) or the journal ([watch] journald), runs the detectors
    of `analyze` on a sliding window, polls the queue, sends alerts ([alert]) and serves
    Prometheus metrics ([watch] metrics_listen). Stops cleanly on SIGTERM or Ctrl-C.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    cfg = load_config(config_path)
    try:
        watcher = Watcher(cfg, state_path, list(logs))
        from ..respond.enforcement import notice

        for what in ("bans", "locks"):  # what watch bans and locks must be enforced too
            line = notice(cfg, watcher.settings.postfix_config_dir, what)
            if line:
                click.echo(line, err=True)
        if once:
            stats = watcher.run_once()
        else:
            stop = threading.Event()

            def on_signal(signum: int, frame: FrameType | None) -> None:
                logging.getLogger("relayguard.watch").info(
                    "%s: final checkpoint, then exit", signal.Signals(signum).name)
                stop.set()

            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
            watcher.run(stop)
            sys.exit(EXIT_CLEAN)
    except (SettingsError, WatchError, StateError, PostfixError, RespondError, ValueError) as exc:
        fail(str(exc))
    except OSError as exc:  # e.g. the metrics address is taken
        fail(f"cannot start: {exc}")
    click.echo(f"lines {stats.lines}, events {stats.events}, skipped as old {stats.stale}, "
               f"auth failures {stats.auth_failures}, messages {stats.messages}")
    for ip in stats.bans:
        click.echo(f"banned {ip}")
    if stats.queue is not None:
        q = stats.queue
        click.echo(f"queue: {q.error}" if q.error else
                   f"queue: {q.total} message(s) " + ", ".join(f"{k} {v}" for k, v in
                                                             sorted(q.queues.items())))
    for f in stats.findings:
        click.echo(f"{f.severity.upper():8} {f.kind:20} {f.subject}: {f.summary}")
    sys.exit(EXIT_FINDINGS if any(f.severity in ("critical", "high") for f in stats.findings)
             else EXIT_CLEAN)
