"""Respond: bans (state, nftables, Postfix access map, external command), account locks
(check_sasl_access map), site hooks, and the automatic response to findings used by `watch`.
Every action is written to the audit trail (`relayguard history`)."""

from .auto import AutoResponder, Done, hold_user_mail
from .backends import (
    BanBackend,
    CommandBackend,
    NftablesBackend,
    PostfixAccessBackend,
    StateBackend,
    make_backend,
)
from .bans import Banner
from .common import CommandResult, Refused, RespondError
from .hooks import run_hooks
from .locks import Locker, SaslAccessMap

__all__ = [
    "AutoResponder", "BanBackend", "Banner", "CommandBackend", "CommandResult", "Done", "Locker",
    "NftablesBackend", "PostfixAccessBackend", "Refused", "RespondError", "SaslAccessMap",
    "StateBackend", "hold_user_mail", "make_backend", "run_hooks",
]
