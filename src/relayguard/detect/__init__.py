"""Detectors: pure functions from aggregates to findings, one module per finding kind."""

from __future__ import annotations

from typing import Any

from ..aggregate import Aggregates
from . import (
    auth_bruteforce,
    blocklisted,
    compromised_account,
    direct_smtp,
    local_submission,
    queue_surge,
    trusted_host_relay,
)
from .finding import REPORT_MIN_SCORE, SEVERITIES, Finding

DETECTORS = (compromised_account, trusted_host_relay, local_submission, auth_bruteforce,
             direct_smtp, blocklisted, queue_surge)
KINDS = tuple(m.__name__.rsplit(".", 1)[1] for m in DETECTORS)

__all__ = ["DETECTORS", "KINDS", "SEVERITIES", "Finding", "run"]


def run(agg: Aggregates, cfg: dict[str, Any]) -> list[Finding]:
    """All findings worth reporting, worst first."""
    found = [f for d in DETECTORS for f in d.detect(agg, cfg) if f.score >= REPORT_MIN_SCORE]
    return sorted(found, key=lambda f: (-f.score, f.kind, f.subject))
