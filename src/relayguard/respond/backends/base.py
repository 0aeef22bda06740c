"""What every ban backend shares: the protocol Banner drives, and the network helpers."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from typing import Protocol

from ...state.shared import Ban

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Reads every active ban (after the change being made): see BanBackend.
Active = Callable[[], list[Ban]]


def as_network(text: str) -> Network:
    """The network of a ban's (normalised) address or network text."""
    return ipaddress.ip_network(text, strict=False)


def remaining(ban: Ban, now: float) -> int | None:
    """Whole seconds left (at least 1), None for a ban until removed."""
    if ban.expires is None:
        return None
    return max(1, math.ceil(ban.expires - now))


class BanBackend(Protocol):
    """Enforces bans on this machine. Methods raise RespondError when the change could not be
    made and return notes for people (postponed reload, partial cleanup) otherwise. `active()`
    reads every active ban after the change: backends that rebuild a whole table call it (under
    their own lock, so that two processes cannot write each other's stale view)."""

    name: str

    def add(self, ban: Ban, active: Active, now: float) -> list[str]: ...
    def remove(self, network: str, active: Active, now: float) -> list[str]: ...
    def expire(self, expired: list[Ban], active: Active, now: float) -> list[str]: ...
    def sync(self, active: Active, now: float) -> list[str]: ...

