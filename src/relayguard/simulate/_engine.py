"""The simulation engine: streams of episodes merged into one time-ordered syslog.

An *episode* is everything one actor causes at one moment: an SMTP session with its queued
messages and their deliveries (retries included), a burst of firewall lines, a statistics dump.
It is a list of `(time, text)` whose first item is the earliest. Streams (baseline traffic, each
attack, noise) announce the start of their next episode and build it when the merge gets there;
each is paced by a *line budget* mapped onto its time window, so the file length is controlled
without knowing it in advance (a few quiet lines top it up at the end). The merger emits every
pending line older than the next episode's start, so memory holds only lines still in flight
(at most the ~20 minutes of a retry), never the log.
"""

from __future__ import annotations

import heapq
import zlib
from bisect import bisect_left
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from operator import itemgetter
from random import Random

from . import _data as D

SCENARIOS = ("baseline", "compromised-account", "trusted-relay", "bruteforce", "direct-smtp",
             "blocklisted", "all")
DEFAULT_START = datetime(2026, 6, 21, 0, 0, 0)
LINES_PER_DAY = 300_000  # 1M lines ≈ 3.3 days
MIN_SPAN = 86_400.0  # never less than a day: users' daily habits must be visible
KERNEL_UPTIME_STAMP = True  # `kernel: [12345.678901] IN=...` (Debian/Ubuntu rsyslog)

Episode = list[tuple[float, str]]
_KNOWN = frozenset(D.PROVIDERS) | frozenset(D.PARTNERS)  # domains that do exist


# --------------------------------------------------------------------------- formatting helpers

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


class _Pids:
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


class _Qids:
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


def _ip_dashes(ip: str) -> str:
    return ip.replace(".", "-")


# --------------------------------------------------------------------------- the simulation

