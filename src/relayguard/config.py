"""The TOML configuration: bundled defaults (`default.toml`, documented) merged with the user's."""

from __future__ import annotations

import copy
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

SYSTEM_CONFIG = Path("/etc/relayguard/relayguard.toml")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|[smhdw]?)\s*$")
_UNITS = {"ms": 0.001, "": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(value: Any) -> float:
    """Seconds from a setting or an option: a number of seconds, or "250ms", "90s", "20m", "2h",
    "1d", "1w". ValueError (with a message for the user) when it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r} (use e.g. 90s, 20m, 2h, 1d)")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"bad duration {value!r} (use e.g. 90s, 20m, 2h, 1d)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds < 0:
        raise ValueError(f"bad duration {value!r}: negative")
    return seconds


class ConfigError(Exception):
    """The configuration file is unreadable or names unknown settings (message for the user)."""


def defaults() -> dict[str, Any]:
    text = resources.files("relayguard").joinpath("default.toml").read_text("utf-8")
    return tomllib.loads(text)


def _merge(base: dict[str, Any], extra: dict[str, Any], where: str) -> None:
    for key, value in extra.items():
        if key not in base:
            raise ConfigError(f"unknown setting {where}{key}")
        if isinstance(base[key], dict) and isinstance(value, dict):
            _merge(base[key], value, f"{where}{key}.")
        else:
            base[key] = value


def merge_dict(user: dict[str, Any]) -> dict[str, Any]:
    """The defaults with `user` — a partial configuration, shaped like the TOML file — deep-merged
    over them. ConfigError for a setting the defaults do not have (a typo must not be ignored)."""
    if not isinstance(user, dict):
        raise ConfigError(f"configuration: expected a dict of sections, not {type(user).__name__}")
    cfg = defaults()
    _merge(cfg, copy.deepcopy(user), "")
    return cfg


def load(path: str | Path | None = None) -> dict[str, Any]:
    """Defaults, overlaid with `path` (or /etc/relayguard/relayguard.toml when present)."""
    cfg = defaults()
    if path is None:
        if not SYSTEM_CONFIG.exists():
            return cfg
        path = SYSTEM_CONFIG
    try:
        user = tomllib.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    # Sections of later features (watch, policy, state…) pass through untouched.
    for key, value in user.items():
        if key in cfg and isinstance(cfg[key], dict) and isinstance(value, dict):
            _merge(cfg[key], value, f"{key}.")
        else:
            cfg[key] = value
    return cfg
