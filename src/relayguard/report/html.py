"""`--format html`: one self-contained incident report (inline CSS and SVG, no script, no CDN),
to hand to a manager, a provider or a blocklist operator. Every value from a log is escaped."""

from __future__ import annotations

import html
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..aggregate import BUCKET, top
from ..analysis import Analysis
from ..detect import Finding
from ..timefmt import iso
from ..timefmt import label as zone_label
from ..timefmt import text as _when

COLOURS = {"critical": "#b71c1c", "high": "#e53935", "medium": "#f9a825", "low": "#0288d1"}
SERIES = ["#d81b60", "#8e24aa", "#3949ab", "#00897b", "#f4511e", "#6d4c41"]
TIMELINE_KINDS = ("compromised_account", "trusted_host_relay")
MAX_BARS = 600

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{margin:0 0 4px;font-size:24px} h2{margin:28px 0 10px;font-size:18px} h3{margin:0;font-size:15px}
.muted{color:#666} .cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{background:#fff;border:1px solid #e0e3e8;border-radius:8px;padding:10px 14px;min-width:110px}
.card b{display:block;font-size:20px}
.finding{background:#fff;border:1px solid #e0e3e8;border-left:6px solid var(--sev);border-radius:8px;padding:14px 16px;margin:12px 0}
.badge{display:inline-block;color:#fff;background:var(--sev);border-radius:4px;padding:1px 8px;font-size:12px;font-weight:600;text-transform:uppercase;margin-right:8px}
table{border-collapse:collapse;width:100%;background:#fff;margin:6px 0}
th,td{border-bottom:1px solid #eceef1;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#fafbfc;font-weight:600} td.n{text-align:right;font-variant-numeric:tabular-nums}
table.facts{width:auto;min-width:360px}
pre{background:#1e1e1e;color:#ddd;padding:8px 10px;border-radius:6px;overflow-x:auto;font-size:12px;white-space:pre}
code.cmd{display:block;background:#eef6ee;border:1px solid #cfe3cf;border-radius:6px;padding:6px 10px;margin:4px 0;font-size:13px;white-space:pre-wrap}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px} .chart{background:#fff;border:1px solid #e0e3e8;border-radius:8px;padding:10px}
.legend span{display:inline-block;margin-right:14px;font-size:12px} .legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
@media (max-width:800px){.grid{grid-template-columns:1fr}}
"""


def e(value: Any) -> str:
    """Escape anything for HTML text or attribute context."""
    return html.escape("" if value is None else str(value), quote=True)


def bar_chart(series: list[tuple[str, str, dict[int, int]]], first: int, last: int,
              title: str, width: int = 1040, height: int = 220) -> str:
    """Stacked bars per time bucket (10 minutes, or hours when the period is long), inline SVG."""
    step = 1
    while (last - first + 1) / step > MAX_BARS:
        step *= 6 if step == 1 else 2
    n = (last - first) // step + 1
    stacks = [[0] * n for _ in series]
    for i, (_, _, data) in enumerate(series):
        for b, c in data.items():
            j = (b - first) // step
            if 0 <= j < n:
                stacks[i][j] += c
    totals = [sum(col) for col in zip(*stacks, strict=True)] if stacks else [0] * n
    peak = max(totals) if totals and max(totals) > 0 else 1
    left, bottom, top_pad = 44, 24, 8
    plot_w, plot_h = width - left - 8, height - bottom - top_pad
    bw = plot_w / n
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="bars" role="img" viewBox="0 0 {width} {height}" '
             f'width="100%" aria-label="{e(title)}"><title>{e(title)}</title>']
    for frac in (0, 0.5, 1):
        y = top_pad + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#666">'
                     f'{int(peak * frac)}</text>')
    unit = BUCKET * step
    for j in range(n):
        y = top_pad + plot_h
        when = _when((first + j * step) * BUCKET)
        for i, (label, colour, _) in enumerate(series):
            v = stacks[i][j]
            if not v:
                continue
            h = plot_h * v / peak
            y -= h
            parts.append(f'<rect x="{left + j * bw:.2f}" y="{y:.2f}" width="{max(bw - 0.4, 0.6):.2f}" '
                         f'height="{h:.2f}" fill="{colour}"><title>{e(when)} {e(label)}: {v}</title></rect>')
    ticks = max(1, n // 8)
    for j in range(0, n, ticks):
        x = left + j * bw
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" font-size="11" fill="#666">'
                     f'{e(_when((first + j * step) * BUCKET)[5:16])}</text>')
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{c}"></i>{e(label)}</span>' for label, c, _ in series)
    per = f"{unit // 60} minutes" if unit < 3600 else f"{unit // 3600} hour{'s' if unit > 3600 else ''}"
    return (f'<div class="chart"><h3>{e(title)} <span class="muted">(per {per})</span></h3>'
            f'<div class="legend">{legend}</div>{"".join(parts)}</div>')


def _timeline(a: Analysis) -> str:
    agg = a.aggregates
    if not agg.message_buckets:
        return ""
    culprits = [f for f in a.findings if f.kind in TIMELINE_KINDS and f.timeline][:len(SERIES)]
    rest = dict(agg.message_buckets)
    series = []
    for i, f in enumerate(culprits):
        for b, c in f.timeline.items():
            rest[b] = rest.get(b, 0) - c
        series.append((f"{f.subject} ({f.kind})", SERIES[i], f.timeline))
    series.append(("all other mail", "#b0bec5", {b: c for b, c in rest.items() if c > 0}))
    buckets = list(agg.message_buckets)
    return bar_chart(series, min(buckets), max(buckets), "Messages per culprit against the rest")


def _auth_chart(a: Analysis) -> str:
    ab = a.aggregates.auth_buckets
    if not ab:
        return ""
    span = list(ab) + list(a.aggregates.message_buckets)
    return bar_chart([("SASL authentication failures", "#e53935", ab)], min(span), max(span),
                     "Authentication failures")


def _table(title: str, cols: list[str], rows: list[list[Any]], cls: str = "") -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(
        f'<td class="n">{e(v)}</td>' if isinstance(v, int | float) else f"<td>{e(v)}</td>" for v in r)
        + "</tr>" for r in rows)
    return f'<div><h3>{e(title)}</h3><table class="{cls}"><tr>{head}</tr>{body}</table></div>'


def _finding(f: Finding, first: int, last: int) -> str:
    sev = COLOURS[f.severity]
    ev = f.evidence
    facts = [[k.replace("_", " "), v] for k, v in ev.items() if not isinstance(v, list | dict) and v is not None]
    lists = []
    for key in ("top_client_ips", "usernames", "top_recipient_domains", "top_senders",
                "top_destinations", "top_remote_servers"):
        vals = ev.get(key)
        if vals:
            shown = ", ".join(f"{v[0]} ({v[1]})" if isinstance(v, list) else str(v) for v in vals[:10])
            lists.append(f"<p><b>{e(key.replace('_', ' '))}:</b> {e(shown)}</p>")
    spark = ""
    if f.timeline:
        spark = bar_chart([(f.subject, sev, f.timeline)], first, last,
                          f"Activity of {f.subject}", height=110)
    examples = "\n".join(ev.get("examples", [])[:5])
    cmds = "".join(f'<code class="cmd">$ {e(x["command"])}  <span class="muted"># {e(x["why"])}</span></code>'
                   for x in f.actions)
    advice = "".join(f"<p>→ {e(t)}</p>" for t in f.advice)
    return (f'<section class="finding" style="--sev:{sev}" data-kind="{e(f.kind)}">'
            f'<h3><span class="badge">{e(f.severity)}</span>{e(f.kind)} — {e(f.subject)} '
            f'<span class="muted">score {f.score} · {e(_when(f.first_seen))} → {e(_when(f.last_seen))}</span></h3>'
            f"<p>{e(f.summary)}</p>{_table('Evidence', ['fact', 'value'], facts, 'facts')}{''.join(lists)}{spark}"
            f"{'<pre>' + e(examples) + '</pre>' if examples else ''}"
            f"{'<h3>Stop it</h3>' + cmds if cmds else ''}{advice}</section>")


def render_html(a: Analysis) -> str:
    agg = a.aggregates
    t = a.totals()
    tp = a.top(15)
    try:
        ver = version("relayguard")
    except PackageNotFoundError:
        ver = "dev"
    span = list(agg.message_buckets) + list(agg.auth_buckets)
    first, last = (min(span), max(span)) if span else (0, 0)
    cards = "".join(f'<div class="card"><b>{v:,}</b>{e(k.replace("_", " "))}</div>' for k, v in t.items())
    findings = "".join(_finding(f, first, last) for f in a.findings) or \
        '<p class="muted">No findings: nothing in these logs looks like spam being sent.</p>'
    tables = "".join([
        _table("Top SASL users", ["login", "messages", "recipients", "client IPs", "deferred"],
               [[r["name"], r["messages"], r["recipients"], r["client_ips"], r["deferred"]] for r in tp["sasl_users"]]),
        _table("Top unauthenticated clients", ["client IP", "messages", "recipients", "trusted"],
               [[r["ip"], r["messages"], r["recipients"], "yes" if r["trusted"] else ""] for r in tp["client_ips"]]),
        _table("Top envelope senders", ["sender", "messages"],
               [[r["sender"] or "<>", r["messages"]] for r in tp["senders"]]),
        _table("Top recipient domains", ["domain", "recipients"], top(agg.rcpt_domains, 15)),
        _table("Most SASL failures", ["client IP", "failures", "usernames"],
               [[r["ip"], r["failures"], r["usernames"]] for r in tp["auth_failures"]]),
        _table("Usernames attacked from many addresses", ["username", "addresses", "failures"],
               [[r["username"], r["ips"], r["failures"]] for r in tp["targeted_users"]]),
    ])
    worst = a.worst or "none"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>relayguard incident report — {e(_when(agg.start))}</title>
<style>{CSS}</style></head>
<body><main>
<h1>relayguard incident report</h1>
<p class="muted">{e(_when(agg.start))} → {e(_when(agg.end))} {e(zone_label())} · sources: {e(", ".join(a.sources))} ·
trusted networks: {e(", ".join(a.trusted))} · worst severity: <b>{e(worst)}</b></p>
<div class="cards">{cards}</div>
{_timeline(a)}
{_auth_chart(a)}
<h2>Findings ({len(a.findings)})</h2>
{findings}
<h2>Who sent what</h2>
<div class="grid">{tables}</div>
<p class="muted">Generated by relayguard {e(ver)} on {e(iso(time.time(), "seconds"))}.</p>
</main></body></html>
"""
