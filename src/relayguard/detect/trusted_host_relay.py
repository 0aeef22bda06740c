"""A host in the trusted networks (or one Postfix let relay without authentication) sending
spam: burst, many envelope senders, missing Message-ID, deferrals, many recipient domains."""

from __future__ import annotations

from typing import Any

from ..aggregate import Aggregates, SenderStats, burst, top
from .finding import Finding, clamp, cmd

INFERRED_MIN_DOMAINS = 3  # relayed to this many outside domains: Postfix trusted it
MIN_LOOK = 3


def spam_shape(s: SenderStats, c: dict[str, Any], hours: float,
               what: str) -> tuple[int, list[str], dict[str, Any]]:
    """Score the shape of what one unauthenticated source sent (a relaying host, or a local
    user submitting through sendmail): (score, reasons, evidence)."""
    n = s.messages
    reasons: list[str] = []
    no_mid = s.no_message_id / n if n else 0.0
    bad = s.failed / n if n else 0.0
    domains = len(s.rcpt_domains)
    # As for accounts: missing Message-IDs, many senders and bursts are the tells; volume,
    # deferrals and recipient spread (a newsletter has all three) only add weight.
    primary = 0.0
    if no_mid >= c["missing_message_id_ratio"]:
        primary += 25
        reasons.append(f"{no_mid:.0%} without Message-ID")
    if len(s.senders) >= c["senders"]:
        primary += 20
        reasons.append(f"{len(s.senders)} envelope senders")
    peak, average, why = burst(s, hours, c["burst_messages"], c["burst_ratio"])
    if why:
        primary += 20
        reasons.append(why)
    score = primary
    if n >= c["min_messages"]:
        score += 15 if primary else 5
        reasons.insert(0, f"{n} messages {what}")
    if primary and n >= c["min_messages"] and bad >= c["deferred_ratio"]:
        score += 15
        reasons.append(f"{bad:.0%} deferred or bounced")
    if domains >= c["recipient_domains"]:
        score += 10 if primary else 5
        reasons.append(f"{domains} recipient domains")
    if n < c["min_messages"]:
        score = min(score, 35)
    evidence = {
        "messages": n, "recipients": s.recipients, "missing_message_id": s.no_message_id,
        "missing_message_id_ratio": round(no_mid, 3), "senders": len(s.senders),
        "deferred": s.deferred, "bounced": s.bounced, "deferred_ratio": round(bad, 3),
        "recipient_domains": domains, "peak_hour": peak, "average_per_hour": round(average, 2),
        "top_senders": top(s.senders, 5), "top_recipient_domains": top(s.rcpt_domains, 5),
        "examples": list(s.examples),
    }
    return clamp(score), reasons, evidence


def detect(agg: Aggregates, cfg: dict[str, Any]) -> list[Finding]:
    c = cfg["detect"]["trusted_host_relay"]
    hours = agg.hours
    out = []
    for ip, s in agg.clients.items():
        if s.messages < MIN_LOOK:
            continue  # a message or two from a host proves nothing (and inbound clients are many)
        trusted = agg.is_trusted(ip)
        if not trusted and len(s.outbound_domains) < INFERRED_MIN_DOMAINS:
            continue  # ordinary inbound mail from the internet
        score, reasons, evidence = spam_shape(s, c, hours, "without authentication")
        if score < 20:
            continue
        name = max(s.names, key=s.names.__getitem__) if s.names else "unknown"
        how = "trusted network" if trusted else "relayed without authentication (open relay or mynetworks)"
        f = Finding("trusted_host_relay", ip, score,
                    f"Host {name}[{ip}] ({how}): " + ", ".join(reasons) + ".",
                    s.first, s.last, timeline=dict(s.buckets))
        f.evidence = {"client_name": name, "in_trusted_networks": trusted, **evidence}
        f.action(cmd("relayguard", "trusted", "remove", ip),
                 "take the host out of mynetworks: it must authenticate or stop relaying")
        f.action(cmd("relayguard", "queue", "hold", "--client-ip", ip),
                 "quarantine what it queued")
        f.action(cmd("relayguard", "ban", "add", ip), "refuse its connections until it is cleaned")
        out.append(f)
    return out
