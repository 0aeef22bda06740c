"""`relayguard config check|show`: is the configuration valid, and what is in effect."""

from __future__ import annotations

from typing import Any

import click

from . import config as config_mod
from .cli import CONFIG, fail


def _load(path: str | None) -> tuple[dict[str, Any], str | None]:
    """The effective configuration and the file it came from (None: defaults only)."""
    if path is None and config_mod.SYSTEM_CONFIG.exists():
        path = str(config_mod.SYSTEM_CONFIG)
    try:
        return config_mod.load(path) if path else config_mod.defaults(), path
    except config_mod.ConfigError as exc:
        fail(str(exc))


@click.group()
def config() -> None:
    """Check the configuration, or print the one in effect (defaults merged)."""


@config.command()
@CONFIG
def check(config_path: str | None) -> None:
    """Validate every key (type, range, choices; unknown keys with a did-you-mean).

    Prints `FILE: OK` (exit 0) or the error (exit 2).
    """
    _, path = _load(config_path)
    if path is None:
        click.echo(f"{config_mod.SYSTEM_CONFIG}: not present, defaults only: OK")
    else:
        click.echo(f"{path}: OK")


@config.command()
@CONFIG
def show(config_path: str | None) -> None:
    """Print the effective configuration as TOML: the defaults with the file's settings."""
    cfg, path = _load(config_path)
    click.echo(f"# relayguard: defaults merged with {path or 'nothing (defaults only)'}")
    click.echo(config_mod.dumps(cfg), nl=False)
