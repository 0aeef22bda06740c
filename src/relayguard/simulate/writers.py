"""The log line writers: every shape of line the simulated server logs is written here, once.

Scenarios decide who does what and when; a `Writer` turns that into the lines Postfix, the
firewall, Dovecot, cron and the kernel would log, with the process ids and queue IDs of the
moment. Episodes are lists of `(time, text)` (text without the syslog header, which the merge
adds), the first item the earliest.
"""

from __future__ import annotations

from random import Random

from . import data as D
from .pacing import Episode
from .world import World, ip_dashes

KERNEL_UPTIME_STAMP = True  # `kernel: [12345.678901] IN=...` (Debian/Ubuntu rsyslog)
_KNOWN = frozenset(D.PROVIDERS) | frozenset(D.PARTNERS)  # domains that do exist


def fmt_delay(v: float) -> str:
    """Postfix's delay style: two decimals under 1 s, one under 10 s, whole seconds above."""
    if v < 0.005:
        return "0"
    if v < 1:
        s = f"{v:.2f}".rstrip("0")
        return s.rstrip(".")
    if v < 10:
        s = f"{v:.1f}"
        return s[:-2] if s.endswith(".0") else s
    return str(int(v))


class Pids:
    """Process ids: one increasing counter, per-service pools, smtpd processes never shared.

    smtpd processes serve one session at a time, exit after 100 idle seconds or 100 sessions
    (max_idle, max_use), so the pool keeps (pid, free_at, uses) and reuses only idle ones.
    """

    def __init__(self, rng: Random) -> None:
        self.rng = rng
        self.counter = 1000 + int(rng.random() * 8000)
        self.master = self.new()
        self.qmgr = self.new()
        self.pickup = self.new()
        self.smtpd: dict[str, list[list]] = {}
        self.pools: dict[str, list[int]] = {}

    def new(self) -> int:
        self.counter += 1 + int(self.rng.random() * 6)
        if self.counter > 4_194_000:  # pid_max wrap
            self.counter = 300
        return self.counter

    def restart(self) -> None:
        """`postfix stop/start`: every daemon gets a new pid."""
        self.master = self.new()
        self.qmgr = self.new()
        self.pickup = self.new()
        self.smtpd.clear()
        self.pools.clear()

    def session(self, svc: str, t0: float, t1: float) -> int:
        pool = self.smtpd.get(svc)
        if pool is None:
            pool = self.smtpd[svc] = []
        chosen = None
        keep = []
        for entry in pool:
            free_at = entry[1]
            if t0 - free_at > 100 or entry[2] >= 100:
                continue  # exited
            keep.append(entry)
            if chosen is None and free_at <= t0:
                chosen = entry
        if chosen is None:
            chosen = [self.new(), t1, 0]
            keep.append(chosen)
        chosen[1] = t1
        chosen[2] += 1
        self.smtpd[svc] = keep
        return chosen[0]

    def worker(self, svc: str, size: int = 4) -> int:
        """cleanup, smtp, local, bounce: a few long-lived processes, replaced now and then."""
        pool = self.pools.get(svc)
        if pool is None:
            pool = self.pools[svc] = [self.new() for _ in range(size)]
        r = self.rng.random()
        i = int(r * 1000) % len(pool)
        if r < 0.01:
            pool[i] = self.new()
        return pool[i]


class QueueIds:
    """Short Postfix queue IDs, unique in the file.

    Postfix builds them from the microseconds of the queue file's creation (5 hex digits)
    followed by its inode number in hex. The inode here is an odd-multiplier permutation of a
    counter, a bijection on 24 bits: unique without remembering past IDs. Inodes below 2^20 are
    written with 5 digits, the others 6, so the two lengths can never collide.
    """

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, t: float) -> str:
        n = self.n
        self.n = n + 1
        usec = int((t % 1.0) * 1_000_000)
        if n < 1 << 24:
            ino = (n * 0xD1E995 + 0x3A5F17) & 0xFFFFFF
            if ino < 1 << 20:
                return f"{usec:05X}{ino:05X}"
            return f"{usec:05X}{ino:06X}"
        return f"{usec:05X}{n:07X}"  # beyond 16.7M messages: sequential 7-digit inodes


# --------------------------------------------------------------------------- smtpd line shapes

def _connect(tag: str, who: str) -> str:
    return f"{tag}connect from {who}"


