"""SASL password guessing: many failures from one address, over one or many usernames —
and the moment one succeeded."""

from __future__ import annotations

from typing import Any

from ..aggregate import Aggregates, top
from ..timefmt import iso
from .finding import Finding, clamp, cmd


def detect(agg: Aggregates, cfg: dict[str, Any]) -> list[Finding]:
    c = cfg["detect"]["auth_bruteforce"]
    out = []
    for ip, a in agg.auth.items():
        if a.failures < c["min_failures"]:
            continue
        users = len(a.usernames)
        # Guessing is constant on any server facing the internet: without a success it stays
        # below "high" (no 3 a.m. alarm), but ten tries over several names is worth a look.
        score = 35 + min(15, a.failures // 5) + (5 if users >= 3 else 0)
        if a.failures >= c["many_failures"]:
            score = max(score, 55)
        success = next((s for s in a.successes
                        if s[2] >= c["guess_min_failures"] or users >= 3), None)
        summary = f"{a.failures} failed logins from {ip}"
        if users:
            summary += f" for {users} username{'s' if users > 1 else ''}"
        if success:
            score = max(score, 75)
            summary += f"; then logged in as {success[0]!r} (password guessed)"
        f = Finding("auth_bruteforce", ip, clamp(score), summary + ".", a.first, a.last)
        f.evidence = {"failures": a.failures, "usernames": [u for u, _ in top(a.usernames, 20)],
                      "usernames_tried": users, "examples": list(a.examples)}
        if success:
            f.evidence["succeeded_as"] = success[0]
            f.evidence["succeeded_at"] = iso(success[1])
            f.evidence["examples"].append(success[3])
            f.action(cmd("relayguard", "lock", success[0]), "the guessed account")
        f.action(cmd("relayguard", "ban", "add", ip), "refuse this address (ports 25/465/587)")
        out.append(f)
    return out


def targeted_users(agg: Aggregates, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Usernames that failed from many addresses: a distributed attack on one account."""
    n = cfg["detect"]["auth_bruteforce"]["distributed_ips"]
    rows = [{"username": u, "ips": len(ips), "failures": sum(ips.values())}
            for u, ips in agg.auth_targets.items() if len(ips) >= n]
    return sorted(rows, key=lambda r: (-r["ips"], r["username"]))
