"""`relayguard analyze`: the pipeline (sources → parse → correlate → aggregate → detect, see
`pipeline.Pipeline`) over whole logs; `watch` runs the same pipeline on a sliding window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import config as config_mod
from .aggregate import Aggregates, top
from .detect import Finding
from .inputs import InputSummary
from .pipeline.core import Pipeline
from .sources import files
from .timefmt import iso


@dataclass
class Analysis:
    findings: list[Finding]
    aggregates: Aggregates
    lines: int = 0
    unparsed: int = 0
    sources: list[str] = field(default_factory=list)
    trusted: list[str] = field(default_factory=list)
    targeted_users: list[dict[str, Any]] = field(default_factory=list)
    # What the input held; `input.require()` raises when nothing in it could be analyzed.
    input: InputSummary = field(default_factory=InputSummary)

    @property
    def worst(self) -> str | None:
        return self.findings[0].severity if self.findings else None

    def has_high(self) -> bool:
        return any(f.severity in ("critical", "high") for f in self.findings)

    def totals(self) -> dict[str, Any]:
        return {"lines": self.lines, "unparsed": self.unparsed,
                **self.aggregates.summary_totals()}

    def top(self, n: int = 10) -> dict[str, list[dict[str, Any]]]:
        agg = self.aggregates
        users = sorted(agg.users.items(), key=lambda kv: (-kv[1].messages, kv[0]))[:n]
        clients = sorted(agg.clients.items(), key=lambda kv: (-kv[1].messages, kv[0]))[:n]
        return {
            "sasl_users": [{"name": u, "messages": s.messages, "recipients": s.recipients,
                            "client_ips": len(s.ips), "deferred": s.deferred} for u, s in users],
            "client_ips": [{"ip": ip, "messages": s.messages, "recipients": s.recipients,
                            "trusted": agg.is_trusted(ip), "authenticated": False}
                           for ip, s in clients],
            "senders": [{"sender": s, "messages": c} for s, c in top(agg.senders, n)],
            "auth_failures": [{"ip": ip, "failures": a.failures, "usernames": len(a.usernames)}
                              for ip, a in sorted(agg.auth.items(),
                                                  key=lambda kv: (-kv[1].failures, kv[0]))[:n]],
            "targeted_users": self.targeted_users[:n],
        }

    def to_dict(self) -> dict[str, Any]:
        agg = self.aggregates
        return {
            "schema": "relayguard.analysis/1",
            "period": {"start": iso(agg.start), "end": iso(agg.end)},
            "sources": self.sources,
            "input": self.input.to_dict(),
            "trusted": self.trusted,
            "totals": self.totals(),
            "findings": [f.to_dict() for f in self.findings],
            "top": self.top(),
        }


def analyze(paths: list[str] | None = None, cfg: dict[str, Any] | None = None,
            trusted: list[str] | None = None, year: int | None = None,
            since: float | None = None, until: float | None = None,
            on_bytes: Callable[[int], None] | None = None,
            config_dir: str | None = None) -> Analysis:
    """Read the logs and return the findings. Raises sources.InputError on unreadable input,
    enrich.geo.GeoError when a configured [geo] database is unusable, PostfixError when the
    Postfix instance `config_dir` names cannot be read; when nothing in the input was
    understood, `.input.require()` says so (the findings are empty)."""
    cfg = cfg if cfg is not None else config_mod.load()
    paths = paths or files.default_logs(config_dir)
    pipe = Pipeline(cfg, trusted, config_dir)
    seen = pipe.read(paths, year, since, until, on_bytes)
    return Analysis(
        findings=pipe.detect(), aggregates=pipe.aggregates,
        lines=seen.lines, unparsed=seen.unparsed,
        sources=list(paths), trusted=list(pipe.trusted),
        targeted_users=pipe.targeted_users(), input=seen.summary(),
    )
