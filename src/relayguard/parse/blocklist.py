"""Which DNS blocklist a remote server's refusal names (the vocabulary of reply texts).

Part of the compiled hot path: `Aggregates` asks it about every remote refusal, and the
`blocklisted` detector reports what it found. It imports nothing of relayguard.
"""

from __future__ import annotations

import re

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
