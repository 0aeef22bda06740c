"""Where alerts go: an SMTP server (e-mail) and an incoming-webhook URL (Slack, Mattermost,
or anything that takes a JSON POST).

Everything in an alert may come from a log line an attacker wrote (a SASL username, a sender
address): e-mail headers are stripped of control characters (no header injection) and webhook
text is escaped the way Slack and Mattermost expect (no `<!channel>` mentions, no fake links).
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Protocol

from ..sanitize import one_line
from .model import Alert

COLORS = {"critical": "#b00020", "high": "#e65100", "medium": "#f9a825", "low": "#9e9e9e",
          "info": "#2e7d32"}


class Channel(Protocol):
    name: str

    def send(self, alert: Alert, note: str = "") -> None:
        """Deliver one alert or raise (OSError, smtplib.SMTPException, ValueError)."""


def slack_escape(text: str) -> str:
    """Slack/Mattermost control sequences are `<…>` and `&`: escape them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class EmailChannel:
    name = "email"

    def __init__(self, host: str, port: int = 25, sender: str = "relayguard@localhost",
                 to: list[str] | None = None, starttls: bool = False, tls: bool = False,
                 user: str = "", password: str = "", timeout: float = 10.0) -> None:
        if not to:
            raise ValueError("[alert.email] to: no recipient")
        self.host, self.port, self.sender, self.to = host, port, sender, list(to)
        self.starttls, self.tls = starttls, tls
        self.user, self.password, self.timeout = user, password, timeout

    @classmethod
    def from_config(cls, c: dict[str, Any]) -> EmailChannel:
        password = c.get("password", "")
        if c.get("password_file"):
            # A file readable by root only keeps the password out of the configuration.
            password = Path(c["password_file"]).read_text("utf-8").strip()
        return cls(c["host"], int(c.get("port", 25)), c.get("from") or "relayguard@localhost",
                   list(c.get("to") or []), bool(c.get("starttls")), bool(c.get("tls")),
                   c.get("user", ""), password, float(c.get("timeout", 10)))

    def message(self, alert: Alert, note: str = "") -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = one_line(f"[relayguard] {alert.severity.upper()}: {alert.title}")
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(alert.ts, localtime=True)
        msg["Message-ID"] = make_msgid("relayguard")
        msg["X-Relayguard-Kind"] = one_line(alert.kind, 64)
        msg["X-Relayguard-Severity"] = alert.severity
        body = alert.text
        if note:
            body += f"\n\n{note}"
        body += "\n\n-- \nrelayguard watch on " + alert.host + "\n\nDetails (JSON):\n"
        body += json.dumps(alert.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
        msg.set_content(body)
        return msg

    def send(self, alert: Alert, note: str = "") -> None:
        msg = self.message(alert, note)
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.tls:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.starttls and not self.tls:
                smtp.starttls(context=context)
            if self.user:
                smtp.login(self.user, self.password)
            smtp.send_message(msg, from_addr=self.sender, to_addrs=self.to)


def slack_payload(alert: Alert, note: str = "") -> dict[str, Any]:
    """`text` for any incoming webhook, an attachment with fields for Slack and Mattermost, and
    the alert itself under `relayguard` for programs."""
    emoji = {"critical": ":rotating_light:", "high": ":warning:",
             "info": ":white_check_mark:"}.get(alert.severity, ":mag:")
    text = f"{emoji} *{alert.severity.upper()}* {slack_escape(alert.title)} ({slack_escape(alert.host)})"
    body = slack_escape(alert.text)
    if note:
        body += "\n_" + slack_escape(note) + "_"
    fields = [{"title": "kind", "value": slack_escape(alert.kind), "short": True},
              {"title": "subject", "value": slack_escape(alert.subject), "short": True}]
    for a in alert.actions[:3]:
        fields.append({"title": slack_escape(a.get("why", "action")),
                       "value": "`" + slack_escape(a.get("command", "")) + "`", "short": False})
    return {
        "text": text,
        "username": "relayguard",
        "attachments": [{"fallback": text, "color": COLORS.get(alert.severity, "#9e9e9e"),
                         "title": slack_escape(alert.title), "text": body, "fields": fields}],
        "relayguard": alert.to_dict(),
    }


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"[alert.webhook] url must be http(s)://…, not {url!r}")
        self.url = url
        self.timeout = timeout

    @classmethod
    def from_config(cls, c: dict[str, Any]) -> WebhookChannel:
        return cls(c["url"], float(c.get("timeout", 10)))

    def send(self, alert: Alert, note: str = "") -> None:
        data = json.dumps(slack_payload(alert, note), ensure_ascii=False, default=str).encode()
        req = urllib.request.Request(self.url, data=data, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "relayguard"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 — http(s) checked above
                resp.read(4096)
        except urllib.error.HTTPError as exc:
            raise OSError(f"webhook answered HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            raise OSError(f"webhook unreachable: {exc.reason}") from None
