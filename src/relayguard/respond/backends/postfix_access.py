"""`postfix-access`: a `cidr:` map for `check_client_access` whose entries are `REJECT`; it is
rewritten (atomically) without expired entries, and Postfix reloaded, rate-limited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...postfix.maps import Reloader, atomic_write, read_bytes
from ...postfix.programs import PostfixError
from ...sanitize import one_line
from ...state.shared import Ban
from ..common import RespondError, config_section, in_instance, postfix_config_dir
from .base import Active, as_network

DEFAULT_ACCESS_MAP = "/etc/postfix/relayguard_access.cidr"


def access_map_path(cfg: dict[str, Any] | None, config_dir: str | None = None) -> str:
    """`[bruteforce] access_map`; the default one in the instance's directory (in_instance)."""
    path = str(config_section(cfg, "bruteforce").get("access_map") or DEFAULT_ACCESS_MAP)
    return in_instance(path, DEFAULT_ACCESS_MAP, postfix_config_dir(cfg, config_dir))


class PostfixAccessBackend:
    """A `cidr:` table of REJECT entries, regenerated from the active bans on every change.

    main.cf: `smtpd_client_restrictions = check_client_access cidr:/etc/postfix/relayguard_access.cidr`
    (before any permit_*). cidr tables are read into memory, so each change needs a `postfix
    reload`: see Reloader for the rate limit."""

    name = "postfix-access"

    def __init__(self, path: str | Path = DEFAULT_ACCESS_MAP, reloader: Reloader | None = None,
                 text: str = "Access denied") -> None:
        self.path = Path(path)
        if not self.path.is_absolute():
            raise RespondError(f"[bruteforce] access_map: an absolute path is needed, not {path!r}")
        self.text = one_line(text) or "Access denied"
        self.reloader = reloader or Reloader(self.path.parent)

    def render(self, active: list[Ban]) -> bytes:
        lines = ["# Written by relayguard (ban_backend = \"postfix-access\") from its ban list;",
                 "# rewritten on every ban, unban and expiry: do not edit, use `relayguard ban`.",
                 "# main.cf: smtpd_client_restrictions = check_client_access cidr:" + str(self.path)]
        # By version first: IPv4 and IPv6 networks do not compare.
        for b in sorted(active, key=lambda b: (as_network(b.network).version,
                                               as_network(b.network))):
            until = "until removed" if b.expires is None else "until " + b.to_dict()["expires"]
            lines.append(f"# {one_line(b.reason) or 'no reason given'} ({until})")
            lines.append(f"{b.network}\tREJECT {self.text}")
        return ("\n".join(lines) + "\n").encode()

    def _apply(self, active: Active, now: float, force: bool = False) -> list[str]:
        notes: list[str] = []
        try:
            with self.reloader.locked() as st:
                data = self.render(active())
                if force or read_bytes(self.path) != data:
                    atomic_write(self.path, data)
                    note = self.reloader.changed(st, str(self.path), now)
                elif st["pending"]:
                    note = self.reloader.maybe_reload(st, now)
                else:
                    note = None
        except OSError as exc:
            raise RespondError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        except PostfixError as exc:
            raise RespondError(f"{exc}; {self.path} not written") from None
        if note:
            notes.append(note)
        return notes

    def add(self, ban: Ban, active: Active, now: float) -> list[str]:
        return self._apply(active, now)

    def remove(self, network: str, active: Active, now: float) -> list[str]:
        return self._apply(active, now)

    def expire(self, expired: list[Ban], active: Active, now: float) -> list[str]:
        # Rebuilt even when nothing was handed over: entries that vanished from a store with
        # its own expiry (Redis), or bans made on another machine, are picked up here too.
        return self._apply(active, now)

    def sync(self, active: Active, now: float) -> list[str]:
        return self._apply(active, now)

