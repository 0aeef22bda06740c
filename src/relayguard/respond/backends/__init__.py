"""Ban backends: what enforces a ban on this machine (`[bruteforce] ban_backend`).

* :mod:`.state` — recorded only; the policy server refuses the client.
* :mod:`.nftables` — kernel sets and drop rules in table `inet relayguard`.
* :mod:`.postfix_access` — a `cidr:` map of REJECT entries for `check_client_access`.
* :mod:`.command` — site programs (fail2ban-client, …) from argv templates.

:func:`make_backend` builds the configured one; :class:`~.base.BanBackend` is what Banner
(:mod:`relayguard.respond.bans`) drives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...config import BAN_BACKENDS
from ...postfix.maps import Reloader
from ..common import RespondError, config_section, duration, postfix_config_dir
from .base import BanBackend
from .command import CommandBackend
from .nftables import DEFAULT_PORTS, NftablesBackend
from .postfix_access import PostfixAccessBackend, access_map_path
from .state import StateBackend


def make_backend(cfg: dict[str, Any] | None, config_dir: str | None = None,
                 name: str | None = None) -> BanBackend:
    """The backend named by `[bruteforce] ban_backend` (or `name`)."""
    bf = config_section(cfg, "bruteforce")
    name = name or str(bf.get("ban_backend") or "state")
    if name == "state":
        return StateBackend()
    if name == "nftables":
        return NftablesBackend(str(bf.get("nftables_table") or "relayguard"),
                               bf.get("nftables_ports") or DEFAULT_PORTS,
                               duration(bf.get("command_timeout", "30s"),
                                        "[bruteforce] command_timeout"))
    if name == "postfix-access":
        path = Path(access_map_path(cfg, config_dir))
        interval = duration(bf.get("reload_interval", "30s"), "[bruteforce] reload_interval")
        return PostfixAccessBackend(path, Reloader(path.parent, postfix_config_dir(cfg, config_dir),
                                                   interval),
                                    str(bf.get("access_map_text") or "Access denied"))
    if name == "command":
        if not bf.get("ban_command"):
            raise RespondError('[bruteforce] ban_backend = "command" needs ban_command, e.g. '
                               '["fail2ban-client", "set", "postfix", "banip", "{ip}"]')
        return CommandBackend(bf["ban_command"], bf.get("unban_command") or None,
                              duration(bf.get("command_timeout", "30s"),
                                       "[bruteforce] command_timeout"))
    raise RespondError(f"[bruteforce] ban_backend: unknown backend {name!r} "
                       f"(one of: {', '.join(BAN_BACKENDS)})")


__all__ = ["BanBackend", "CommandBackend", "NftablesBackend", "PostfixAccessBackend",
           "StateBackend", "access_map_path", "make_backend"]
