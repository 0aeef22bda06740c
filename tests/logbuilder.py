"""Build small Postfix logs line by line for detector tests (shapes as Postfix 3.x writes them)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


class LogBuilder:
    def __init__(self, start: tuple[int, int, int, int, int] = (2026, 6, 21, 8, 0), host: str = "mail") -> None:
        y, mo, d, h, mi = start
        self.t = time.mktime((y, mo, d, h, mi, 0, 0, 0, -1))
        self.host = host
        self.lines: list[str] = []
        self._qid = itertools.count(0x1A2B3C4D50)
        self._pid = itertools.count(20000)

    def advance(self, seconds: float) -> LogBuilder:
        self.t += seconds
        return self

    def _stamp(self) -> str:
        tm = time.localtime(self.t)
        return f"{MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"

    def line(self, tag: str, message: str) -> None:
        self.lines.append(f"{self._stamp()} {self.host} {tag}[{next(self._pid)}]: {message}")

    def auth_failure(self, ip: str, user: str | None = None, reason: str = "authentication failure") -> None:
        tail = f", sasl_username={user}" if user else ""
        self.line("postfix/submission/smtpd", f"warning: unknown[{ip}]: SASL LOGIN authentication failed: {reason}{tail}")

    def message(self, ip: str, *, user: str | None = None, sender: str = "someone@ourdomain.example",
                rcpts: list[str] | None = None, status: str = "sent", message_id: str | None = "auto",
                name: str = "unknown", reason: str | None = None, removed: bool = True) -> str:
        qid = f"{next(self._qid):X}"
        rcpts = rcpts or ["friend@example.net"]
        svc = "postfix/submission/smtpd" if user else "postfix/smtpd"
        sasl = f", sasl_method=LOGIN, sasl_username={user}" if user else ""
        self.line(svc, f"connect from {name}[{ip}]")
        self.line(svc, f"{qid}: client={name}[{ip}]{sasl}")
        mid = f"<{qid}.{int(self.t)}@client.example>" if message_id == "auto" else f"<{message_id or ''}>"
        self.line("postfix/cleanup", f"{qid}: message-id={mid}")
        self.line("postfix/qmgr", f"{qid}: from=<{sender}>, size=2048, nrcpt={len(rcpts)} (queue active)")
        for r in rcpts:
            domain = r.split("@")[1]
            if status == "sent":
                why = reason or "250 2.0.0 Ok: queued as 4AB12"
                dsn = "2.0.0"
            elif status == "deferred":
                why = reason or f"host mx.{domain}[198.51.100.7] said: 450 4.7.1 Try again later (in reply to RCPT TO command)"
                dsn = "4.7.1"
            else:
                why = reason or f"host mx.{domain}[198.51.100.7] said: 550 5.1.1 User unknown (in reply to RCPT TO command)"
                dsn = "5.1.1"
            self.line("postfix/smtp", f"{qid}: to=<{r}>, relay=mx.{domain}[198.51.100.7]:25, delay=1.1, "
                      f"delays=0.1/0/0.5/0.5, dsn={dsn}, status={status} ({why})")
        if removed and status != "deferred":
            self.line("postfix/qmgr", f"{qid}: removed")
        self.line(svc, f"disconnect from {name}[{ip}] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5")
        return qid

    def local_message(self, uid: int, sender: str, rcpts: list[str], status: str = "sent") -> str:
        """A message submitted with sendmail on the server itself (pickup), as a web form would."""
        qid = f"{next(self._qid):X}"
        self.line("postfix/pickup", f"{qid}: uid={uid} from=<{sender}>")
        self.line("postfix/cleanup", f"{qid}: message-id=<{qid}@mail.ourdomain.example>")
        self.line("postfix/qmgr", f"{qid}: from=<{sender}>, size=1800, nrcpt={len(rcpts)} (queue active)")
        for r in rcpts:
            domain = r.split("@")[1]
            self.line("postfix/smtp", f"{qid}: to=<{r}>, relay=mx.{domain}[198.51.100.8]:25, delay=0.9, "
                      f"delays=0.1/0/0.4/0.4, dsn={'2.0.0' if status == 'sent' else '4.7.1'}, status={status} "
                      f"({'250 ok' if status == 'sent' else 'host said: 451 4.7.1 try later'})")
        if status == "sent":
            self.line("postfix/qmgr", f"{qid}: removed")
        return qid

    def firewall(self, src: str, dst: str, dpt: int = 25) -> None:
        self.lines.append(f"{self._stamp()} gw kernel: IN=eth1 OUT=eth0 SRC={src} DST={dst} LEN=60 "
                          f"TOS=0x00 PREC=0x00 TTL=63 ID=1 DF PROTO=TCP SPT=40000 DPT={dpt} WINDOW=29200 RES=0x00 SYN URGP=0")

    def write(self, path: Path) -> Path:
        path.write_text("\n".join(self.lines) + "\n", encoding="utf-8")
        return path
