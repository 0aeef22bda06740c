"""`[watch]`, `[bruteforce]` and `[alert]` settings as `watch` uses them (defaults in
default.toml; the fallbacks here only matter for a configuration built by hand)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError, check_sections, duration

#: A malformed setting: the one configuration error class (the message names the setting).
SettingsError = ConfigError


def seconds(value: Any, what: str) -> float:
    """A duration: a number of seconds, or "0.2s", "90s", "10m", "2h", "1d"."""
    try:
        return duration(value)
    except ValueError as exc:
        raise SettingsError(f"{what}: {exc}") from None


@dataclass
class WatchSettings:
    logs: list[str] = field(default_factory=list)
    journald: bool = False
    journalctl: str = "journalctl"
    journald_args: list[str] = field(default_factory=list)
    poll_interval: float = 0.2
    window: float = 3600.0
    detect_interval: float = 5.0
    ignore_older: float = 3600.0
    checkpoint_interval: float = 2.0
    rotate_grace: float = 5.0
    queue_poll: float = 60.0
    queue_threshold: int = 200
    queue_recover: float = 0.8
    postfix_config_dir: str | None = None
    metrics_listen: str = ""
    expire_interval: float = 5.0
    bf_max_failures: int = 3
    bf_window: float = 600.0
    bf_ban_for: float = 1200.0
    alert_bans: bool = False
    cooldown: float = 3600.0

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> WatchSettings:
        w = cfg.get("watch") or {}
        bf = cfg.get("bruteforce") or {}
        al = cfg.get("alert") or {}
        resp = cfg.get("respond") or {}
        # Types and ranges come from the one validator (a no-op on a loaded configuration,
        # the check for one built by hand); what follows only converts.
        check_sections(cfg, "watch", "bruteforce", "alert", "respond", "analyze")
        s = cls()
        s.logs = [str(p) for p in (w.get("logs") or [])]
        s.journald = bool(w.get("journald", False))
        s.journalctl = str(w.get("journalctl") or "journalctl")
        s.journald_args = [str(a) for a in (w.get("journald_args") or [])]
        s.poll_interval = max(0.01, seconds(w.get("poll_interval", "0.2s"), "[watch] poll_interval"))
        s.window = max(600.0, seconds(w.get("window", "1h"), "[watch] window"))
        s.detect_interval = seconds(w.get("detect_interval", "5s"), "[watch] detect_interval")
        s.ignore_older = seconds(w.get("ignore_older", "1h"), "[watch] ignore_older")
        s.checkpoint_interval = seconds(w.get("checkpoint_interval", "2s"),
                                        "[watch] checkpoint_interval")
        s.rotate_grace = seconds(w.get("rotate_grace", "5s"), "[watch] rotate_grace")
        s.queue_poll = seconds(w.get("queue_poll", "60s"), "[watch] queue_poll")
        s.queue_threshold = int(w.get("queue_threshold", 200))
        s.queue_recover = float(w.get("queue_recover", 0.8))
        s.bf_max_failures = int(bf.get("max_failures", 3))
        s.postfix_config_dir = (w.get("postfix_config_dir") or resp.get("postfix_config_dir")
                                or None)
        s.metrics_listen = str(w.get("metrics_listen") or "")
        s.expire_interval = max(0.1, seconds(w.get("expire_interval", "5s"),
                                             "[watch] expire_interval"))
        s.bf_window = seconds(bf.get("window", "10m"), "[bruteforce] window")
        s.bf_ban_for = seconds(bf.get("ban_for", "20m"), "[bruteforce] ban_for")
        s.alert_bans = bool(al.get("bans", False))
        s.cooldown = seconds(al.get("cooldown", "1h"), "[alert] cooldown")
        return s
