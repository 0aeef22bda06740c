"""`state`: the ban is recorded only; the policy server (`relayguard policy serve`) refuses
the client."""

from __future__ import annotations

from ...state.shared import Ban
from .base import Active


class StateBackend:
    """Recorded only: the policy server reads the shared state and refuses banned clients."""

    name = "state"

    def add(self, ban: Ban, active: Active, now: float) -> list[str]:
        return []

    def remove(self, network: str, active: Active, now: float) -> list[str]:
        return []

    def expire(self, expired: list[Ban], active: Active, now: float) -> list[str]:
        return []

    def sync(self, active: Active, now: float) -> list[str]:
        return []

