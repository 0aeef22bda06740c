"""Mail submitted on the server itself (sendmail/pickup) with a spam shape: a hacked web form or
CMS plugin running as the web server's user. It never meets smtpd's checks or the policy
server, so the log's `pickup ... uid=N from=<...>` lines are the only place to see it."""

from __future__ import annotations

from typing import Any

from ..aggregate import Aggregates
from .finding import Finding, cmd
from .trusted_host_relay import MIN_LOOK, spam_shape


def detect(agg: Aggregates, cfg: dict[str, Any]) -> list[Finding]:
    c = cfg["detect"]["local_submission"]
    out = []
    for uid, s in agg.local.items():
        if s.messages < MIN_LOOK:
            continue
        score, reasons, evidence = spam_shape(s, c, agg.hours, "submitted locally")
        if score < 20:
            continue
        subject = f"uid {uid}"
        sender = max(s.senders, key=s.senders.__getitem__) if s.senders else None
        f = Finding("local_submission", subject, score,
                    f"Local user {uid} ({sender or 'unknown sender'}) through sendmail: "
                    + ", ".join(reasons) + ".", s.first, s.last, timeline=dict(s.buckets))
        f.evidence = {"uid": uid, **evidence}
        if sender:
            f.action(cmd("relayguard", "queue", "hold", "--sender", sender),
                     "quarantine what it queued")
        f.advice.append(f"Find the script running as uid {uid} (web form, CMS plugin: the web "
                        "server's access log at the same minutes) and disable it; Postfix's "
                        "`authorized_submit_users` can keep that user from submitting at all.")
        out.append(f)
    return out
