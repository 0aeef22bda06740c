"""The normal site every scenario runs on: users, trusted LAN hosts, mail from the internet,
noise, the clock, and the benign look-alikes (each labeled, so a detector flagging one is
caught). Gets the line budget the attacks leave."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from random import Random

from .. import data as D
from ..world import World
from ..writers import Writer
from . import clock, inbound, lookalikes, monitor, newsletter, noise, users

NAME = "baseline"


def plan(w: World, blocklisted: bool) -> None:
    """Label the look-alikes (the SASL outages label theirs when they happen)."""
    B = w.benign
    B.append({"kind": "trusted_host_relay", "subject": D.NEWSLETTER_HOST[1],
              "what": "newsletter host (one sender, proper Message-IDs, steady rate)"})
    B.append({"kind": "trusted_host_relay", "subject": D.MONITOR_HOST[1],
              "what": "monitoring box (nagios@, a few messages an hour to one address)"})
    B.append({"kind": "compromised_account", "subject": w.user_by_name[D.BUSY_USER]["login"],
              "what": "busy sales user (~40 messages a day)"})
    B.append({"kind": "compromised_account", "subject": w.user_by_name[D.MOVING_USER]["login"],
              "what": "user on phone and laptop (2 IPs, moving between them)"})
    B.append({"kind": "compromised_account",
              "subject": w.user_by_name[D.BIG_INVITE_USER]["login"],
              "what": "one message to 40 recipients (an invitation)"})
    grace = w.user_by_name[D.MISTYPING_USER]
    B.append({"kind": "auth_bruteforce", "subject": grace["ips"][-1][1],
              "what": f"{grace['login']} mistypes the password, then succeeds"})
    for ip in D.NORMAL_LAN_SMTP_PCS:
        B.append({"kind": "direct_smtp", "subject": ip,
                  "what": "LAN PC with a few port-25 connections (normal)"})
    B.append({"kind": "trusted_host_relay", "subject": "127.0.0.1",
              "what": "webmail on localhost (authenticated, many users)"})
    if not blocklisted:
        B.append({"kind": "blocklisted", "subject": "NOQUEUE RBL rejects",
                  "what": "our own smtpd rejecting clients listed on zen.spamhaus.org"})


def fixed_lines(w: World) -> int:
    """Lines of the budget-free streams (look-alikes, clock), whatever the size."""
    return _dry_count(w, lookalikes.stream) + _dry_count(w, clock.stream)


def _dry_count(w: World, stream: Callable[[World, Writer], Iterator]) -> int:
    # throwaway ids and no labels: the count without touching the real run's state
    dry = Writer(w, Random(0), dry=True)
    return sum(1 if isinstance(x, str) else len(x)
               for x in stream(w, dry) if isinstance(x, (list, str)))


def budgets(w: World, base: int) -> dict[str, int]:
    """Split the baseline's lines between its paced streams."""
    days = w.span / 86_400
    nominal_users = int(w.user_rate_total * days * 11)
    monitor_nominal = int(3 * 24 * days * 8)
    b = {"users": min(nominal_users, int(0.22 * base)),
         "newsletter": max(40, int(0.04 * base)),
         "monitor": max(16, min(monitor_nominal, int(0.04 * base))),
         "noise": int(0.22 * base)}
    b["inbound"] = base - sum(b.values())
    return b


def streams(w: World, out: Writer, b: dict[str, int]) -> list[Iterator]:
    # this order is the merge's tie-break between episodes starting at the same instant
    return [lookalikes.stream(w, out), users.stream(w, out, b["users"]),
            newsletter.stream(w, out, b["newsletter"]), monitor.stream(w, out, b["monitor"]),
            inbound.stream(w, out, b["inbound"]), noise.stream(w, out, b["noise"]),
            clock.stream(w, out)]
