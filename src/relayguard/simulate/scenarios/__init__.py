"""Scenarios: one module per stream of traffic, the attacks one module each (like `detect/`,
one module per finding kind).

An attack module has `NAME` (its `--scenario` name), `FILLS_QUEUE` (its spam deferrals pile
up in the queue), `plan(world) -> culprit labels`, `budget(lines) -> its share of the lines`
and `streams(world, writer, budget, culprits)`. `baseline` is the site they all run on.
"""

from __future__ import annotations

from types import ModuleType

from . import baseline, blocklisted, bruteforce, compromised_account, direct_smtp, trusted_relay

# This order is that of the culprit labels and of the merge's tie-break: keep it.
ATTACKS: tuple[ModuleType, ...] = (compromised_account, trusted_relay, bruteforce, direct_smtp,
                                   blocklisted)
SCENARIOS = (baseline.NAME,) + tuple(m.NAME for m in ATTACKS) + ("all",)

__all__ = ["ATTACKS", "SCENARIOS", "attacks_of", "baseline"]


def attacks_of(scenario: str) -> tuple[ModuleType, ...]:
    """The attacks a scenario runs (`all`: every one; `baseline`: none)."""
    if scenario == "all":
        return ATTACKS
    return tuple(m for m in ATTACKS if scenario == m.NAME)