class Simulation:
    """One run: plan (budgets, windows, actors) at construction, lines from `lines()`."""

    def __init__(self, scenario: str, lines: int, seed: int = 1, start: datetime | None = None,
                 host: str = "mail") -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}")
        if lines < 1:
            raise ValueError("lines must be at least 1")
        self.scenario = scenario
        self.target = int(lines)
        self.seed = seed
        self.host = host
        self.start = start if start is not None else DEFAULT_START
        every = scenario == "all"
        self.has = {k: every or scenario == k for k in SCENARIOS[1:6]}

        # Internal clock: seconds since the start's minute (the header cache works per minute).
        self.base_minute = self.start.replace(second=0, microsecond=0)
        self.t_begin = self.start.second + self.start.microsecond / 1e6
        self.span = max(MIN_SPAN, self.target / LINES_PER_DAY * 86_400)
        self.t_end = self.t_begin + self.span

        rng = Random(f"relayguard-sim:{seed}:plan")
        self.pids = _Pids(Random(f"relayguard-sim:{seed}:pids"))
        self.qid = _Qids()
        self.uptime0 = 7_200 + rng.random() * 80_000  # kernel uptime at the start
        self.upgrade_at = self.at(0.25)  # Postfix 3.7.6 → 3.7.11: failures gain `sasl_username=`
        self.blocked_since = self.at(0.64 if every else 0.5) if self.has["blocklisted"] else None
        self._dom_cache: dict[str, tuple[str, str, str, str | None]] = {}
        self._minute_cache: dict[int, str] = {}

        self.culprits: list[dict] = []
        self.benign: list[dict] = []
        self.symptoms: list[dict] = []
        self.malformed: list[dict] = []
        self._dry = False  # True while counting lines with throwaway ids (no side effects)
        self._plan_actors(rng)
        self.local_set = frozenset(self.local_names)
        self.opendkim_pid = self.pids.new()
        self._plan_budgets()

    # ----------------------------------------------------------------------- time helpers

    def at(self, frac: float) -> float:
        return self.t_begin + frac * self.span

    def dt(self, t: float) -> datetime:
        return self.base_minute + timedelta(seconds=t)

    def stamp(self, t: float) -> str:
        """`Jun 21 08:34:30` (also used inside anvil/scache lines)."""
        d = self.dt(int(t))
        return f"{D.MONTHS[d.month - 1]} {d.day:2d} {d.hour:02d}:{d.minute:02d}:{d.second:02d}"

    def iso(self, t: float) -> str:
        return self.dt(int(t)).isoformat()

    def hour_of(self, t: float) -> tuple[int, bool]:
        d = self.dt(t)
        return d.hour, d.weekday() < 5

    # ----------------------------------------------------------------------- actors

    def _public_ip(self, rng: Random) -> str:
        r = rng.getrandbits(24)
        return (f"{D.PUBLIC_OCTETS[int(rng.random() * len(D.PUBLIC_OCTETS))]}."
                f"{r >> 16}.{(r >> 8) & 255}.{1 + (r & 255) % 254}")

    def _plan_actors(self, rng: Random) -> None:
        isps = ("dyn.telekom-net.example", "cable.ziggo-net.example", "home.orange-net.example",
                "dsl.vodafone-net.example", "fttx.free-net.example")
        users = []
        lan_octet = 100
        names = (D.ADMIN,) + D.USER_NAMES
        for i, name in enumerate(names):
            addr = f"{name}@{D.DOMAIN}"
            login = addr if name in D.ADDRESS_LOGINS else name
            ips: list[tuple[str, str, str]] = []
            if name == D.ADMIN:
                ips.append(("unknown", "192.168.1.10", "office"))
                rate = 5.0
            else:
                rate = 1.5 + rng.random() * 5
                if i % 3 == 0:
                    lan_octet += 1
                    ips.append(("unknown", f"192.168.1.{lan_octet}", "office"))
                elif i % 3 == 1:
                    ips.append(("unknown", D.OFFICE_NAT, "office"))
                ip = self._public_ip(rng)
                cname = "unknown" if rng.random() < 0.5 else (
                    f"{_ip_dashes(ip)}.{isps[int(rng.random() * len(isps))]}")
                ips.append((cname, ip, "home"))
                if rng.random() < 0.6 or name == D.MOVING_USER:
                    ips.append(("unknown", self._public_ip(rng), "phone"))
            if name == D.MOVING_USER:
                ips = [ips[-2], ips[-1]]  # laptop at home + phone: two IPs, moving between them
                rate = 8.0
            if name == D.BUSY_USER:
                rate = 40.0
            svc = "submission/smtpd"
            r = rng.random()
            if r < 0.2:
                svc = "smtps/smtpd"
            elif r < 0.3:
                svc = "smtpd"  # old client set up with AUTH on port 25
            webmail = rng.random() < 0.3 and name != D.ADMIN  # admin: one IP, always
            mech = "PLAIN" if rng.random() < 0.4 else "LOGIN"
            users.append({"name": name, "login": login, "addr": addr, "ips": ips, "rate": rate,
                          "svc": svc, "webmail": webmail, "mech": mech})
        self.users = users
        self.user_by_name = {u["name"]: u for u in users}
        self.local_names = [u["name"] for u in users] + ["postmaster", "abuse", "info"]
        total = sum(u["rate"] for u in users)
        acc = 0.0
        self.user_cum = []
        for u in users:
            acc += u["rate"] / total
            self.user_cum.append(acc)
        self.user_rate_total = total

        # Attackers.
        self.guesser_ip = self._public_ip(rng)
        self.botnet = [self._public_ip(rng) for _ in range(40)]
        self.brute_ips = [self._public_ip(rng) for _ in range(3)]
        # the spray scales with the size: 32 IPs at least, a few tries each
        self.spray_ips = [self._public_ip(rng)
                          for _ in range(max(32, min(300, int(0.05 * self.target) // 48)))]

        L = self.culprits
        if self.has["compromised-account"]:
            L.append({"kind": "compromised_account", "subject": D.ADMIN,
                      "guessed_from": self.guesser_ip})
            L.append({"kind": "auth_bruteforce", "subject": self.guesser_ip,
                      "note": "the guesser that then logged in as admin"})
        if self.has["trusted-relay"]:
            L.append({"kind": "trusted_host_relay", "subject": D.RELAY_HOST[1]})
        if self.has["bruteforce"]:
            nbrute = 2 + (self.target >= 5000)
            self.brute_ips = self.brute_ips[:nbrute]
            for ip in self.brute_ips:
                L.append({"kind": "auth_bruteforce", "subject": ip})
            login = self.user_by_name[D.DISTRIBUTED_TARGET]["login"]
            L.append({"kind": "auth_bruteforce", "subject": login, "distributed": True,
                      "note": "one login guessed from 30+ IPs, a few tries each",
                      "sources": len(self.spray_ips)})
        if self.has["direct-smtp"]:
            L.append({"kind": "direct_smtp", "subject": D.DIRECT_SMTP_PC})
        if self.has["blocklisted"]:
            L.append({"kind": "blocklisted", "subject": D.BL_ZEN})
            L.append({"kind": "blocklisted", "subject": D.BL_SPAMCOP})
        if self.has["compromised-account"] or self.has["trusted-relay"]:
            self.symptoms.append({"kind": "queue_surge", "subject": "deferred",
                                  "note": "spam deferrals stay queued"})

        B = self.benign
        B.append({"kind": "trusted_host_relay", "subject": D.NEWSLETTER_HOST[1],
                  "what": "newsletter host (one sender, proper Message-IDs, steady rate)"})
        B.append({"kind": "trusted_host_relay", "subject": D.MONITOR_HOST[1],
                  "what": "monitoring box (nagios@, a few messages an hour to one address)"})
        B.append({"kind": "compromised_account", "subject": self.user_by_name[D.BUSY_USER]["login"],
                  "what": "busy sales user (~40 messages a day)"})
        B.append({"kind": "compromised_account", "subject": self.user_by_name[D.MOVING_USER]["login"],
                  "what": "user on phone and laptop (2 IPs, moving between them)"})
        B.append({"kind": "compromised_account",
                  "subject": self.user_by_name[D.BIG_INVITE_USER]["login"],
                  "what": "one message to 40 recipients (an invitation)"})
        grace = self.user_by_name[D.MISTYPING_USER]
        B.append({"kind": "auth_bruteforce", "subject": grace["ips"][-1][1],
                  "what": f"{grace['login']} mistypes the password, then succeeds"})
        for ip in D.NORMAL_LAN_SMTP_PCS:
            B.append({"kind": "direct_smtp", "subject": ip,
                      "what": "LAN PC with a few port-25 connections (normal)"})
        B.append({"kind": "trusted_host_relay", "subject": "127.0.0.1",
                  "what": "webmail on localhost (authenticated, many users)"})
        if not self.has["blocklisted"]:
            B.append({"kind": "blocklisted", "subject": "NOQUEUE RBL rejects",
                      "what": "our own smtpd rejecting clients listed on zen.spamhaus.org"})

    # ----------------------------------------------------------------------- budgets

    def _plan_budgets(self) -> None:
        n = self.target
        a: dict[str, int] = {}
        # Shares of the volume, with floors so that every attack stays visible in small files.
        if self.has["compromised-account"]:
            a["compromised"] = max(520, int(0.07 * n))
        if self.has["trusted-relay"]:
            a["relay"] = max(200, int(0.06 * n))
        if self.has["bruteforce"]:
            a["bruteforce"] = max(450, int(0.05 * n))
        if self.has["direct-smtp"]:
            a["direct"] = max(120, int(0.04 * n))
        if self.has["blocklisted"]:
            a["blocklisted"] = max(100, int(0.02 * n))
        self.attack_budget = a
        # Episodes that must exist whatever the size (look-alikes, garbage, the upgrade).
        self.fixed = self._fixed_items()
        fixed_lines = self._count_fixed()
        fixed_lines += self._dry_count(self.s_clock)
        base = max(300, n - sum(a.values()) - fixed_lines)
        days = self.span / 86_400
        nominal_users = int(self.user_rate_total * days * 11)
        monitor_nominal = int(3 * 24 * days * 8)
        b = {"users": min(nominal_users, int(0.22 * base)),
             "newsletter": max(40, int(0.04 * base)),
             "monitor": max(16, min(monitor_nominal, int(0.04 * base))),
             "noise": int(0.22 * base)}
        b["inbound"] = base - sum(b.values())
        self.base_budget = b

    # ----------------------------------------------------------------------- remote side

    def dom_info(self, dom: str) -> tuple[str, str, str, str | None]:
        """(MX host, MX IP, reply style, blocklist used) for a destination domain."""
        info = D.PROVIDERS.get(dom)
        if info is not None:
            mx, pfx, style, bl = info
            return mx, pfx + str(26 + zlib.crc32(dom.encode()) % 8), style, bl
        info = self._dom_cache.get(dom)
        if info is None:
            h = zlib.crc32(dom.encode())
            mx = ("mx1." if h & 1 else "mail.") + dom
            ip = f"{D.PUBLIC_OCTETS[h % len(D.PUBLIC_OCTETS)]}.{(h >> 8) & 255}.{(h >> 16) & 255}.{1 + (h >> 24) % 250}"
            k = (h >> 4) % 10
            bl = D.BL_ZEN if k < 4 else D.BL_SPAMCOP if k < 6 else None
            info = (mx, ip, "postfix", bl)
            if len(self._dom_cache) > 20_000:  # flat memory on huge runs
                self._dom_cache.clear()
            self._dom_cache[dom] = info
        return info

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

    def queue(self, ep: Episode, rng: Random, t: float, qid: str, sender: str, rcpts: list[str],
              size: int, msgid: str | None, profile: str, dkim: bool = False) -> None:
        """Cleanup, qmgr, deliveries, retries, bounce notice and removal of one message.

        `t` is when the message was accepted (its client= or pickup line).
        """
        r = rng.random
        cleanup = self.pids.worker("cleanup", 3)
        qmgr = self.pids.qmgr
        t1 = t + 0.05 + r() * 0.6
        mid = "" if msgid is None else msgid
        ep.append((t1, f"postfix/cleanup[{cleanup}]: {qid}: message-id=<{mid}>"))
        if dkim:
            ep.append((t1 + 0.002, f"opendkim[{self.opendkim_pid}]: {qid}: DKIM-Signature field "
                                   f"added (s=mail, d={D.DOMAIN})"))
        t2 = t1 + 0.01 + r() * 0.05
        nr = len(rcpts)
        qline = f"postfix/qmgr[{qmgr}]: {qid}: from=<{sender}>, size={size}, nrcpt={nr} (queue active)"
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
            ep.append((t_last + 0.01, f"postfix/qmgr[{qmgr}]: {qid}: removed"))

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
        d = self.dt(t)
        mid = f"{d:%Y%m%d%H%M%S}.{qid}@{D.MYHOSTNAME}"
        ep.append((t + 0.001, f"postfix/cleanup[{self.pids.worker('cleanup', 3)}]: {qid}: message-id=<{mid}>"))
        ep.append((t + 0.002, f"postfix/qmgr[{self.pids.qmgr}]: {qid}: from=<>, "
                              f"size={2400 + int(rng.random() * 4000)}, nrcpt=1 (queue active)"))
        dv, _, t_last = self._deliver(ep, rng, t, t + 0.003, qid, [to], "ndr", False)
        if not dv:
            ep.append((t_last + 0.001, f"postfix/qmgr[{self.pids.qmgr}]: {qid}: removed"))
        # a bounce of a bounce is discarded (notify_classes lacks 2bounce): nothing more

    # ----------------------------------------------------------------------- sessions

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
        pid = self.pids.session(svc, t, t_end)
        tag = f"postfix/{svc}[{pid}]: "
        who = f"{cname}[{ip}]"
        ep: Episode = [(t, f"{tag}connect from {who}")]
        if tls:
            ep.append((t + 0.04, f"{tag}Anonymous TLS connection established from {who}: {D.TLS_SERVER}"))
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
        ep.append((t_end, f"{tag}disconnect from {who} {' '.join(parts)} commands={total}"))
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
        pid = self.pids.session(svc, t, t_end)
        tag = f"postfix/{svc}[{pid}]: "
        who = f"{cname}[{ip}]"
        ep: Episode = [(t, f"{tag}connect from {who}")]
        if tls:
            ep.append((t + 0.1, f"{tag}Anonymous TLS connection established from {who}: {D.TLS_SERVER}"))
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
            ep.append((t_end - 0.01, f"{tag}lost connection after AUTH from {who}"))
            ep.append((t_end, f"{tag}disconnect from {who} {lead} auth=0/{n} commands={nlead}/{nlead + n}"))
        else:
            ep.append((t_end, f"{tag}disconnect from {who} {lead} auth=0/{n} quit=1 "
                              f"commands={nlead + 1}/{nlead + n + 1}"))
        return ep

    # ----------------------------------------------------------------------- addresses

    def ext_person(self, rng: Random, dom: str) -> str:
        r = rng.random
        f = D.FIRST[int(r() * len(D.FIRST))]
        la = D.LAST[int(r() * len(D.LAST))]
        k = r()
        if k < 0.5:
            return f"{f}.{la}@{dom}"
        if k < 0.8:
            return f"{f[0]}{la}@{dom}"
        return f"{f}{int(r() * 99)}@{dom}"

    def rand_domain(self, rng: Random) -> str:
        r = rng.random
        w = D.WORDS
        return f"{w[int(r() * len(w))]}{w[int(r() * len(w))]}.{D.TLDS[int(r() * len(D.TLDS))]}"

    def user_msgid(self, rng: Random, style: int, t: float) -> str:
        x = rng.getrandbits(128)
        h = f"{x:032x}"
        if style == 0:  # Thunderbird
            return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}@{D.DOMAIN}"
        if style == 1:  # Apple Mail
            h = h.upper()
            return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}@{D.DOMAIN}"
        if style == 2:  # Roundcube
            return f"{h}@{D.DOMAIN}"
        return f"{self.dt(t):%Y%m%d%H%M%S}.{h[:10].upper()}@{D.MYHOSTNAME}"

    # ----------------------------------------------------------------------- pacing

    def pace(self, rng: Random, budget: int, t_a: float, t_b: float, mean: float,
             diurnal: float = 0.0) -> _Pacer:
        return _Pacer(self, rng, budget, t_a, t_b, mean, diurnal)

    def diurnal_cum(self, t_a: float, t_b: float, depth: float) -> tuple[list[float], float]:
        """Cumulative activity over 15-minute buckets: quiet nights, busy working hours.

        `depth` 1 is people (nights at 15 %), 0.5 is mail from the world (nights at ~60 %)."""
        step = 900.0
        n = max(1, int((t_b - t_a) / step) + 1)
        cum = []
        acc = 0.0
        for i in range(n):
            h, weekday = self.hour_of(t_a + i * step)
            w = 0.15 if h < 7 or h >= 22 else 1.0 if 8 <= h < 18 else 0.5
            if not weekday:
                w *= 0.45
            acc += 1.0 - depth * (1.0 - w)
            cum.append(acc)
        return [c / acc for c in cum], step

    # ----------------------------------------------------------------------- output

    def lines(self) -> Iterator[str]:
        """The log, line by line (no newline). Lines may hold lone surrogates (invalid UTF-8).

        Stream protocol: a stream yields the start time of its next episode, and when resumed
        (the merge has reached that time) yields the episode, or None if it dropped it. Building
        only then gives each episode the process ids and queue IDs of its own moment.
        """
        streams: list[Iterator] = [self._fixed_stream(), self.s_users(), self.s_newsletter(),
                                   self.s_monitor(), self.s_inbound(), self.s_noise(),
                                   self.s_clock()]
        if self.has["compromised-account"]:
            streams.append(self.s_compromised())
        if self.has["trusted-relay"]:
            streams.append(self.s_relay())
        if self.has["bruteforce"]:
            streams += self.s_bruteforce()
        if self.has["direct-smtp"]:
            streams.append(self.s_direct())
        if self.has["blocklisted"]:
            streams.append(self.s_blocklisted())
        agenda: list[tuple[float, int, Iterator]] = []
        for i, g in enumerate(streams):
            t0 = next(g, None)
            if t0 is not None:
                agenda.append((t0, i, g))
        heapq.heapify(agenda)

        heap: list[tuple[float, int, str]] = []
        push = heapq.heappush
        pop = heapq.heappop
        replace = heapq.heapreplace
        seq = 0
        emitted = 0
        last_sec = -1
        last_min = -1
        prefix = hdr = ""
        secs = [f"{s:02d} {self.host} " for s in range(60)]
        minute_prefix = self._minute_prefix
        last_t = self.t_begin
        first_t: float | None = None
        while agenda:
            start, i, g = agenda[0]
            while heap and heap[0][0] <= start:
                t, _, body = pop(heap)
                sec = int(t)
                if sec != last_sec:
                    last_sec = sec
                    m = sec // 60
                    if m != last_min:
                        last_min = m
                        prefix = minute_prefix(m)
                    hdr = prefix + secs[sec - m * 60]
                emitted += 1
                yield hdr + body
            ep = next(g, None)
            nxt = next(g, None)
            if nxt is None:
                pop(agenda)
            else:
                replace(agenda, (nxt, i, g))
            if ep is None:
                continue
            if first_t is None:
                first_t = start
            last_t = start
            if type(ep) is str:
                # a deliberately malformed line: the header is built here, then damaged
                emitted += 1
                yield self._malformed(ep, start, emitted)
                continue
            t, body = ep[0]
            sec = int(t)
            if sec != last_sec:
                last_sec = sec
                m = sec // 60
                if m != last_min:
                    last_min = m
                    prefix = minute_prefix(m)
                hdr = prefix + secs[sec - m * 60]
            emitted += 1
            yield hdr + body
            for k in range(1, len(ep)):
                t, body = ep[k]
                seq += 1
                push(heap, (t, seq, body))
        # Top up to the requested size with quiet single lines before the end: streams stop a
        # few lines short of their budgets rather than overshoot.
        short = self.target - emitted - len(heap)
        if short > 0:
            rng = Random(f"relayguard-sim:{self.seed}:pad")
            t_a = max(last_t, self.t_end - 3600)
            t_b = max(t_a + 1, self.t_end)
            for k in range(short):
                t = t_a + (t_b - t_a) * (k + rng.random()) / short
                seq += 1
                push(heap, (t, seq, self.noise_line(rng, t)))
        while heap:
            t, _, body = pop(heap)
            sec = int(t)
            if sec != last_sec:
                last_sec = sec
                m = sec // 60
                if m != last_min:
                    last_min = m
                    prefix = minute_prefix(m)
                hdr = prefix + secs[sec - m * 60]
            emitted += 1
            last_t = t
            yield hdr + body
        self.emitted = emitted
        self.first_t = first_t if first_t is not None else self.t_begin
        self.last_t = last_t

    def _minute_prefix(self, m: int) -> str:
        p = self._minute_cache.get(m)
        if p is None:
            d = self.base_minute + timedelta(minutes=m)
            p = f"{D.MONTHS[d.month - 1]} {d.day:2d} {d.hour:02d}:{d.minute:02d}:"
            if len(self._minute_cache) > 4096:
                self._minute_cache.clear()
            self._minute_cache[m] = p
        return p

    def labels(self) -> dict:
        return {
            "scenario": self.scenario, "seed": self.seed, "lines": self.emitted,
            "start": self.iso(self.first_t), "end": self.iso(self.last_t),
            "host": self.host, "domain": D.DOMAIN, "public_ip": D.PUBLIC_IP,
            "trusted": list(D.TRUSTED),
            "culprits": self.culprits, "benign": self.benign, "symptoms": self.symptoms,
            "postfix_upgrade": {"at": self.iso(self.upgrade_at), "from": "3.7.6", "to": "3.7.11",
                                "note": "auth failures log sasl_username= from here on"},
            "malformed": self.malformed,
        }

    # ----------------------------------------------------------------------- malformed lines

    def _malformed(self, kind: str, t: float, lineno: int) -> str:
        hdr = f"{self.stamp(t)} {self.host} "
        pid = self.pids.new()
        if kind == "truncated-header":
            line = hdr[:11]
        elif kind == "truncated-body":
            # usec FFFFF > 999999: a queue ID no real message in the file can have
            line = (f"{hdr}postfix/smtp[{pid}]: FFFFF0A1B2: to=<pat.jones@gmail.com>, "
                    f"relay=gmail-smtp-in.l.goo")
        elif kind == "nul-bytes":
            # after an unclean shutdown a log file holds a run of NULs before the next line
            line = "\x00" * 64 + f"{hdr}postfix/master[{self.pids.master}]: daemon started -- version 3.7.6, configuration /etc/postfix"
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
        self.malformed.append({"line": lineno, "what": kind})
        return line

    # ----------------------------------------------------------------------- streams

    @staticmethod
    def _paced(pacer: _Pacer, build: Callable[[float], Episode],
               kept: Callable[[Episode], None] | None = None) -> Iterator:
        """The stream protocol around a pacer and an episode builder."""
        while True:
            t = pacer.time()
            yield t
            ep = build(t)
            if pacer.take(len(ep)):
                if kept is not None:
                    kept(ep)
                yield ep
            else:
                yield None
                if pacer.done():
                    return

    def _fixed_items(self) -> list[tuple[float, str, float]]:
        """(time, kind, arg) of the episodes every run has, whatever its size.

        Each item has its own generator, so a dry build at planning time (`_count_fixed`)
        gives exactly the line count of the real one.
        """
        rng = Random(f"relayguard-sim:{self.seed}:fixed")
        r = rng.random
        items = [(self.at(0.30) + r() * 600, "mistype", 2.0),
                 (self.at(0.72) + r() * 600, "mistype", 1.0),
                 (self.at(0.12) + r() * 600, "outage", 0.0),
                 (self.at(0.55) + r() * 600, "outage", 0.0),
                 (self.upgrade_at, "upgrade", 0.0),
                 (self.at(0.15) + r() * 900, "lan-smtp", 0.0),
                 (self.at(0.60) + r() * 900, "lan-smtp", 1.0),
                 (self.at(0.50) + r() * 600, "invite", 0.0)]
        for frac, kind in ((0.07, "truncated-header"), (0.21, "nul-bytes"),
                           (0.37, "invalid-utf8"), (0.48, "truncated-body"),
                           (0.66, "repeated"), (0.81, "binary"), (0.93, "text")):
            items.append((self.at(frac) + r() * 60, kind, 0.0))
        items.sort(key=itemgetter(0))
        return items

    def _build_fixed(self, i: int, t: float, kind: str, arg: float) -> Episode | str:
        rng = Random(f"relayguard-sim:{self.seed}:fixed:{i}")
        r = rng.random
        out: Episode = []
        if kind == "mistype":
            # wrong once (or twice), right the next time: a human, not a guesser
            grace = self.user_by_name[D.MISTYPING_USER]
            cname, ip, _ = grace["ips"][-1]
            for _ in range(int(arg)):
                ep = self.auth_fail_session(rng, t, grace["svc"], cname, ip, [grace["login"]],
                                            grace["mech"], tls=True)
                out += ep
                t = ep[-1][0] + 15 + r() * 40
            rc = [self.ext_person(rng, "gmail.com")]
            out += self.session(rng, t, grace["svc"], cname, ip,
                                [(grace["addr"], rc, self.user_msgid(rng, 0, t), "user")],
                                auth=(grace["mech"], grace["login"]), dkim=True)
        elif kind == "outage":
            # dovecot auth restarting: several users "fail" at once, a server fault
            out.append((t, "dovecot: master: Error: service(auth): command startup failed, "
                           "throttling for 2 secs"))
            lost = "Connection lost to authentication server"
            for j in range(3 + int(r() * 3)):
                u = self.users[1 + int(r() * (len(self.users) - 1))]
                cname, ip, _ = u["ips"][-1]
                tt = t + 0.5 + j * (2 + r() * 8)
                ep = self.auth_fail_session(rng, tt, u["svc"], cname, ip, [u["login"]], u["mech"],
                                            reason=lost)
                out += ep
                if not self._dry and not any(b["subject"] == ip for b in self.benign):
                    self.benign.append({"kind": "auth_bruteforce", "subject": ip,
                                        "what": f"{u['login']}'s login failed in a SASL back-end "
                                                "outage (server fault, not a guess)"})
        elif kind == "upgrade":
            # Debian stable point release: postinst restarts Postfix, every daemon's pid changes
            p1 = self.pids.new()
            out.append((t, f"postfix/postfix-script[{p1}]: stopping the Postfix mail system"))
            out.append((t + 0.01, f"postfix/master[{self.pids.master}]: terminating on signal 15"))
            self.pids.restart()
            p2 = self.pids.new()
            out.append((t + 2.1, f"postfix/postfix-script[{p2}]: starting the Postfix mail system"))
            out.append((t + 2.2, f"postfix/master[{self.pids.master}]: daemon started -- version "
                                 f"3.7.11, configuration /etc/postfix"))
        elif kind == "lan-smtp":
            # a LAN PC whose mail client talks to its ISP's port 25: a handful, normal
            src = D.NORMAL_LAN_SMTP_PCS[int(arg)]
            dst = self._public_ip(rng)
            tt = t
            for _ in range(4 - int(arg)):
                out.append((tt, self.fw_line(rng, tt, src, dst, linux=True)))
                tt += 20 + r() * 300
        elif kind == "invite":
            laura = self.user_by_name[D.BIG_INVITE_USER]
            rc = [self.ext_person(rng, D.USER_DESTINATIONS[int(r() * len(D.USER_DESTINATIONS))])
                  for _ in range(40)]
            cname, ip, _ = laura["ips"][-1]
            out += self.session(rng, t, laura["svc"], cname, ip,
                                [(laura["addr"], rc, self.user_msgid(rng, 1, t), "user")],
                                auth=(laura["mech"], laura["login"]), dkim=True)
        else:
            return kind  # a malformed line, made at emission (it needs the line number)
        return out

    def _count_fixed(self) -> int:
        """Line count of the fixed items, from a dry build with throwaway pids and queue IDs."""
        saved = self.pids, self.qid
        self.pids, self.qid = _Pids(Random(0)), _Qids()
        self._dry = True
        try:
            n = 0
            for i, (t, kind, arg) in enumerate(self.fixed):
                ep = self._build_fixed(i, t, kind, arg)
                n += 1 if isinstance(ep, str) else len(ep)
            return n
        finally:
            self.pids, self.qid = saved
            self._dry = False

    def _dry_count(self, stream: Callable[[], Iterator]) -> int:
        """Lines a budget-free stream will produce (a dry run with throwaway ids)."""
        saved = self.pids, self.qid
        self.pids, self.qid = _Pids(Random(0)), _Qids()
        self._dry = True
        try:
            return sum(len(x) for x in stream() if isinstance(x, list))
        finally:
            self.pids, self.qid = saved
            self._dry = False

    def _fixed_stream(self) -> Iterator:
        for i, (t, kind, arg) in enumerate(self.fixed):
            yield t
            yield self._build_fixed(i, t, kind, arg)

    def _pick_user_ip(self, rng: Random, u: dict, t: float) -> tuple[str, str]:
        ips = u["ips"]
        if len(ips) == 1:
            return ips[0][0], ips[0][1]
        if u["name"] == D.MOVING_USER:
            c = ips[int(t // 5400) % 2]  # laptop and phone, alternating every 90 minutes
            return c[0], c[1]
        h, weekday = self.hour_of(t)
        office = [x for x in ips if x[2] == "office"]
        if office and weekday and 8 <= h < 18 and rng.random() < 0.85:
            return office[0][0], office[0][1]
        away = [x for x in ips if x[2] != "office"] or ips
        c = away[int(rng.random() * len(away))]
        return c[0], c[1]

    def s_users(self) -> Iterator:
        rng = Random(f"relayguard-sim:{self.seed}:users")
        r = rng.random
        pacer = self.pace(rng, self.base_budget["users"], self.t_begin, self.t_end, 12, diurnal=1.0)
        cum = self.user_cum
        users = self.users

        def build(t: float) -> Episode:
            u = users[min(bisect_left(cum, r()), len(users) - 1)]
            cname, ip = self._pick_user_ip(rng, u, t)
            svc = u["svc"]
            mech = u["mech"]
            style = int(r() * 3)
            if u["webmail"] and r() < 0.3:
                svc, cname, ip, mech, style = "submission/smtpd", "localhost", "127.0.0.1", "PLAIN", 2
            k = r()
            nr = 1 if k < 0.7 else 2 + int(r() * 2) if k < 0.95 else 4 + int(r() * 5)
            rcpts = []
            for _ in range(nr):
                if r() < 0.25:
                    rcpts.append(f"{users[int(r() * len(users))]['name']}@{D.DOMAIN}")
                else:
                    dom = D.USER_DESTINATIONS[int(r() * len(D.USER_DESTINATIONS))]
                    rcpts.append(self.ext_person(rng, dom))
            msgs = [(u["addr"], rcpts, self.user_msgid(rng, style, t), "user")]
            if r() < 0.1:  # a second message in the same connection (a reply, a forward)
                msgs.append((u["addr"], rcpts[:1], self.user_msgid(rng, style, t), "user"))
            return self.session(rng, t, svc, cname, ip, msgs, auth=(mech, u["login"]),
                                tls=ip != "127.0.0.1", dkim=True)

        return self._paced(pacer, build)

    def s_newsletter(self) -> Iterator:
        rng = Random(f"relayguard-sim:{self.seed}:newsletter")
        r = rng.random
        cname, ip = D.NEWSLETTER_HOST
        pacer = self.pace(rng, self.base_budget["newsletter"], self.t_begin, self.t_end, 30)
        issue = f"{self.dt(self.t_begin):%Y%m%d}"

        def build(t: float) -> Episode:
            msgs = []
            for _ in range(1 + int(r() * 4)):  # a few subscribers per connection
                dom = (D.USER_DESTINATIONS[int(r() * len(D.USER_DESTINATIONS))] if r() < 0.6
                       else self.rand_domain(rng))
                rc = self.ext_person(rng, dom)
                mid = f"news.{issue}.{rng.getrandbits(40):010x}@{D.DOMAIN}"
                msgs.append((f"news@{D.DOMAIN}", [rc], mid, "news"))
            return self.session(rng, t, "smtpd", cname, ip, msgs, tls=False, dkim=True)

        return self._paced(pacer, build)

    def s_monitor(self) -> Iterator:
        rng = Random(f"relayguard-sim:{self.seed}:monitor")
        cname, ip = D.MONITOR_HOST
        pacer = self.pace(rng, self.base_budget["monitor"], self.t_begin, self.t_end, 8)

        def build(t: float) -> Episode:
            mid = f"{self.dt(t):%Y%m%d%H%M%S}.{rng.getrandbits(36):09X}@nagios.example.lan"
            return self.session(rng, t, "smtpd", cname, ip,
                                [(f"nagios@{D.DOMAIN}", [f"{D.ADMIN}@{D.DOMAIN}"], mid, "user")],
                                tls=False)

        return self._paced(pacer, build)

    def _inbound_client(self, rng: Random) -> tuple[str, str, str]:
        """(client name, IP, envelope sender) of a remote MTA delivering to us."""
        r = rng.random
        name_t, ip_t, kind = D.INBOUND_MTAS[int(r() * len(D.INBOUND_MTAS))]
        a = 2 + int(r() * 250)
        b = 10 + int(r() * 200)
        if kind == "partner":
            p = D.PARTNERS[int(r() * len(D.PARTNERS))]
            return f"smtp-out.{p}", self.dom_info(p)[1], self.ext_person(rng, p)
        x = f"db{3 + int(r() * 6)}eur0{1 + int(r() * 5)}on{2000 + int(r() * 999)}"
        if kind == "mailchimp":
            sender = (f"bounce-mc.us{1 + int(r() * 20)}_{rng.getrandbits(30)}."
                      f"{rng.getrandbits(20)}-{rng.getrandbits(40):x}@mail{b}.mcsv.net")
        elif kind == "amazonses":
            sender = f"0102019{rng.getrandbits(60):015x}-000000@amazonses.com"
        else:
            sender = self.ext_person(rng, kind)
        return name_t.format(a=a, b=b, x=x), ip_t.format(a=a, b=b), sender

    def s_inbound(self) -> Iterator:
        """Mail from the internet: deliveries, rejects, scanners, stray AUTH guesses."""
        rng = Random(f"relayguard-sim:{self.seed}:inbound")
        r = rng.random
        pacer = self.pace(rng, self.base_budget["inbound"], self.t_begin, self.t_end, 6, diurnal=0.5)
        locals_ = self.local_names

        def build(t: float) -> Episode:
            k = r()
            if k < 0.52:
                cname, ip, sender = self._inbound_client(rng)
                dom = sender.rpartition("@")[2]
                nr = 1 if r() < 0.85 else 2
                rcpts = [f"{locals_[int(r() * len(locals_))]}@{D.DOMAIN}" for _ in range(nr)]
                if dom == "gmail.com":
                    mid = f"CA+{rng.getrandbits(180):045x}@mail.gmail.com"
                elif dom == "outlook.com":
                    mid = f"AM0PR04MB{rng.getrandbits(40):010X}@AM0PR04MB1234.eurprd04.prod.outlook.com"
                else:
                    mid = f"{rng.getrandbits(64):016x}.{rng.getrandbits(20)}@{dom}"
                return self.session(rng, t, "smtpd", cname, ip, [(sender, rcpts, mid, "user")],
                                    tls=r() < 0.8)
            if k < 0.80:
                return self._reject_session(rng, t)
            if k < 0.94:
                return self._scanner_session(rng, t)
            # an internet-wide scanner's one or two guesses: below any sane threshold
            ip = self._public_ip(rng)
            guesses = [D.GUESS_NAMES[int(r() * len(D.GUESS_NAMES))] for _ in range(1 + (r() < 0.3))]
            return self.auth_fail_session(rng, t, "smtpd" if r() < 0.6 else "submission/smtpd",
                                          "unknown", ip, guesses)

        return self._paced(pacer, build)

    def _reject_session(self, rng: Random, t: float) -> Episode:
        r = rng.random
        ip = self._public_ip(rng)
        pre = None
        if r() < 0.25:
            fake = f"{_ip_dashes(ip)}.static.{self.rand_domain(rng)}"
            pre = f"warning: hostname {fake} does not resolve to address {ip}: Name or service not known"
        k = r()
        helo = f"[{ip}]" if k < 0.3 else self.rand_domain(rng) if k < 0.7 else "User"
        sender = self.ext_person(rng, self.rand_domain(rng))
        k = r()
        if k < 0.4:
            rc = self.ext_person(rng, self.rand_domain(rng))
            text = f"554 5.7.1 <{rc}>: Relay access denied"
        elif k < 0.75:
            rc = f"{D.FIRST[int(r() * len(D.FIRST))]}@{D.DOMAIN}"
            text = f"550 5.1.1 <{rc}>: Recipient address rejected: User unknown in local recipient table"
        else:
            # our own RBL check rejecting a listed client (not us being listed)
            rc = f"{self.local_names[int(r() * len(self.local_names))]}@{D.DOMAIN}"
            text = (f"554 5.7.1 Service unavailable; Client host [{ip}] blocked using {D.BL_ZEN}; "
                    f"https://www.spamhaus.org/query/ip/{ip}")
        t_end = t + 1 + r() * 4
        pid = self.pids.session("smtpd", t, t_end)
        tag = f"postfix/smtpd[{pid}]: "
        who = f"unknown[{ip}]"
        ep: Episode = [(t, f"{tag}{pre}")] if pre else []
        ep.append((t + 0.001, f"{tag}connect from {who}"))
        ep.append((t + 0.5, f"{tag}NOQUEUE: reject: RCPT from {who}: {text}; from=<{sender}> "
                            f"to=<{rc}> proto=ESMTP helo=<{helo}>"))
        if r() < 0.5:
            ep.append((t_end - 0.01, f"{tag}lost connection after RCPT from {who}"))
            ep.append((t_end, f"{tag}disconnect from {who} ehlo=1 mail=1 rcpt=0/1 commands=2/3"))
        else:
            ep.append((t_end, f"{tag}disconnect from {who} ehlo=1 mail=1 rcpt=0/1 rset=1 quit=1 "
                              f"commands=4/5"))
        return ep

    def _scanner_session(self, rng: Random, t: float) -> Episode:
        r = rng.random
        ip = self._public_ip(rng)
        who = f"unknown[{ip}]"
        t_end = t + 0.2 + r() * 3
        svc = "smtpd" if r() < 0.8 else "smtps/smtpd"
        pid = self.pids.session(svc, t, t_end)
        tag = f"postfix/{svc}[{pid}]: "
        ep: Episode = [(t, f"{tag}connect from {who}")]
        k = r()
        if svc == "smtps/smtpd":
            ep.append((t + 0.1, f"{tag}SSL_accept error from {who}: lost connection"))
            ep.append((t + 0.11, f"{tag}lost connection after CONNECT from {who}"))
            ep.append((t_end, f"{tag}disconnect from {who} commands=0/0"))
        elif k < 0.5:
            ep.append((t_end - 0.01, f"{tag}lost connection after EHLO from {who}"))
            ep.append((t_end, f"{tag}disconnect from {who} ehlo=1 commands=1"))
        elif k < 0.8:
            ep.append((t_end, f"{tag}disconnect from {who} ehlo=1 quit=1 commands=2"))
        else:
            ep.append((t + 0.05, f"{tag}improper command pipelining after CONNECT from {who}: "
                                 f"GET / HTTP/1.1\\r\\nHost: {D.PUBLIC_IP}\\r\\n"))
            ep.append((t_end, f"{tag}disconnect from {who} unknown=0/1 commands=0/1"))
        return ep

    def noise_line(self, rng: Random, t: float) -> str:
        """One quiet line from outside Postfix's mail flow (also used to top up the size)."""
        r = rng.random
        k = r()
        if k < 0.72:
            u = self.users[int(r() * len(self.users))]
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
            ip = self._public_ip(rng)
            return (f"dovecot: imap-login: Disconnected: Connection closed (no auth attempts in "
                    f"{int(r() * 3)} secs): user=<>, rip={ip}, lip={D.PUBLIC_IP}, TLS handshaking: "
                    f"Connection closed, session=<{rng.getrandbits(64):016x}>")
        if k < 0.93:
            return f"systemd[1]: Started session-{int(r() * 9000)}.scope - Session {int(r() * 9000)} of User root."
        if k < 0.97:
            return (f"CRON[{self.pids.new()}]: (root) CMD (command -v debian-sa1 > /dev/null && "
                    f"debian-sa1 1 1)")
        if k < 0.985:
            return (f"kernel: [{self.uptime0 + t - self.t_begin:12.6f}] audit: type=1400 "
                    f"audit({1781000000 + int(t)}.{int(r() * 999):03d}:{int(r() * 9999)}): "
                    f"apparmor=\"DENIED\" operation=\"open\" profile=\"/usr/sbin/ntpd\" "
                    f"name=\"/etc/ssl/openssl.cnf\" pid={self.pids.new()} comm=\"ntpd\" "
                    f"requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0")
        return (f"postfix/smtpd[{self.pids.new()}]: warning: dict_nis_init: NIS domain name "
                f"not set - NIS lookups disabled")

    def s_noise(self) -> Iterator:
        """Statistics dumps, dovecot, cron, kernel: volume that carries no mail."""
        rng = Random(f"relayguard-sim:{self.seed}:noise")
        r = rng.random
        pacer = self.pace(rng, self.base_budget["noise"], self.t_begin, self.t_end, 1.3, diurnal=0.4)

        def build(t: float) -> Episode:
            k = r()
            if k < 0.003:
                pid = self.pids.new()
                ip = self._public_ip(rng)
                when = self.stamp(t - 60 - r() * 400)
                return [(t, f"postfix/anvil[{pid}]: statistics: max connection rate "
                            f"{1 + int(r() * 4)}/60s for (smtp:{ip}) at {when}"),
                        (t + 0.001, f"postfix/anvil[{pid}]: statistics: max connection count "
                                    f"{1 + int(r() * 2)} for (smtp:{ip}) at {when}"),
                        (t + 0.002, f"postfix/anvil[{pid}]: statistics: max cache size "
                                    f"{1 + int(r() * 6)} at {when}")]
            if k < 0.006:
                pid = self.pids.new()
                miss = 1 + int(r() * 9)
                hits = int(r() * 5)
                return [(t, f"postfix/scache[{pid}]: statistics: start interval "
                            f"{self.stamp(t - 200 - r() * 100)}"),
                        (t + 0.001, f"postfix/scache[{pid}]: statistics: domain lookup hits={hits} "
                                    f"miss={miss} success={100 * hits // (hits + miss)}%"),
                        (t + 0.002, f"postfix/scache[{pid}]: statistics: address lookup hits=0 "
                                    f"miss={miss + 1} success=0%"),
                        (t + 0.003, f"postfix/scache[{pid}]: statistics: max simultaneous "
                                    f"domains=1 addresses=1 connection={1 + int(r() * 3)}")]
            return [(t, self.noise_line(rng, t))]

        return self._paced(pacer, build)

    def s_clock(self) -> Iterator:
        """What the clock drives: hourly cron, the daily report mailed to root, and the web
        site's contact form (local submissions through pickup, benign)."""
        rng = Random(f"relayguard-sim:{self.seed}:clock")
        r = rng.random
        hour0 = int(self.t_begin // 3600)
        forms = sorted(self.at(r()) for _ in range(max(1, int(4 * self.span / 86_400))))
        fi = 0
        h = hour0
        while True:
            t_cron = h * 3600 + 17 * 60 + r()  # run-parts /etc/cron.hourly at :17
            if t_cron < self.t_begin:
                h += 1
                continue
            while fi < len(forms) and forms[fi] < t_cron:
                t = forms[fi]
                fi += 1
                yield t
                qid = self.qid(t)
                ep = [(t, f"postfix/pickup[{self.pids.pickup}]: {qid}: uid=33 from=<www-data>")]
                self.queue(ep, rng, t, qid, f"www-data@{D.MYHOSTNAME}", [f"info@{D.DOMAIN}"],
                           1200 + int(r() * 2000), self.user_msgid(rng, 3, t), "user")
                yield ep
            if t_cron > self.t_end:
                return
            yield t_cron
            pid = self.pids.new()
            ep = [(t_cron, f"CRON[{pid}]: pam_unix(cron:session): session opened for user "
                           f"root(uid=0) by (uid=0)"),
                  (t_cron + 0.01, f"CRON[{pid + 1}]: (root) CMD (   cd / && run-parts --report "
                                  f"/etc/cron.hourly)"),
                  (t_cron + 0.3, f"CRON[{pid}]: pam_unix(cron:session): session closed for user root")]
            self.pids.counter += 1
            if self.dt(t_cron).hour == 6:
                # cron.daily's report, mailed to root (aliased to admin)
                t = t_cron + 8 * 60 + r() * 60
                qid = self.qid(t)
                ep.append((t, f"postfix/pickup[{self.pids.pickup}]: {qid}: uid=0 from=<root>"))
                self.queue(ep, rng, t, qid, f"root@{D.MYHOSTNAME}", [f"postmaster@{D.DOMAIN}"],
                           3000 + int(r() * 9000), self.user_msgid(rng, 3, t), "user")
            yield ep
            h += 1

    # ----------------------------------------------------------------------- attacks

    def s_compromised(self) -> Iterator:
        """Guess admin's password from one IP, then spam through the account from a botnet."""
        rng = Random(f"relayguard-sim:{self.seed}:compromised")
        r = rng.random
        budget = self.attack_budget["compromised"]
        used = 0
        ip = self.guesser_ip
        admin = self.user_by_name[D.ADMIN]
        # 1. the guessing: other names first, then admin, one or two tries per connection
        t = self.at(0.40)
        names = [D.GUESS_NAMES[int(r() * len(D.GUESS_NAMES))] for _ in range(14 + int(r() * 8))]
        names += [D.ADMIN] * (8 + int(r() * 6))
        i = 0
        while i < len(names):
            k = 1 + (r() < 0.5)
            chunk = names[i:i + k]
            i += k
            yield t
            ep = self.auth_fail_session(rng, t, "smtpd", "unknown", ip, chunk)
            used += len(ep)
            yield ep
            t = ep[-1][0] + 5 + r() * 60
        # 2. the password is right: a test message to the attacker's drop box
        t += 30 + r() * 120
        t_success = t
        yield t
        ep = self.session(rng, t, "smtpd", "unknown", ip,
                          [(f"{D.ADMIN}@{D.DOMAIN}", [f"check{rng.getrandbits(20)}@mail.ru"], None,
                            "spam")],
                          auth=("LOGIN", D.ADMIN), tls=False)
        used += len(ep)
        yield ep
        # 3. the run: bots join one by one, sessions of several messages each
        n_ips = max(15, min(40, (budget - used) // 60))
        ips = self.botnet[:n_ips]
        t_a = max(t + 600, self.at(0.47))
        t_b = self.at(0.62)
        pacer = self.pace(rng, max(1, budget - used), t_a, t_b, 25)
        seen = {ip}
        stats = {"messages": 1, "last": t_a}
        big = budget - used > 2000

        def build(t: float) -> Episode:
            frac = (t - t_a) / (t_b - t_a)
            avail = max(1, min(n_ips, int(n_ips * (0.3 + frac * 1.5))))
            bip = ips[int(r() * r() * avail)] if r() < 0.5 else ips[int(r() * avail)]
            if pacer.used > pacer.budget * 0.5:
                # make sure every bot shows up before the run ends
                bip = next((x for x in ips if x not in seen), bip)
            msgs = []
            # small files: one short message per connection, so that 15+ bots still fit
            for _ in range(1 + int(r() * 3) if big else 1):
                if r() < 0.25:
                    sender = f"{D.GUESS_NAMES[int(r() * 8)]}@{D.DOMAIN}"
                else:
                    sender = self.ext_person(rng, self.rand_domain(rng))
                rcpts = []
                for _ in range(1 + int(r() * r() * 8) if big else 1 + (r() < 0.3)):
                    dom = self.rand_domain(rng) if r() < 0.6 else D.USER_DESTINATIONS[int(r() * 11)]
                    rcpts.append(self.ext_person(rng, dom))
                mid = None if r() < 0.3 else f"{rng.getrandbits(64):016x}@{sender.rpartition('@')[2]}"
                msgs.append((sender, rcpts, mid, "spam"))
            svc = "submission/smtpd" if r() < 0.6 else "smtpd"
            stats["pending"] = (bip, len(msgs))
            return self.session(rng, t, svc, "unknown", bip, msgs, auth=("LOGIN", D.ADMIN),
                                tls=svc != "smtpd")

        def kept(ep: Episode) -> None:
            bip, n = stats["pending"]
            seen.add(bip)
            stats["messages"] += n
            stats["last"] = ep[0][0]

        yield from self._paced(pacer, build, kept)
        c = self.culprits[0]
        c.update({"login_ips": len(seen), "messages": stats["messages"],
                  "guess_failures": len(names), "password_guessed_at": self.iso(t_success),
                  "burst": [self.iso(t_a), self.iso(stats["last"])],
                  "normal": {"messages_per_day": admin["rate"], "ips": [admin["ips"][0][1]]}})
        c["bot_ips"] = sorted(seen - {ip})
        self.culprits[1]["failures"] = len(names)

    def s_relay(self) -> Iterator:
        rng = Random(f"relayguard-sim:{self.seed}:relay")
        r = rng.random
        cname, ip = D.RELAY_HOST
        t_a, t_b = self.at(0.55), self.at(0.80)
        pacer = self.pace(rng, self.attack_budget["relay"], t_a, t_b, 20)
        stats = {"messages": 0, "senders": 0, "pending": 0}

        def build(t: float) -> Episode:
            msgs = []
            for _ in range(1 + int(r() * 3)):
                sender = self.ext_person(rng, self.rand_domain(rng))
                rcpts = [self.ext_person(rng, self.rand_domain(rng) if r() < 0.7
                                         else D.USER_DESTINATIONS[int(r() * 11)])
                         for _ in range(1 + int(r() * r() * 5))]
                msgs.append((sender, rcpts, None, "spam"))
            stats["pending"] = len(msgs)
            return self.session(rng, t, "smtpd", cname, ip, msgs, tls=False)

        def kept(ep: Episode) -> None:
            stats["messages"] += stats["pending"]

        yield from self._paced(pacer, build, kept)
        for c in self.culprits:
            if c["kind"] == "trusted_host_relay":
                c.update({"messages": stats["messages"], "window": [self.iso(t_a), self.iso(t_b)],
                          "note": "no SASL login, message-id=<>, a new envelope sender each time"})

    def s_bruteforce(self) -> list[Iterator]:
        """2–3 hammering IPs (hundreds of tries each) and one login sprayed from 30+ IPs."""
        budget = self.attack_budget["bruteforce"]
        ips = self.spray_ips
        # the spray: every IP tries 2–4 times; sessions are always 4 lines, so it is exact
        rng = Random(f"relayguard-sim:{self.seed}:spray")
        r = rng.random
        tries = [2 + int(r() * 2.6) for _ in ips]
        spray_lines = 4 * sum(tries)
        per = max(40, (budget - spray_lines) // len(self.brute_ips))
        windows = ((0.15, 0.45), (0.50, 0.70), (0.65, 0.90))
        # common names first, then real logins harvested from the web site
        pool = D.GUESS_NAMES + tuple(u["login"] for u in self.users[1:8])
        counts: dict[str, int] = {}

        def hammer(k: int, ip: str) -> Iterator:
            g = Random(f"relayguard-sim:{self.seed}:hammer:{k}")
            a, b = windows[k]
            pacer = self.pace(g, per, self.at(a), self.at(b), 9)
            svc = ("smtpd", "submission/smtpd", "smtps/smtpd")[k % 3]
            pending = [0]

            def build(t: float) -> Episode:
                names = [pool[int(g.random() * len(pool))] for _ in range(1 + int(g.random() * 3))]
                names = [n if g.random() < 0.7 else f"{n}@{D.DOMAIN}" for n in names]
                pending[0] = len(names)
                return self.auth_fail_session(g, t, svc, "unknown", ip, names,
                                              "LOGIN" if g.random() < 0.8 else "PLAIN",
                                              tls=svc == "submission/smtpd")

            def kept(ep: Episode) -> None:
                counts[ip] = counts.get(ip, 0) + pending[0]

            yield from self._paced(pacer, build, kept)
            for c in self.culprits:
                if c["kind"] == "auth_bruteforce" and c["subject"] == ip:
                    c["failures"] = counts.get(ip, 0)
                    c["window"] = [self.iso(self.at(a)), self.iso(self.at(b))]

        def spray() -> Iterator:
            login = self.user_by_name[D.DISTRIBUTED_TARGET]["login"]
            order = [ip for ip, n in zip(ips, tries, strict=True) for _ in range(n)]
            rng.shuffle(order)
            t_a, t_b = self.at(0.30), self.at(0.60)
            for j, ip in enumerate(order):
                t = t_a + (t_b - t_a) * (j + r()) / len(order)
                yield t
                yield self.auth_fail_session(rng, t, "smtpd", "unknown", ip, [login], lost=True)
            for c in self.culprits:
                if c.get("distributed"):
                    c.update({"failures": len(order), "sources": len(ips),
                              "window": [self.iso(t_a), self.iso(t_b)]})

        return [hammer(k, ip) for k, ip in enumerate(self.brute_ips)] + [spray()]

    def fw_line(self, rng: Random, t: float, src: str, dst: str, linux: bool = False) -> str:
        """An iptables LOG line of the FORWARD rule from the ClearOS article."""
        r = rng.random
        mac = "00:15:5d:0a:01:02:3c:52:82:1f:9a:" + ("4e" if linux else "7b") + ":08:00"
        ttl, ln, win = (63, 60, 29200) if linux else (127, 52, 64240)
        stamp = f"[{self.uptime0 + t - self.t_begin:12.6f}] " if KERNEL_UPTIME_STAMP else ""
        return (f"kernel: {stamp}IN=eth1 OUT=eth0 MAC={mac} SRC={src} DST={dst} LEN={ln} "
                f"TOS=0x00 PREC=0x00 TTL={ttl} ID={int(r() * 65535)} DF PROTO=TCP "
                f"SPT={49152 + int(r() * 16000)} DPT=25 WINDOW={win} RES=0x00 SYN URGP=0")

    def s_direct(self) -> Iterator:
        """A Windows PC with a spam bot: thousands of SYNs to port 25 of MXes everywhere."""
        rng = Random(f"relayguard-sim:{self.seed}:direct")
        r = rng.random
        t_a, t_b = self.at(0.35), self.at(0.95)
        pacer = self.pace(rng, self.attack_budget["direct"], t_a, t_b, 6)
        stats = {"n": 0}

        def build(t: float) -> Episode:
            ep = []
            tt = t
            for _ in range(1 + int(r() * 10)):
                dst = self._public_ip(rng) if r() < 0.7 else self.dom_info(self.rand_domain(rng))[1]
                ep.append((tt, self.fw_line(rng, tt, D.DIRECT_SMTP_PC, dst)))
                tt += r() * 0.3
            return ep

        def kept(ep: Episode) -> None:
            stats["n"] += len(ep)

        yield from self._paced(pacer, build, kept)
        for c in self.culprits:
            if c["kind"] == "direct_smtp":
                c.update({"connections": stats["n"], "window": [self.iso(t_a), self.iso(t_b)]})

    def s_blocklisted(self) -> Iterator:
        """Ordinary outbound mail to partners once we are listed: the replies name the list."""
        rng = Random(f"relayguard-sim:{self.seed}:blocklisted")
        r = rng.random
        assert self.blocked_since is not None
        pacer = self.pace(rng, self.attack_budget["blocklisted"], self.blocked_since, self.t_end, 11)
        users = self.users

        def build(t: float) -> Episode:
            u = users[1 + int(r() * (len(users) - 1))]
            cname, ip = self._pick_user_ip(rng, u, t)
            rcpts = [self.ext_person(rng, D.PARTNERS[int(r() * len(D.PARTNERS))])
                     for _ in range(1 + (r() < 0.3))]
            return self.session(rng, t, u["svc"], cname, ip,
                                [(u["addr"], rcpts, self.user_msgid(rng, 0, t), "user")],
                                auth=(u["mech"], u["login"]), dkim=True)

        yield from self._paced(pacer, build)
        for c in self.culprits:
            if c["kind"] == "blocklisted":
                c["since"] = self.iso(self.blocked_since)


class _Pacer:
    """Maps a stream's consumed line budget onto its time window.

    The next episode starts where the budget spent so far says it should (jittered by up to one
    mean episode), so a stream always spans its window and ends within a few lines of its budget.
    """

    __slots__ = ("sim", "rng", "budget", "used", "t_a", "t_b", "mean", "last", "cum", "step",
                 "misses")

    def __init__(self, sim: Simulation, rng: Random, budget: int, t_a: float, t_b: float,
                 mean: float, diurnal: float) -> None:
        self.sim = sim
        self.rng = rng
        self.budget = max(1, budget)
        self.used = 0
        self.t_a = t_a
        self.t_b = t_b
        self.mean = mean
        self.last = t_a
        self.misses = 0
        self.cum, self.step = sim.diurnal_cum(t_a, t_b, diurnal) if diurnal else (None, 0.0)

    def time(self) -> float:
        u = (self.used + self.rng.random() * self.mean) / self.budget
        if u > 1.0:
            u = 1.0
        cum = self.cum
        if cum is None:
            t = self.t_a + u * (self.t_b - self.t_a)
        else:
            i = bisect_left(cum, u)
            lo = cum[i - 1] if i else 0.0
            hi = cum[i] if i < len(cum) else 1.0
            frac = (u - lo) / (hi - lo) if hi > lo else 0.0
            t = min(self.t_b, self.t_a + (i + frac) * self.step)
        if t < self.last:
            t = self.last
        self.last = t
        return t

    def take(self, n: int) -> bool:
        if self.used + n > self.budget:
            self.misses += 1
            return False
        self.used += n
        return True

    def done(self) -> bool:
        # after a miss, try a few smaller episodes before giving up the last lines
        return self.misses > 12 or self.budget - self.used < 2
