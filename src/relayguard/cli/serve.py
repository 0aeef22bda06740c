"""`relayguard serve`: start the dashboard (uvicorn) on a loopback address with a token."""

from __future__ import annotations

import os
import secrets

import click

from .common import fail, load_config


@click.command()
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="Address to bind (default [serve] listen, 127.0.0.1:8425). Keep it on loopback "
                   "and reach it through SSH or a reverse proxy.")
@click.option("--token", default=None, help="Access token (default $RELAYGUARD_TOKEN, [serve] token, or a new random one).")
@click.option("--state", "state_path", type=click.Path(dir_okay=False), help="State database.")
@click.option("--config-dir", type=click.Path(file_okay=False), help="Postfix config_directory of the instance.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML configuration.")
def serve(listen: str | None, token: str | None, state_path: str | None, config_dir: str | None,
          config_path: str | None) -> None:
    """A small dashboard: findings, bans and locks with their expiry, the queue; unban, unlock,
    hold/release a selection — each confirmed and written to the audit trail."""
    from ..dashboard.app import Dashboard, create_app

    cfg = load_config(config_path)
    section = cfg.get("serve") or {}
    listen = listen or section.get("listen") or "127.0.0.1:8425"
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        fail(f"--listen {listen!r}: use HOST:PORT")
    token = token or os.environ.get("RELAYGUARD_TOKEN") or section.get("token") or secrets.token_urlsafe(24)
    import uvicorn

    app = create_app(Dashboard(cfg, token, state_path, config_dir))
    click.echo(f"relayguard dashboard: http://{host.strip('[]')}:{port}/?token={token}", err=True)
    uvicorn.run(app, host=host.strip("[]"), port=int(port), log_level="warning")
