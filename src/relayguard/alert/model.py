"""An alert: one incident, said for people (title, text) and for programs (`to_dict`).

Its own module so that the channels that send it and the dispatcher that decides when to send
it both import it from below.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any

from ..detect.finding import Finding
from ..timefmt import iso


@dataclass
class Alert:
    key: str  # one incident: "compromised_account:admin", "queue_surge:queue", "ban:203.0.113.7"
    kind: str  # a finding kind, or queue_surge / queue_recovered / ban
    subject: str
    severity: str  # critical, high, medium, low, or info for notices
    title: str  # one line
    text: str  # for people
    actions: list[dict[str, str]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # structured (the finding, counts…)
    ts: float = field(default_factory=time.time)
    host: str = field(default_factory=socket.gethostname)
    reason: str = "new"  # new, escalated, reminder, notice
    note: str = ""  # from the dispatcher (alerts held back before this one)

    @classmethod
    def from_finding(cls, f: Finding, reason: str = "new") -> Alert:
        lead = {"escalated": "Worse: ", "reminder": "Still going on: "}.get(reason, "")
        lines = [lead + f.summary, ""]
        for k, v in f.evidence.items():
            if k != "examples":
                lines.append(f"  {k}: {v}")
        if f.evidence.get("examples"):
            lines += ["", "Log lines:"] + [f"  {x}" for x in f.evidence["examples"][:5]]
        if f.actions:
            lines += ["", "What to do:"] + [f"  {a['command']}    # {a['why']}" for a in f.actions]
        if f.advice:
            lines += [""] + [f"  - {a}" for a in f.advice]
        return cls(f"{f.kind}:{f.subject}", f.kind, f.subject, f.severity,
                   f"{f.kind.replace('_', ' ')}: {f.subject}", "\n".join(lines),
                   list(f.actions), f.to_dict(), reason=reason)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "relayguard.alert/1", "key": self.key, "kind": self.kind,
                "subject": self.subject, "severity": self.severity, "reason": self.reason,
                "title": self.title, "text": self.text, "host": self.host, "time": iso(self.ts),
                "actions": self.actions, "details": self.details}
