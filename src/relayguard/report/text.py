"""`--format text`: findings first (with evidence and the commands to stop them), then the top
talkers, totals, and an hourly sparkline of each culprit's traffic."""

from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..aggregate import BUCKET
from ..analysis import Analysis
from ..detect import Finding
from ..timefmt import label
from ..timefmt import text as short  # headers name the zone: label()

COLOURS = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan"}
SPARK = "▁▂▃▄▅▆▇█"
PER_HOUR = 3600 // BUCKET


def sparkline(timeline: dict[int, int], start: float | None, end: float | None, width: int = 48) -> str:
    """Hourly activity over the whole period, squeezed into `width` characters."""
    if not timeline or start is None or end is None:
        return ""
    first = int(start // 3600)
    hours = max(1, int(end // 3600) - first + 1)
    per_col = max(1, -(-hours // width))
    cols = [0] * (-(-hours // per_col))
    for bucket, n in timeline.items():
        i = (bucket // PER_HOUR - first) // per_col
        if 0 <= i < len(cols):
            cols[i] += n
    peak = max(cols) or 1
    return "".join(" " if c == 0 else SPARK[min(7, c * 8 // (peak + 1))] for c in cols)


def finding_panel(f: Finding, start: float | None, end: float | None) -> Panel:
    ev = f.evidence
    lines = [Text(f.summary)]
    facts = ", ".join(f"{k}={v}" for k, v in ev.items()
                      if not isinstance(v, list | dict) and v is not None)
    lines.append(Text(facts, style="dim"))
    for key in ("top_client_ips", "usernames", "top_recipient_domains", "top_senders",
                "top_destinations", "top_remote_servers"):
        if ev.get(key):
            vals = ev[key]
            shown = ", ".join(f"{v[0]} ({v[1]})" if isinstance(v, list) else str(v) for v in vals[:8])
            lines.append(Text(f"{key.replace('_', ' ')}: {shown}"))
    spark = sparkline(f.timeline, start, end)
    if spark:
        lines.append(Text.assemble(("per hour  ", "dim"), (spark, "magenta")))
    for ex in ev.get("examples", [])[:3]:
        lines.append(Text("  " + ex, style="dim", overflow="ellipsis", no_wrap=True))
    for act in f.actions:
        lines.append(Text.assemble(("  $ ", "green"), (act["command"], "bold green"),
                                   (f"   # {act['why']}", "dim")))
    for tip in f.advice:
        lines.append(Text("  → " + tip, style="green"))
    title = Text.assemble((f" {f.severity.upper()} ", COLOURS[f.severity]), " ",
                          (f"{f.kind}", "bold"), f"  {f.subject}  ",
                          (f"score {f.score}  {short(f.first_seen)} → {short(f.last_seen)}", "dim"))
    return Panel(Group(*lines), title=title, title_align="left", expand=True)


def render_text(a: Analysis, console: Console) -> None:
    agg = a.aggregates
    t = a.totals()
    console.print(Text.assemble(
        ("relayguard analysis", "bold"), f"  {short(agg.start)} → {short(agg.end)} {label()}  ",
        (f"{t['lines']:,} lines ({t['unparsed']:,} unparsed), {t['messages']:,} messages, "
         f"{t['sent']:,} sent, {t['deferred']:,} deferred, {t['bounced']:,} bounced, "
         f"{t['rejected']:,} rejected, {t['auth_failures']:,} auth failures", "dim")))
    if a.findings:
        summary = Table(title="Findings", title_justify="left", expand=False)
        for col in ("severity", "score", "kind", "subject", "first seen"):
            summary.add_column(col)
        for f in a.findings:
            summary.add_row(Text(f.severity, style=COLOURS[f.severity]), str(f.score), f.kind,
                            escape(f.subject), short(f.first_seen)[5:16])
        console.print(summary)
        for f in a.findings:
            console.print(finding_panel(f, agg.start, agg.end))
    else:
        console.print(Text("No findings: nothing in these logs looks like spam being sent.", style="green"))

    top = a.top()
    if top["sasl_users"]:
        tb = Table(title="Top SASL users", title_justify="left")
        for col in ("login", "messages", "recipients", "client IPs", "deferred"):
            tb.add_column(col, justify="right" if col != "login" else "left")
        for r in top["sasl_users"]:
            tb.add_row(escape(r["name"]), str(r["messages"]), str(r["recipients"]),
                       str(r["client_ips"]), str(r["deferred"]))
        console.print(tb)
    if top["client_ips"]:
        tb = Table(title="Top unauthenticated clients", title_justify="left")
        for col in ("client IP", "messages", "recipients", "trusted"):
            tb.add_column(col)
        for r in top["client_ips"]:
            tb.add_row(r["ip"], str(r["messages"]), str(r["recipients"]), "yes" if r["trusted"] else "")
        console.print(tb)
    if top["senders"]:
        tb = Table(title="Top envelope senders", title_justify="left")
        tb.add_column("sender")
        tb.add_column("messages", justify="right")
        for r in top["senders"]:
            tb.add_row(escape(r["sender"] or "<>"), str(r["messages"]))
        console.print(tb)
    if top["targeted_users"]:
        tb = Table(title="Usernames attacked from many addresses", title_justify="left")
        for col in ("username", "addresses", "failures"):
            tb.add_column(col)
        for r in top["targeted_users"]:
            tb.add_row(escape(r["username"]), str(r["ips"]), str(r["failures"]))
        console.print(tb)
