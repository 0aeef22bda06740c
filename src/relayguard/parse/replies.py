"""What a remote server's reply says: which DNS blocklist, if any, it cites.

Reading a reply is parsing, so the vocabulary lives here, below `aggregate` (which counts the
rejections per blocklist) and `detect.blocklisted` (which reports them). Compiled with mypyc
(setup.py HOT): keep it fully typed and free of optional dependencies.
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
