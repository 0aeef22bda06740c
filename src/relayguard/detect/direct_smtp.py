"""PCs talking SMTP straight to the internet (firewall LOG lines with DPT=25)."""

from __future__ import annotations

from typing import Any

from ..aggregate import Aggregates, top
from .finding import Finding, clamp, cmd


def detect(agg: Aggregates, cfg: dict[str, Any]) -> list[Finding]:
    c = cfg["detect"]["direct_smtp"]
    ignore = set(c["ignore"])
    out = []
    for src, s in agg.firewall.items():
        if s.count < c["min_connections"] or src in ignore:
            continue
        dsts = len(s.keys)
        score = 30 + min(25, s.count // 10)
        if s.count >= c["many_connections"]:
            score = max(score, 65)
        if dsts >= 20:
            score += 10
        f = Finding("direct_smtp", src, clamp(score),
                    f"{src} opened {s.count} SMTP connections (port 25) to {dsts} servers, "
                    "bypassing the mail server.", s.first, s.last, timeline=dict(s.buckets))
        f.evidence = {"connections": s.count, "destinations": dsts,
                      "top_destinations": top(s.keys, 5), "examples": list(s.examples)}
        f.action(cmd("relayguard", "ban", "add", src),
                 "block the PC's outbound port 25 until it is cleaned")
        f.advice.append("Allow outbound port 25 from the mail server only: PCs never need to "
                        "speak SMTP to the internet. Then clean the PC.")
        out.append(f)
    return out
