"""The records the machines of a site share: a ban, a lock (see `state.shared`).

Both stores (`state.shared.SqliteShared`, `state.redis.RedisShared`) build these, so they live
below both of them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Any

from ..timefmt import iso

__all__ = ["Ban", "Lock", "covers", "normalise_network"]


@dataclass
class Ban:
    network: str  # normalised: "203.0.113.7" for one address, "203.0.113.0/24" for a network
    reason: str
    since: float
    expires: float | None  # None: until removed
    backend: str = "state"
    source: str | None = None

    def active(self, now: float) -> bool:
        return self.expires is None or self.expires > now

    def to_dict(self) -> dict[str, Any]:
        """`ban list --format json`: ip, reason, since, expires, backend (ISO 8601 times)."""
        return {"ip": self.network, "reason": self.reason, "since": iso(self.since, "seconds"),
                "expires": iso(self.expires, "seconds"),
                "backend": self.backend, "source": self.source}


@dataclass
class Lock:
    user: str
    reason: str
    since: float
    expires: float | None = None
    source: str | None = None

    def active(self, now: float) -> bool:
        return self.expires is None or self.expires > now

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["since"] = iso(self.since, "seconds")
        d["expires"] = iso(self.expires, "seconds")
        return d


def normalise_network(text: str) -> str:
    """`203.0.113.7` → itself, `203.0.113.7/24` → `203.0.113.0/24`; ValueError when not one."""
    text = text.strip()
    if "/" not in text:
        return str(ipaddress.ip_address(text))
    net = ipaddress.ip_network(text, strict=False)
    if net.num_addresses == 1:
        return str(net.network_address)
    return str(net)


def covers(network: str, ip: str) -> bool:
    """Does a normalised ban `network` cover address `ip`?"""
    if "/" not in network:
        return network == ip
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(network)
    except ValueError:
        return False
