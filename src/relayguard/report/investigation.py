"""`relayguard show`: one account or one address, for people (rich) — JSON is `to_dict()`."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..investigate import Investigation
from ..timefmt import label
from .text import finding_panel, short, sparkline


def render_investigation(inv: Investigation, console: Console) -> None:
    console.print(Text.assemble((f"relayguard show {inv.kind} ", "bold"), (inv.subject, "bold cyan"),
                                f"  {short(inv.start)} → {short(inv.end)} {label()}  ",
                                (f"{inv.lines:,} lines read", "dim")))
    if inv.lock:
        console.print(Text(f"LOCKED since {inv.lock['since']} ({inv.lock['reason']})", style="bold red"))
    if inv.ban:
        console.print(Text(f"BANNED since {inv.ban['since']} until {inv.ban['expires'] or 'removed'} "
                           f"({inv.ban['reason']}, {inv.ban['backend']})", style="bold red"))
    for f in inv.findings:
        console.print(finding_panel(f, inv.start, inv.end))
    if inv.logins:
        tb = Table(title=f"Logins {'from each address' if inv.kind == 'user' else 'as each user'}",
                   title_justify="left")
        for col in ("address" if inv.kind == "user" else "login", "logins", "first", "last", "names", "where"):
            tb.add_column(col)
        for key, lg in sorted(inv.logins.items(), key=lambda kv: kv[1].first or 0):
            where = _where(inv.geo.get(key))
            tb.add_row(escape(key), str(lg.count), short(lg.first), short(lg.last),
                       escape(", ".join(sorted(lg.names))), escape(where))
        console.print(tb)
        if inv.geo_spread and inv.kind == "user":
            sp = inv.geo_spread
            console.print(Text(f"Logins from {len(sp['countries'])} countries / {len(sp['networks'])} networks: "
                               + ", ".join(f"{c} ({n})" for c, n in sp["countries"].items()), style="bold"))
    elif inv.kind == "ip" and inv.geo.get(inv.subject):
        console.print(Text(f"{inv.subject}: {_where(inv.geo[inv.subject]) or 'unknown'}", style="bold"))
    if inv.failures:
        tb = Table(title=f"Authentication failures ({sum(inv.failures.values())}, "
                   f"{short(inv.failure_first)} → {short(inv.failure_last)})", title_justify="left")
        tb.add_column("address" if inv.kind == "user" else "username tried")
        tb.add_column("failures", justify="right")
        for key, n in sorted(inv.failures.items(), key=lambda kv: -kv[1])[:20]:
            tb.add_row(escape(key), str(n))
        console.print(tb)
    s = inv.sent
    if s.messages:
        console.print(Text.assemble(
            ("Messages ", "bold"), f"{s.messages:,} ({s.recipients:,} recipients): ",
            (f"{s.sent} sent", "green"), ", ", (f"{s.deferred} deferred", "yellow"), ", ",
            (f"{s.bounced} bounced", "red"), f"; {len(s.rcpt_domains)} recipient domains, "
            f"{len(s.senders)} envelope senders"))
        spark = sparkline(s.buckets, inv.start, inv.end)
        if spark:
            console.print(Text.assemble(("per hour  ", "dim"), (spark, "magenta")))
        doms = ", ".join(f"{d} ({n})" for d, n in sorted(s.rcpt_domains.items(), key=lambda kv: -kv[1])[:8])
        console.print(Text(f"top recipient domains: {doms}", style="dim"))
        tb = Table(title=f"Latest {len(inv.recent)} messages", title_justify="left")
        for col in ("queued", "queue ID", "client", "sender", "recipients", "outcome"):
            tb.add_column(col)
        for m in inv.recent:
            outcome = ", ".join(f"{k} {v}" for k, v in sorted(m.final.items())) or "(in queue)"
            rcpts = list(m.recipients)
            shown = rcpts[0] + (f" +{len(rcpts) - 1}" if len(rcpts) > 1 else "") if rcpts else ""
            tb.add_row(short(m.first_seen), m.queue_id, escape(m.client_ip or ""), escape(m.sender or "<>"),
                       escape(shown), outcome)
        console.print(tb)
    elif inv.kind == "user":
        console.print(Text("No message sent with this login in these logs.", style="dim"))
    if inv.rejected:
        console.print(Text(f"{inv.rejected} SMTP commands from this address were rejected.", style="yellow"))
    if inv.firewall:
        console.print(Text(f"{inv.firewall} direct SMTP connections (firewall DPT=25) from this address.",
                           style="yellow"))
    if inv.queued is not None:
        q = inv.queued
        console.print(Text(f"In the queue now: {q['messages']} message(s) {q['by_queue']}, "
                           f"{q['recipients']} recipient(s)" if q["messages"] else "Nothing in the queue now.",
                           style="bold" if q["messages"] else "dim"))
    for note in inv.notes:
        console.print(Text(note, style="dim"))


def _where(g: dict[str, object] | None) -> str:
    if not g:
        return ""
    parts = [str(g["country"])] if g.get("country") else []
    if g.get("asn") is not None:
        parts.append(f"AS{g['asn']}" + (f" {g['org']}" if g.get("org") else ""))
    return ", ".join(parts)
