"""`relayguard policy serve|report`."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from ..state.store import StateError
from .common import CONFIG, fail, load_config

STATE = click.option("--state", "state_path", type=click.Path(dir_okay=False),
                     help="State database (default: $RELAYGUARD_STATE, [state] path, "
                          "/var/lib/relayguard/state.db). Ignored when [state] url is set.")


def _settings(cfg: dict[str, Any]) -> Any:
    from ..policy.limits import PolicyConfigError, PolicySettings

    try:
        return PolicySettings.from_config(cfg)
    except PolicyConfigError as exc:
        fail(str(exc))


@click.group()
def policy() -> None:
    """Postfix policy server: rate limits, bans and locks enforced before mail is accepted.

    See docs/policy.md for the main.cf lines (check_policy_service).
    """


@policy.command()
@click.option("--listen", "listen", multiple=True, metavar="HOST:PORT|unix:PATH",
              help="Where to listen (repeatable). Default: [policy] listen, 127.0.0.1:10031.")
@CONFIG
@STATE
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
def serve(listen: tuple[str, ...], config_path: str | None, state_path: str | None,
          log_level: str) -> None:
    """Answer Postfix's policy requests until SIGTERM or SIGINT.

    Fail-open: if relayguard itself fails (a bug, the state store down or slow) it answers
    DUNNO and logs; `fail_closed = true` answers DEFER_IF_PERMIT instead.
    """
    from ..policy.server import parse_listen, run
    from ..state.counters import MemoryCounters, SqliteCounters
    from ..state.shared import open_shared
    from ..state.store import resolve_path

    cfg = load_config(config_path)
    settings = _settings(cfg)
    logging.basicConfig(level=getattr(logging, log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s relayguard-policy[%(process)d]: %(levelname)s "
                               "%(message)s")
    log = logging.getLogger("relayguard.policy")
    addresses = list(listen) or settings.listen
    for spec in addresses:
        try:
            parse_listen(spec)
        except ValueError as exc:
            fail(str(exc))
    url = (cfg.get("state") or {}).get("url")
    counters: Any
    if url:
        from ..state.redis import RedisCounters, safe_url

        counters = RedisCounters(url, timeout=max(settings.state_timeout, 0.05))
        log.info("counters, bans and locks in Redis %s", safe_url(url))
    else:
        try:
            path = resolve_path(state_path, cfg)
            counters = SqliteCounters(path, settings.max_window)
            log.info("counters in memory, saved to %s every %gs", path, settings.flush_interval)
        except StateError as exc:
            # Fail open: limits still work from memory, only a restart forgets them.
            log.error("%s; counting in memory only (lost on restart)", exc)
            counters = MemoryCounters()

    def shared_factory() -> Any:
        return open_shared(cfg, state_path)

    try:
        run(settings, counters, shared_factory, addresses)
    except OSError as exc:
        fail(f"cannot listen on {', '.join(addresses)}: {exc.strerror or exc}")


@policy.command()
@CONFIG
@STATE
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--all", "show_all", is_flag=True, help="List every counted key, not only those "
              "near or over a limit.")
@click.option("--near", type=click.FloatRange(0, 1, min_open=True),
              help="Share of a limit that counts as near (default: [policy] near_ratio, 0.8).")
def report(config_path: str | None, state_path: str | None, fmt: str, show_all: bool,
           near: float | None) -> None:
    """Who is near or over their rate limits now (from the policy server's counters)."""
    from ..policy import report as rep

    cfg = load_config(config_path)
    settings = _settings(cfg)
    try:
        source, usage = rep.usage_source(cfg, state_path)
    except StateError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. Redis unreachable: one line, exit 2
        fail(f"cannot read the counters: {exc}")
    entries = rep.build(settings, usage, show_all=show_all, near=near)
    if fmt == "json":
        click.echo(json.dumps(rep.to_json(entries, source), indent=2, ensure_ascii=False))
    else:
        click.echo(rep.render_text(entries, source, settings), nl=False)
