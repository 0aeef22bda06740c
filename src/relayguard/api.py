"""The Python API, served by `relayguard` itself (`relayguard.analyze(...)`): see the package's
docstring. Imported on first use, so that `import relayguard` stays cheap; import from here
(`from relayguard.api import analyze`) for static types."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .analysis import Analysis
from .investigate import Investigation

Config = str | os.PathLike[str] | dict[str, Any] | None
Paths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None
When = float | datetime | None


def load_config(config: Config = None) -> dict[str, Any]:
    """The complete configuration: the defaults, overlaid with a TOML file (a path), or with a
    partial configuration (a dict shaped like the file: ``{"detect": {"queue_surge":
    {"threshold": 500}}}``). None: /etc/relayguard/relayguard.toml when present.
    Raises ConfigError (unknown setting, unreadable file, invalid TOML)."""
    from . import config as config_mod

    if config is None or isinstance(config, dict):
        return config_mod.load(config)
    if isinstance(config, str | os.PathLike):
        return config_mod.load(os.fspath(config))
    raise config_mod.ConfigError(
        f"configuration: a path, a dict or None, not {type(config).__name__}")


def analyze(paths: Paths = None, config: Config = None, *, trusted: Sequence[str] | None = None,
            year: int | None = None, since: When = None, until: When = None) -> Analysis:
    """Read Postfix logs (one path or several; plain or compressed; None: the system's mail
    log) and return the findings, worst first, as `relayguard analyze` reports them.

    `config`: see `load_config`. `trusted`: networks that relay without authentication
    (default: [analyze] trusted, else Postfix's mynetworks). `year`: of classic syslog stamps.
    `since`/`until`: only lines in that period (a datetime, or seconds since the epoch).
    Raises ConfigError, InputError (unreadable input, or nothing in it understood: no Postfix
    line, none in the period — never an empty "all clear"), enrich.geo.GeoError (bad [geo])."""
    from .analysis import analyze as run

    result = run(_paths(paths), load_config(config), list(trusted or ()), year, _when(since),
                 _when(until))
    result.input.require()
    return result


def investigate(kind: str, subject: str, paths: Paths = None, config: Config = None, *,
                trusted: Sequence[str] | None = None, year: int | None = None,
                state: str | None = None, postfix_config_dir: str | None = None,
                queue: bool = True) -> Investigation:
    """What `relayguard show user|ip` reports: everything the logs, the state database
    (`state`, default from the config) and the queue (`queue`, of the Postfix instance at
    `postfix_config_dir`) say about one SASL login (`kind="user"`) or one address ("ip")."""
    from .config import ConfigError
    from .investigate import investigate as run

    if kind not in ("user", "ip"):
        raise ConfigError(f"investigate: kind is 'user' or 'ip', not {kind!r}")
    inv = run(kind, subject, _paths(paths), load_config(config), year,
              list(trusted) if trusted else None, state_path=state,
              config_dir=postfix_config_dir, with_queue=queue)
    inv.input.require()  # as analyze: nothing understood is an error, not "nothing found"
    return inv


def _paths(paths: Paths) -> list[str] | None:
    if paths is None:
        return None
    if isinstance(paths, str | os.PathLike):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


def _when(t: When) -> float | None:
    return t.timestamp() if isinstance(t, datetime) else t
