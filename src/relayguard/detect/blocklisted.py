"""Remote MTAs refusing us because a DNS blocklist names our address."""

from __future__ import annotations

import re
from typing import Any

from ..aggregate import Aggregates
from .finding import Finding, clamp, cmd, top

_NAMED = re.compile(
    r"(?:blocked using|listed (?:at|on|in|by)|rejected by|see)\s+(?:https?://)?(?:www\.)?"
    r"([a-z0-9][a-z0-9.-]*\.(?:org|net|com|de|io|eu|info|cc|ws))", re.I)
# Blocklists known by name when the reply does not spell the zone out.
_KNOWN = (("spamhaus", "zen.spamhaus.org"), ("spamcop", "bl.spamcop.net"),
          ("barracuda", "b.barracudacentral.org"), ("sorbs", "dnsbl.sorbs.net"),
          ("uceprotect", "dnsbl-1.uceprotect.net"), ("abuseat", "cbl.abuseat.org"),
          ("mailspike", "bl.mailspike.net"), ("psbl", "psbl.surriel.com"),
          ("spameatingmonkey", "bl.spameatingmonkey.net"))
_GENERIC = re.compile(r"block ?list|black ?list|\bRBL\b|\bDNSBL\b|S3150|banned sending IP", re.I)
_HINTS = ("block", "listed", "spam", "rbl", "barracuda", "sorbs", "s3150", "banned")


def blocklist_named(reason: str) -> str | None:
    """The blocklist a remote reply names, or None. Cheap when the text has no hint."""
    low = reason.lower()
    if not any(h in low for h in _HINTS):
        return None
    m = _NAMED.search(reason)
    if m:
        zone = m.group(1).lower().rstrip(".")
        for word, name in _KNOWN:
            if word in zone:
                # "see https://www.spamhaus.org/query/..." names the operator, not the zone
                return zone if zone.count(".") >= 2 and "www." not in zone else name
        if "blocked using" in low or "listed" in low:
            return zone
    for word, name in _KNOWN:
        if word in low:
            return name
    if _GENERIC.search(reason):
        return "unnamed blocklist"
    return None


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
