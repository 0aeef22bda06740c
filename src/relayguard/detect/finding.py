"""A finding: who, how bad, why (evidence), and what to type to stop it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from ..config import SEVERITIES
from ..timefmt import iso

SEVERITY_RANK = {s: i for i, s in enumerate(reversed(SEVERITIES))}  # low 0 … critical 3
REPORT_MIN_SCORE = 20


def severity_for(score: int) -> str:
    if score >= 80:
        return "critical"
    if score >= 60:
        return "high"
    if score >= 40:
        return "medium"
    return "low"


def cmd(*argv: str) -> str:
    """A command line to show the user, quoted so that copying it is safe."""
    return shlex.join(argv)


@dataclass
class Finding:
    kind: str
    subject: str
    score: int
    summary: str
    first_seen: float | None
    last_seen: float | None
    evidence: dict[str, Any] = field(default_factory=dict)
    actions: list[dict[str, str]] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)  # what no command can do for you
    timeline: dict[int, int] = field(default_factory=dict)  # 10-minute bucket → messages/events

    @property
    def severity(self) -> str:
        return severity_for(self.score)

    @property
    def rank(self) -> int:
        return SEVERITY_RANK[self.severity]

    def action(self, command: str, why: str) -> None:
        self.actions.append({"command": command, "why": why})

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "subject": self.subject, "severity": self.severity,
                "score": self.score, "summary": self.summary,
                "first_seen": iso(self.first_seen), "last_seen": iso(self.last_seen),
                "evidence": self.evidence, "actions": self.actions, "advice": self.advice}


def clamp(score: float) -> int:
    return max(0, min(100, int(round(score))))

