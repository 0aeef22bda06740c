"""Remote MTAs refusing us because a DNS blocklist names our address (the replies are read by
`parse.replies`, counted by `aggregate`)."""

from __future__ import annotations

from typing import Any

from ..aggregate import Aggregates, top
from .finding import Finding, clamp, cmd


def detect(agg: Aggregates, cfg: dict[str, Any]) -> list[Finding]:
    out = []
    for name, s in agg.blocklists.items():
        score = 65 + min(30, s.count // 5)
        f = Finding("blocklisted", name, clamp(score),
                    f"Remote servers refused our mail {s.count} times citing {name}, "
                    f"from {len(s.keys)} server(s): we are listed.", s.first, s.last,
                    timeline=dict(s.buckets))
        f.evidence = {"rejections": s.count, "remote_servers": len(s.keys),
                      "top_remote_servers": top(s.keys, 5), "examples": list(s.examples)}
        f.action(cmd("relayguard", "dnsbl"), "check which of our addresses are listed")
        f.advice.append(f"Stop the source first (the other findings), then request delisting "
                        f"from {name}: lists relist quickly while spam continues.")
        out.append(f)
    return out
