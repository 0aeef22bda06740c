"""The simulated site: its clock, users and their addresses, the attackers' networks, the
remote MX hosts, the random generators, and the ground truth the scenarios record.

Everything a scenario or a line writer asks about *who* and *when* comes from here; nothing
here writes a log line.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta
from random import Random

from . import data as D

DEFAULT_START = datetime(2026, 6, 21, 0, 0, 0)
LINES_PER_DAY = 300_000  # 1M lines ≈ 3.3 days
MIN_SPAN = 86_400.0  # never less than a day: users' daily habits must be visible

_ISPS = ("dyn.telekom-net.example", "cable.ziggo-net.example", "home.orange-net.example",
         "dsl.vodafone-net.example", "fttx.free-net.example")


def ip_dashes(ip: str) -> str:
    """`192.0.2.1` as ISPs write it into reverse names: `192-0-2-1`."""
    return ip.replace(".", "-")


class World:
    """One run's site, planned from the seed at construction (the plan generator is drawn in
    a fixed order: changing that order changes every file)."""

    def __init__(self, scenario: str, lines: int, seed: int, start: datetime | None,
                 host: str) -> None:
        self.scenario = scenario
        self.target = int(lines)
        self.seed = seed
        self.host = host
        self.start = start if start is not None else DEFAULT_START

        # Internal clock: seconds since the start's minute (the header cache works per minute).
        self.base_minute = self.start.replace(second=0, microsecond=0)
        self.t_begin = self.start.second + self.start.microsecond / 1e6
        self.span = max(MIN_SPAN, self.target / LINES_PER_DAY * 86_400)
        self.t_end = self.t_begin + self.span

        rng = self.rng("plan")
        self.uptime0 = 7_200 + rng.random() * 80_000  # kernel uptime at the start
        self.upgrade_at = self.at(0.25)  # Postfix 3.7.6 → 3.7.11: failures gain `sasl_username=`
        self.blocked_since: float | None = None  # set by the blocklisted scenario
        self._dom_cache: dict[str, tuple[str, str, str, str | None]] = {}
        self._plan_users(rng)
        self._plan_attackers(rng)

        # The ground truth, filled in by the scenarios (and the malformed-line writer).
        self.culprits: list[dict] = []
        self.benign: list[dict] = []
        self.symptoms: list[dict] = []
        self.malformed: list[dict] = []

    def rng(self, purpose: str) -> Random:
        """Each purpose has its own generator, so one stream's draws never shift another's."""
        return Random(f"relayguard-sim:{self.seed}:{purpose}")

    # ----------------------------------------------------------------------- time

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

    def uptime(self, t: float) -> str:
        """The kernel's `[12345.678901]` stamp at `t`."""
        return f"[{self.uptime0 + t - self.t_begin:12.6f}]"

    # ----------------------------------------------------------------------- people

    def public_ip(self, rng: Random) -> str:
        r = rng.getrandbits(24)
        return (f"{D.PUBLIC_OCTETS[int(rng.random() * len(D.PUBLIC_OCTETS))]}."
                f"{r >> 16}.{(r >> 8) & 255}.{1 + (r & 255) % 254}")

    def _plan_users(self, rng: Random) -> None:
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
                ip = self.public_ip(rng)
                cname = "unknown" if rng.random() < 0.5 else (
                    f"{ip_dashes(ip)}.{_ISPS[int(rng.random() * len(_ISPS))]}")
                ips.append((cname, ip, "home"))
                if rng.random() < 0.6 or name == D.MOVING_USER:
                    ips.append(("unknown", self.public_ip(rng), "phone"))
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
        self.local_set = frozenset(self.local_names)
        total = sum(u["rate"] for u in users)
        acc = 0.0
        self.user_cum = []
        for u in users:
            acc += u["rate"] / total
            self.user_cum.append(acc)
        self.user_rate_total = total

    def _plan_attackers(self, rng: Random) -> None:
        # drawn whatever the scenario, so that adding one to a run moves no other address
        self.guesser_ip = self.public_ip(rng)
        self.botnet = [self.public_ip(rng) for _ in range(40)]
        self.brute_ips = [self.public_ip(rng) for _ in range(3)]
        # the spray scales with the size: 32 IPs at least, a few tries each
        self.spray_ips = [self.public_ip(rng)
                          for _ in range(max(32, min(300, int(0.05 * self.target) // 48)))]

    def pick_user_ip(self, rng: Random, u: dict, t: float) -> tuple[str, str]:
        """(client name, IP) `u` submits from at `t`: the office in working hours, else away."""
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