def _tls(tag: str, who: str) -> str:
    return f"{tag}Anonymous TLS connection established from {who}: {D.TLS_SERVER}"


def _lost(tag: str, after: str, who: str) -> str:
    return f"{tag}lost connection after {after} from {who}"


def _disconnect(tag: str, who: str, counts: str) -> str:
    return f"{tag}disconnect from {who} {counts}"


class Writer:
    """Writes one run's lines. A *dry* writer (throwaway ids, no ground truth recorded) lets
    the planner count the lines of the budget-free streams without disturbing the real run."""

    def __init__(self, world: World, pid_rng: Random, dry: bool = False) -> None:
        self.world = world
        self.dry = dry
        self.pids = Pids(pid_rng)
        self.qid = QueueIds()
        self.opendkim_pid = self.pids.new()
        # read on every delivery: kept here rather than looked up through the world (which
        # the scenarios have finished planning before any writer is made)
        self.local_set = world.local_set
        self.upgrade_at = world.upgrade_at
        self.blocked_since = world.blocked_since
        self.dom_info = world.dom_info

    # ----------------------------------------------------------------------- remote replies

    def ok_reply(self, rng: Random, style: str, t: float) -> str:
        r = rng.getrandbits(64)
        if style == "google":
            return (f"250 2.0.0 OK  {1781000000 + int(t)} {r & 0xFFFFFFFFFFFF:x}si"
                    f"{r >> 40}.{r % 500} - gsmtp")
        if style == "outlook":
            return (f"250 2.6.0 <{r:016X}@{D.MYHOSTNAME}> [InternalId={r >> 20}, "
                    f"Hostname=AM0PR04MB{r % 10000}.eurprd04.prod.outlook.com] "
                    f"{3000 + r % 9000} bytes in 0.{r % 999:03d}, 12.3 KB/sec Queued mail for delivery")
        if style == "yahoo":
            return "250 ok dirdel"
        if style == "gmx":
            return f"250 Requested mail action okay, completed: id=1M{r:013x}"[:66]
        if style == "orange":
            return f"250 2.0.0 {r:012x} mail accepted for delivery"
        return f"250 2.0.0 Ok: queued as {r & 0xFFFFFFFFFF:010X}"

    def outcome(self, rng: Random, t: float, rcpt: str, dom: str, profile: str,
                retry: bool = False) -> tuple[str, str, str, str, float]:
        """(status, dsn, relay, reason-in-parentheses, seconds) for one remote delivery."""
        mx, ip, style, bl = self.dom_info(dom)
        relay = f"{mx}[{ip}]:25"
        host = f"host {mx}[{ip}] said: "
        r = rng.random()
        bs = self.blocked_since
        if bs is not None and t >= bs and bl is not None and r < 0.92:
            q = D.PUBLIC_IP
            if bl == D.BL_ZEN:
                text = (f"Service unavailable; Client host [{q}] blocked using zen.spamhaus.org; "
                        f"https://www.spamhaus.org/query/ip/{q}")
            else:
                text = (f"Service unavailable; Client host [{q}] blocked using bl.spamcop.net; "
                        f"Blocked - see https://www.spamcop.net/bl.shtml?{q}")
            if rng.random() < 0.7:
                return "bounced", "5.7.1", relay, f"{host}554 5.7.1 {text} (in reply to RCPT TO command)", 0.4
            return "deferred", "4.7.1", relay, f"{host}450 4.7.1 {text} (in reply to RCPT TO command)", 0.4
        if profile == "spam":
            p_sent, p_def = (0.45, 0.75) if retry else (0.40, 0.78)
        elif profile == "ndr":
            p_sent, p_def = 0.5, 0.65
        elif profile == "news":
            p_sent, p_def = (0.97, 0.985) if not retry else (0.99, 0.995)
        else:
            p_sent, p_def = (0.955, 0.985) if not retry else (1.0, 1.0)
        if r < p_sent:
            return "sent", "2.6.0" if style == "outlook" else "2.0.0", relay, self.ok_reply(rng, style, t), 0.3 + rng.random() * 1.5
        if r < p_def:
            k = rng.random()
            if k < 0.35:
                return "deferred", "4.2.0", relay, (
                    f"{host}450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, see "
                    f"http://postgrey.schweikert.ch/help/{dom}.html (in reply to RCPT TO command)"), 0.5
            if k < 0.55:
                return "deferred", "4.4.1", "none", f"connect to {mx}[{ip}]:25: Connection timed out", 30.0
            if k < 0.7 and style == "google":
                return "deferred", "4.7.28", relay, (
                    f"{host}421-4.7.28 Gmail has detected an unusual rate of unsolicited mail "
                    f"originating from your IP address. To protect our users from spam, mail sent "
                    f"from your IP address has been temporarily rate limited. 421 4.7.28 "
                    f"https://support.google.com/mail/?p=UnsolicitedRateLimitError - gsmtp "
                    f"(in reply to end of DATA command)"), 1.2
            if k < 0.7 and style == "yahoo":
                return "deferred", "4.7.0", relay, (
                    f"{host}421 4.7.0 [TSS04] Messages from {D.PUBLIC_IP} temporarily deferred due "
                    f"to unexpected volume or user complaints - 4.16.55.1; see "
                    f"https://postmaster.yahooinc.com/error-codes (in reply to MAIL FROM command)"), 0.8
            if k < 0.85:
                return "deferred", "4.2.2", relay, (
                    f"{host}452 4.2.2 <{rcpt}>: Recipient address rejected: Mailbox full "
                    f"(in reply to RCPT TO command)"), 0.6
            return "deferred", "4.7.1", relay, (
                f"{host}451 4.7.1 Service unavailable - try again later (in reply to RCPT TO command)"), 0.5
        k = rng.random()
        if k < 0.15 and profile in ("spam", "ndr") and style == "postfix" and dom not in _KNOWN:
            return "bounced", "5.4.4", "none", (
                f"Host or domain name not found. Name service error for name={dom} type=MX: "
                f"Host not found"), 0.2
        if style == "google":
            return "bounced", "5.1.1", relay, (
                f"{host}550-5.1.1 The email account that you tried to reach does not exist. "
                f"Please try 550-5.1.1 double-checking the recipient's email address for typos or "
                f"550-5.1.1 unnecessary spaces. For more information, go to 550 5.1.1  "
                f"https://support.google.com/mail/?p=NoSuchUser - gsmtp (in reply to RCPT TO command)"), 0.6
        if k < 0.3 and profile == "spam":
            return "bounced", "5.7.1", relay, (
                f"{host}554 5.7.1 Message rejected as spam by Content Filtering. "
                f"(in reply to end of DATA command)"), 1.5
        return "bounced", "5.1.1", relay, (
            f"{host}550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual "
            f"mailbox table (in reply to RCPT TO command)"), 0.5

    # ----------------------------------------------------------------------- message life

    def _cleanup(self, qid: str, msgid: str) -> str:
        return f"postfix/cleanup[{self.pids.worker('cleanup', 3)}]: {qid}: message-id=<{msgid}>"

    def _active(self, qid: str, sender: str, size: int, nrcpt: int) -> str:
        return (f"postfix/qmgr[{self.pids.qmgr}]: {qid}: from=<{sender}>, size={size}, "
                f"nrcpt={nrcpt} (queue active)")

    def _removed(self, qid: str) -> str:
        return f"postfix/qmgr[{self.pids.qmgr}]: {qid}: removed"

    def queue(self, ep: Episode, rng: Random, t: float, qid: str, sender: str, rcpts: list[str],
              size: int, msgid: str | None, profile: str, dkim: bool = False) -> None:
        """Cleanup, qmgr, deliveries, retries, bounce notice and removal of one message.

        `t` is when the message was accepted (its client= or pickup line).
        """
        r = rng.random
        t1 = t + 0.05 + r() * 0.6
        ep.append((t1, self._cleanup(qid, "" if msgid is None else msgid)))
        if dkim:
            ep.append((t1 + 0.002, f"opendkim[{self.opendkim_pid}]: {qid}: DKIM-Signature field "
                                   f"added (s=mail, d={D.DOMAIN})"))
        t2 = t1 + 0.01 + r() * 0.05
        qline = self._active(qid, sender, size, len(rcpts))
        ep.append((t2, qline))
        deferred, bounced, t_last = self._deliver(ep, rng, t, t2, qid, rcpts, profile, False)
        if deferred:
            # one retry after minimal_backoff_time (300 s) or so; what still fails stays queued
            # (a growing deferred queue is the symptom admins notice), keeping memory bounded
            tr = t_last + 300 + r() * 900
            ep.append((tr, qline))
            deferred, b2, t_last = self._deliver(ep, rng, t, tr + 0.01, qid, deferred, profile, True)
            bounced += b2
        if bounced and sender:
            tb = t_last + 0.01
            nqid = self.qid(tb)
            ep.append((tb, f"postfix/bounce[{self.pids.worker('bounce', 1)}]: {qid}: "
                           f"sender non-delivery notification: {nqid}"))
            self._ndr(ep, rng, tb, nqid, sender)
            t_last = tb
        if not deferred:
            ep.append((t_last + 0.01, self._removed(qid)))

    def _deliver(self, ep: Episode, rng: Random, t_arrival: float, t: float, qid: str,
                 rcpts: list[str], profile: str, retry: bool) -> tuple[list[str], list[str], float]:
        """Delivery attempts of `rcpts`; returns (still deferred, bounced, time of the last)."""
        deferred: list[str] = []
        bounced: list[str] = []
        r = rng.random
        smtp_pid = self.pids.worker("smtp", 6)
        tt = t
        for rc in rcpts:
            user, _, dom = rc.rpartition("@")
            if dom == D.DOMAIN:
                tt += 0.02 + r() * 0.1
                a = tt - t_arrival
                if user in self.local_set:
                    to = f"to=<{rc}>"
                    if user in ("postmaster", "abuse"):
                        to = f"to=<{D.ADMIN}@{D.DOMAIN}>, orig_to=<{rc}>"
                    ep.append((tt, f"postfix/local[{self.pids.worker('local', 2)}]: {qid}: {to}, "
                                   f"relay=local, delay={fmt_delay(a)}, delays={fmt_delay(a * 0.6)}/"
                                   f"{fmt_delay(a * 0.1)}/0/{fmt_delay(a * 0.3)}, dsn=2.0.0, "
                                   f"status=sent (delivered to mailbox)"))
                else:
                    ep.append((tt, f"postfix/local[{self.pids.worker('local', 2)}]: {qid}: to=<{rc}>, "
                                   f"relay=local, delay={fmt_delay(a)}, delays={fmt_delay(a * 0.7)}/"
                                   f"0/0/{fmt_delay(a * 0.3)}, dsn=5.1.1, status=bounced "
                                   f"(unknown user: \"{user}\")"))
                    bounced.append(rc)
                continue
            status, dsn, relay, reason, secs = self.outcome(rng, tt, rc, dom, profile, retry)
            conn = secs * (0.4 + r() * 0.3)
            tt += secs
            a = tt - t_arrival
            qwait = max(0.0, t - t_arrival - 0.05)
            if relay == "none":
                delays = f"0.05/{fmt_delay(qwait)}/{fmt_delay(secs)}/0"
            else:
                delays = f"0.05/{fmt_delay(qwait)}/{fmt_delay(conn)}/{fmt_delay(secs - conn)}"
            ep.append((tt, f"postfix/smtp[{smtp_pid}]: {qid}: to=<{rc}>, relay={relay}, "
                           f"delay={fmt_delay(a)}, delays={delays}, dsn={dsn}, "
                           f"status={status} ({reason})"))
            if status == "deferred":
                deferred.append(rc)
            elif status == "bounced":
                bounced.append(rc)
        return deferred, bounced, tt

    def _ndr(self, ep: Episode, rng: Random, t: float, qid: str, to: str) -> None:
        """The bounce message itself: no client=, null sender, one recipient."""
        d = self.world.dt(t)
        ep.append((t + 0.001, self._cleanup(qid, f"{d:%Y%m%d%H%M%S}.{qid}@{D.MYHOSTNAME}")))
        ep.append((t + 0.002, self._active(qid, "", 2400 + int(rng.random() * 4000), 1)))
        dv, _, t_last = self._deliver(ep, rng, t, t + 0.003, qid, [to], "ndr", False)
        if not dv:
            ep.append((t_last + 0.001, self._removed(qid)))
        # a bounce of a bounce is discarded (notify_classes lacks 2bounce): nothing more

    def pickup(self, ep: Episode, rng: Random, t: float, uid: int, login: str, rcpts: list[str],
               size: int, msgid: str) -> None:
        """A local submission (sendmail → pickup) by `login`, and the life of its message."""
        qid = self.qid(t)
        ep.append((t, f"postfix/pickup[{self.pids.pickup}]: {qid}: uid={uid} from=<{login}>"))
        self.queue(ep, rng, t, qid, f"{login}@{D.MYHOSTNAME}", rcpts, size, msgid, "user")

    # ----------------------------------------------------------------------- smtpd sessions

    def _smtpd(self, svc: str, cname: str, ip: str, t: float, t_end: float) -> tuple[str, str]:
        """(tag, client) of an smtpd process idle from `t` to `t_end`."""
        return f"postfix/{svc}[{self.pids.session(svc, t, t_end)}]: ", f"{cname}[{ip}]"

    def session(self, rng: Random, t: float, svc: str, cname: str, ip: str,
                msgs: list[tuple[str, list[str], str | None, str]],
                auth: tuple[str, str] | None = None, tls: bool = True,
                dkim: bool = False) -> Episode:
        """One smtpd session delivering `msgs` = [(sender, rcpts, message-id, profile)]."""
        r = rng.random
        # Plan times first: the pid must be one that is idle for the whole session.
        t_cur = t + 0.05 + r() * 0.3
        marks = []
        for _ in msgs:
            t_cur += 0.1 + r() * 0.5
            marks.append(t_cur)
            t_cur += 0.3 + r() * 1.5
        t_end = t_cur + 0.02 + r() * 0.2
        tag, who = self._smtpd(svc, cname, ip, t, t_end)
        ep: Episode = [(t, _connect(tag, who))]
        if tls:
            ep.append((t + 0.04, _tls(tag, who)))
        suffix = f", sasl_method={auth[0]}, sasl_username={auth[1]}" if auth else ""
        nrcpt = 0
        for (sender, rcpts, msgid, profile), tm in zip(msgs, marks, strict=True):
            qid = self.qid(tm)
            ep.append((tm, f"{tag}{qid}: client={who}{suffix}"))
            size = 900 + int(r() * r() * 60_000)
            self.queue(ep, rng, tm, qid, sender, rcpts, size, msgid, profile, dkim)
            nrcpt += len(rcpts)
        n = len(msgs)
        parts = ["ehlo=2", "starttls=1"] if tls and svc != "smtps/smtpd" else ["ehlo=1"]
        if auth:
            parts.append("auth=1")
        parts += [f"mail={n}", f"rcpt={nrcpt}", f"data={n}", "quit=1"]
        total = sum(int(p.split("=")[1]) for p in parts)
        ep.append((t_end, _disconnect(tag, who, f"{' '.join(parts)} commands={total}")))
        return ep

    def auth_fail_line(self, t: float, tag: str, who: str, mech: str, login: str,
                       reason: str | None = None) -> str:
        """Postfix 3.7.9 and later (Debian 12 point releases, 3.9) append the login; older ones do not."""
        if reason is None:
            reason = "UGFzc3dvcmQ6" if mech == "LOGIN" else ""
        if t >= self.upgrade_at:
            if not reason:
                reason = "(reason unavailable)"
            return f"{tag}warning: {who}: SASL {mech} authentication failed: {reason}, sasl_username={login}"
        return f"{tag}warning: {who}: SASL {mech} authentication failed: {reason}"

    def auth_fail_session(self, rng: Random, t: float, svc: str, cname: str, ip: str,
                          logins: list[str], mech: str = "LOGIN", tls: bool = False,
                          lost: bool | None = None, reason: str | None = None) -> Episode:
        """Connect, N failed AUTH attempts, then the client gives up."""
        r = rng.random
        times = []
        tc = t + 0.3 + r() * 0.5
        for _ in logins:
            tc += 1.0 + r() * 2.5  # smtpd_error_sleep_time-ish pacing
            times.append(tc)
        t_end = tc + 0.05 + r() * 0.3
        tag, who = self._smtpd(svc, cname, ip, t, t_end)
        ep: Episode = [(t, _connect(tag, who))]
        if tls:
            ep.append((t + 0.1, _tls(tag, who)))
        for login, tt in zip(logins, times, strict=True):
            # when the back end is gone, Postfix never learns the login
            shown = "(unavailable)" if reason else login
            ep.append((tt, self.auth_fail_line(tt, tag, who, mech, shown, reason)))
        n = len(logins)
        lead = "ehlo=2 starttls=1" if tls and svc != "smtps/smtpd" else "ehlo=1"
        nlead = 3 if lead.startswith("ehlo=2") else 1
        if lost is None:
            lost = r() < 0.55
        if lost:
            ep.append((t_end - 0.01, _lost(tag, "AUTH", who)))
            ep.append((t_end, _disconnect(tag, who, f"{lead} auth=0/{n} commands={nlead}/{nlead + n}")))
        else:
            ep.append((t_end, _disconnect(tag, who, f"{lead} auth=0/{n} quit=1 "
                                                    f"commands={nlead + 1}/{nlead + n + 1}")))
        return ep

    def reject_session(self, rng: Random, t: float) -> Episode:
        """A stranger's RCPT refused: relay denied, unknown user, or our own RBL check."""
        w = self.world
        r = rng.random
        ip = w.public_ip(rng)
        pre = None
        if r() < 0.25:
            fake = f"{ip_dashes(ip)}.static.{w.rand_domain(rng)}"
            pre = f"warning: hostname {fake} does not resolve to address {ip}: Name or service not known"
        k = r()
        helo = f"[{ip}]" if k < 0.3 else w.rand_domain(rng) if k < 0.7 else "User"
        sender = w.ext_person(rng, w.rand_domain(rng))
        k = r()
        if k < 0.4:
            rc = w.ext_person(rng, w.rand_domain(rng))
            text = f"554 5.7.1 <{rc}>: Relay access denied"
        elif k < 0.75:
            rc = f"{D.FIRST[int(r() * len(D.FIRST))]}@{D.DOMAIN}"
            text = f"550 5.1.1 <{rc}>: Recipient address rejected: User unknown in local recipient table"
        else:
            # our own RBL check rejecting a listed client (not us being listed)
            rc = f"{w.local_names[int(r() * len(w.local_names))]}@{D.DOMAIN}"
            text = (f"554 5.7.1 Service unavailable; Client host [{ip}] blocked using {D.BL_ZEN}; "
                    f"https://www.spamhaus.org/query/ip/{ip}")
        t_end = t + 1 + r() * 4
        tag, who = self._smtpd("smtpd", "unknown", ip, t, t_end)
        ep: Episode = [(t, f"{tag}{pre}")] if pre else []
        ep.append((t + 0.001, _connect(tag, who)))
        ep.append((t + 0.5, f"{tag}NOQUEUE: reject: RCPT from {who}: {text}; from=<{sender}> "
                            f"to=<{rc}> proto=ESMTP helo=<{helo}>"))
        if r() < 0.5:
            ep.append((t_end - 0.01, _lost(tag, "RCPT", who)))
            ep.append((t_end, _disconnect(tag, who, "ehlo=1 mail=1 rcpt=0/1 commands=2/3")))
        else:
            ep.append((t_end, _disconnect(tag, who, "ehlo=1 mail=1 rcpt=0/1 rset=1 quit=1 "
                                                    "commands=4/5")))
        return ep

    def scanner_session(self, rng: Random, t: float) -> Episode:
        """An internet scanner: connects, maybe says EHLO or speaks HTTP, leaves."""
        r = rng.random
        ip = self.world.public_ip(rng)
        t_end = t + 0.2 + r() * 3
        svc = "smtpd" if r() < 0.8 else "smtps/smtpd"
        tag, who = self._smtpd(svc, "unknown", ip, t, t_end)
        ep: Episode = [(t, _connect(tag, who))]
        k = r()
        if svc == "smtps/smtpd":
            ep.append((t + 0.1, f"{tag}SSL_accept error from {who}: lost connection"))
            ep.append((t + 0.11, _lost(tag, "CONNECT", who)))
            ep.append((t_end, _disconnect(tag, who, "commands=0/0")))
        elif k < 0.5:
            ep.append((t_end - 0.01, _lost(tag, "EHLO", who)))
            ep.append((t_end, _disconnect(tag, who, "ehlo=1 commands=1")))
        elif k < 0.8:
            ep.append((t_end, _disconnect(tag, who, "ehlo=1 quit=1 commands=2")))
        else:
            ep.append((t + 0.05, f"{tag}improper command pipelining after CONNECT from {who}: "
                                 f"GET / HTTP/1.1\\r\\nHost: {D.PUBLIC_IP}\\r\\n"))
            ep.append((t_end, _disconnect(tag, who, "unknown=0/1 commands=0/1")))
        return ep

    # ----------------------------------------------------------------------- daemons

    def _daemon_started(self, version: str) -> str:
        return (f"postfix/master[{self.pids.master}]: daemon started -- version {version}, "
                f"configuration /etc/postfix")

    def postfix_restart(self, t: float, version: str) -> Episode:
        """`postfix stop; postfix start` (a package upgrade): every daemon's pid changes."""
        ep: Episode = [(t, f"postfix/postfix-script[{self.pids.new()}]: stopping the Postfix mail system"),
                       (t + 0.01, f"postfix/master[{self.pids.master}]: terminating on signal 15")]
        self.pids.restart()
        ep.append((t + 2.1, f"postfix/postfix-script[{self.pids.new()}]: starting the Postfix mail system"))
        ep.append((t + 2.2, self._daemon_started(version)))
        return ep

    def auth_service_down(self, t: float) -> Episode:
        """Dovecot's auth service failing to start (SASL logins fail until it is back)."""
        return [(t, "dovecot: master: Error: service(auth): command startup failed, "
                    "throttling for 2 secs")]

    def cron_hourly(self, t: float) -> Episode:
        pid = self.pids.new()
        ep = [(t, f"CRON[{pid}]: pam_unix(cron:session): session opened for user "
                  f"root(uid=0) by (uid=0)"),
              (t + 0.01, f"CRON[{pid + 1}]: (root) CMD (   cd / && run-parts --report "
                         f"/etc/cron.hourly)"),
              (t + 0.3, f"CRON[{pid}]: pam_unix(cron:session): session closed for user root")]
        self.pids.counter += 1  # the job's own process took pid + 1
        return ep

    def anvil_stats(self, rng: Random, t: float) -> Episode:
        r = rng.random
        pid = self.pids.new()
        ip = self.world.public_ip(rng)
        when = self.world.stamp(t - 60 - r() * 400)
        return [(t, f"postfix/anvil[{pid}]: statistics: max connection rate "
                    f"{1 + int(r() * 4)}/60s for (smtp:{ip}) at {when}"),
                (t + 0.001, f"postfix/anvil[{pid}]: statistics: max connection count "
                            f"{1 + int(r() * 2)} for (smtp:{ip}) at {when}"),
                (t + 0.002, f"postfix/anvil[{pid}]: statistics: max cache size "
                            f"{1 + int(r() * 6)} at {when}")]

    def scache_stats(self, rng: Random, t: float) -> Episode:
        r = rng.random
        pid = self.pids.new()
        miss = 1 + int(r() * 9)
        hits = int(r() * 5)
        return [(t, f"postfix/scache[{pid}]: statistics: start interval "
                    f"{self.world.stamp(t - 200 - r() * 100)}"),
                (t + 0.001, f"postfix/scache[{pid}]: statistics: domain lookup hits={hits} "
                            f"miss={miss} success={100 * hits // (hits + miss)}%"),
                (t + 0.002, f"postfix/scache[{pid}]: statistics: address lookup hits=0 "
                            f"miss={miss + 1} success=0%"),
                (t + 0.003, f"postfix/scache[{pid}]: statistics: max simultaneous "
                            f"domains=1 addresses=1 connection={1 + int(r() * 3)}")]

    def noise_line(self, rng: Random, t: float) -> str:
        """One quiet line from outside Postfix's mail flow (also used to top up the size)."""
        w = self.world
        r = rng.random
        k = r()
        if k < 0.72:
            u = w.users[int(r() * len(w.users))]
            _, ip, _ = u["ips"][int(r() * len(u["ips"]))]
            lip = D.LAN_IP if ip.startswith("192.168.") else D.PUBLIC_IP
            sess = f"{rng.getrandbits(64):016x}"
            mpid = self.pids.new()
            if r() < 0.55:
                return (f"dovecot: imap-login: Login: user=<{u['login']}>, method=PLAIN, rip={ip}, "
                        f"lip={lip}, mpid={mpid}, TLS, session=<{sess}>")
            return (f"dovecot: imap({u['login']})<{mpid}><{sess}>: Logged out "
                    f"in={int(r() * 2000)} out={int(r() * 90000)} deleted=0 expunged=0 trashed=0 "
                    f"hdr_count=0 hdr_bytes=0 body_count={int(r() * 5)} body_bytes={int(r() * 80000)}")
        if k < 0.88:
            ip = w.public_ip(rng)
            return (f"dovecot: imap-login: Disconnected: Connection closed (no auth attempts in "
                    f"{int(r() * 3)} secs): user=<>, rip={ip}, lip={D.PUBLIC_IP}, TLS handshaking: "
                    f"Connection closed, session=<{rng.getrandbits(64):016x}>")
        if k < 0.93:
            return f"systemd[1]: Started session-{int(r() * 9000)}.scope - Session {int(r() * 9000)} of User root."
        if k < 0.97:
            return (f"CRON[{self.pids.new()}]: (root) CMD (command -v debian-sa1 > /dev/null && "
                    f"debian-sa1 1 1)")
        if k < 0.985:
            return (f"kernel: {w.uptime(t)} audit: type=1400 "
                    f"audit({1781000000 + int(t)}.{int(r() * 999):03d}:{int(r() * 9999)}): "
                    f"apparmor=\"DENIED\" operation=\"open\" profile=\"/usr/sbin/ntpd\" "
                    f"name=\"/etc/ssl/openssl.cnf\" pid={self.pids.new()} comm=\"ntpd\" "
                    f"requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0")
        return (f"postfix/smtpd[{self.pids.new()}]: warning: dict_nis_init: NIS domain name "
                f"not set - NIS lookups disabled")

    # ----------------------------------------------------------------------- firewall

    def fw_line(self, rng: Random, t: float, src: str, dst: str, linux: bool = False) -> str:
        """An iptables LOG line of the FORWARD rule from the ClearOS article."""
        r = rng.random
        mac = "00:15:5d:0a:01:02:3c:52:82:1f:9a:" + ("4e" if linux else "7b") + ":08:00"
        ttl, ln, win = (63, 60, 29200) if linux else (127, 52, 64240)
        stamp = f"{self.world.uptime(t)} " if KERNEL_UPTIME_STAMP else ""
        return (f"kernel: {stamp}IN=eth1 OUT=eth0 MAC={mac} SRC={src} DST={dst} LEN={ln} "
                f"TOS=0x00 PREC=0x00 TTL={ttl} ID={int(r() * 65535)} DF PROTO=TCP "
                f"SPT={49152 + int(r() * 16000)} DPT=25 WINDOW={win} RES=0x00 SYN URGP=0")

    # ----------------------------------------------------------------------- malformed lines

    def malformed(self, kind: str, t: float, lineno: int) -> str:
        """A deliberately damaged line of `kind`, recorded in the ground truth as line `lineno`."""
        w = self.world
        hdr = f"{w.stamp(t)} {w.host} "
        pid = self.pids.new()
        if kind == "truncated-header":
            line = hdr[:11]
        elif kind == "truncated-body":
            # usec FFFFF > 999999: a queue ID no real message in the file can have
            line = (f"{hdr}postfix/smtp[{pid}]: FFFFF0A1B2: to=<pat.jones@gmail.com>, "
                    f"relay=gmail-smtp-in.l.goo")
        elif kind == "nul-bytes":
            # after an unclean shutdown a log file holds a run of NULs before the next line
            line = "\x00" * 64 + hdr + self._daemon_started("3.7.6")
        elif kind == "invalid-utf8":
            # a Latin-1 'ö' from an old client: byte 0xF6, not UTF-8 (surrogateescape)
            ip = "185.23.71.9"
            line = (f"{hdr}postfix/smtpd[{pid}]: NOQUEUE: reject: RCPT from unknown[{ip}]: 550 5.1.1 "
                    f"<j\udcf6rg@{D.DOMAIN}>: Recipient address rejected: User unknown in local "
                    f"recipient table; from=<info@kanzlei-m\udcfcller.example> to=<j\udcf6rg@{D.DOMAIN}> "
                    f"proto=ESMTP helo=<mail.kanzlei.example>")
        elif kind == "repeated":
            line = f"{hdr}last message repeated 3 times"
        elif kind == "binary":
            line = "\udcff\udcfe\x01\x02garbage\x7f\x1b[0m"
        else:  # "text"
            line = "   (continued) this is not a syslog line"
        w.malformed.append({"line": lineno, "what": kind})
        return line
