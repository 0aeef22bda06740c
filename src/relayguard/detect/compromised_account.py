"""A SASL account sending spam: volume and burst against its own baseline, many addresses and
networks, deferrals, foreign envelope senders, recipient spread — or a guessed password."""

from __future__ import annotations

from typing import Any

from ..aggregate import BUCKET, Aggregates, SenderStats, burst, network_of, top
from ..enrich.geo import GeoDB
from ..timefmt import iso
from .finding import Finding, clamp, cmd


def _login_matches(login: str, sender: str) -> bool:
    """Is `sender` plausibly the account's own address (`bob` ↔ `bob@x`, `bob@x` ↔ `bob@x`)?"""
    s = sender.lower()
    lg = login.lower()
    return s == lg or s.split("@", 1)[0] == lg.split("@", 1)[0]


def score_account(login: str, s: SenderStats, guessed: list[tuple[str, float, int, str]],
                  cfg: dict[str, Any], hours: float, geo: GeoDB | None = None) -> Finding | None:
    reasons: list[str] = []
    score = 0.0
    n = s.messages
    ips = len(s.ips)
    spread = geo.spread(s.ips) if geo is not None and s.ips else None
    # With a MaxMind database, "networks" are autonomous systems; without, /16 prefixes.
    nets = len(spread.networks) if spread is not None and spread.networks else \
        len({network_of(ip) for ip in s.ips})
    countries = len(spread.countries) if spread is not None else 0
    bad_ratio = s.failed / n if n else 0.0
    foreign = [snd for snd in s.senders if snd and not _login_matches(login, snd)]
    domains = len(s.rcpt_domains)

    # Primary signals say "this is not how the account behaves"; the others only add weight to
    # them: when we are blocklisted everybody's mail bounces, and a busy user writes to many
    # domains, so deferrals or spread alone never make an ordinary account look compromised.
    primary = 0.0
    if ips >= cfg["very_many_ips"]:
        primary += 30
        reasons.append(f"logins from {ips} addresses")
    elif ips >= cfg["many_ips"]:
        primary += 20
        reasons.append(f"logins from {ips} addresses")
    if countries >= cfg["many_countries"]:
        primary += 15
        reasons.append(f"logins from {countries} countries / {nets} networks")
    elif nets >= cfg["many_networks"]:
        primary += 10
        reasons.append(f"in {nets} networks")
    peak, average, why = burst(s, hours, cfg["burst_messages"], cfg["burst_ratio"])
    if why:
        primary += 25
        reasons.append(why)
    if len(foreign) >= cfg["foreign_senders"]:
        primary += 10
        reasons.append(f"{len(foreign)} envelope senders that are not the login")
    score = primary
    if n >= cfg["min_messages"]:
        score += 15 if primary else 5
        reasons.insert(0, f"{n} messages")
    if primary and n >= cfg["min_messages"] and bad_ratio >= cfg["deferred_ratio"]:
        score += 15
        reasons.append(f"{bad_ratio:.0%} deferred or bounced")
    if primary and domains >= cfg["recipient_domains"]:
        score += 10
        reasons.append(f"{domains} recipient domains")
    if n < cfg["min_messages"]:
        score = min(score, 35)  # a handful of messages is not an outbreak

    guess = guessed[0] if guessed else None
    if guess:
        ip, ts, failures, _raw = guess
        score = max(score + 20, 95)
        reasons.insert(0, f"password guessed: {failures} failed logins from {ip} before a success")
    score = clamp(score)
    if score < 20:
        return None
    f = Finding("compromised_account", login, score,
                f"Account {login!r}: " + ", ".join(reasons) + ".", s.first, s.last,
                timeline=dict(s.buckets))
    f.evidence = {
        "messages": n, "recipients": s.recipients, "client_ips": ips, "networks": nets,
        "deferred": s.deferred, "bounced": s.bounced, "deferred_ratio": round(bad_ratio, 3),
        "peak_hour": peak, "average_per_hour": round(average, 2), "recipient_domains": domains,
        "foreign_senders": len(foreign), "top_client_ips": top(s.ips, 5),
        **({"countries": countries, "top_countries": top(dict(spread.countries), 5),
            "top_networks": [[f"AS{a} {spread.orgs.get(a, '')}".strip(), c]
                             for a, c in spread.networks.most_common(5)]}
           if spread is not None else {}),
        "top_senders": top(s.senders, 5), "top_recipient_domains": top(s.rcpt_domains, 5),
        "examples": list(s.examples),
    }
    if guess:
        f.evidence["guessed_from"] = guess[0]
        f.evidence["guessed_at"] = iso(guess[1])
        f.evidence["failures_before_success"] = guess[2]
        if guess[3] not in f.evidence["examples"]:
            f.evidence["examples"].insert(0, guess[3])
        if f.first_seen is None or guess[1] < f.first_seen:
            f.first_seen = guess[1]
    f.action(cmd("relayguard", "lock", login), "refuse this login at once (check_sasl_access)")
    f.action(cmd("relayguard", "queue", "hold", "--sasl-user", login),
             "quarantine the mail it queued; release what is legitimate later")
    f.advice.append(f"Change the password of {login!r} and close its open sessions "
                    f"(BlueMind: {cmd('bm-cli', 'user', 'logout', login)}); a lock only holds "
                    "until the password is changed.")
    if guess:
        f.action(cmd("relayguard", "ban", "add", guess[0]), "the address that guessed the password")
    return f


def detect(agg: Aggregates, cfg: dict[str, Any]) -> list[Finding]:
    c = cfg["detect"]["compromised_account"]
    guess_min = cfg["detect"]["auth_bruteforce"]["guess_min_failures"]
    guessed: dict[str, list[tuple[str, float, int, str]]] = {}
    for ip, a in agg.auth.items():
        for user, ts, failures, raw in a.successes:
            if failures >= guess_min or len(a.usernames) >= 3:
                guessed.setdefault(user, []).append((ip, ts, failures, raw))
                break
    out = []
    for login, s in agg.users.items():
        f = score_account(login, s, guessed.pop(login, []), c, agg.hours, agg.geo)
        if f:
            out.append(f)
    for login, g in guessed.items():  # guessed, but sent nothing (yet)
        f = score_account(login, SenderStats(), g, c, agg.hours, agg.geo)
        if f:
            out.append(f)
    return out


__all__ = ["BUCKET", "detect"]
