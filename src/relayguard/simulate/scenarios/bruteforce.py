"""2–3 hammering IPs (hundreds of tries each) and one login sprayed from 30+ IPs."""

from __future__ import annotations

from collections.abc import Iterator

from .. import data as D
from ..pacing import Episode, Pacer, paced
from ..world import World
from ..writers import Writer

NAME = "bruteforce"
FILLS_QUEUE = False
_WINDOWS = ((0.15, 0.45), (0.50, 0.70), (0.65, 0.90))  # of the hammers, by index


def plan(w: World) -> list[dict]:
    w.brute_ips = w.brute_ips[:2 + (w.target >= 5000)]
    out: list[dict] = [{"kind": "auth_bruteforce", "subject": ip} for ip in w.brute_ips]
    login = w.user_by_name[D.DISTRIBUTED_TARGET]["login"]
    out.append({"kind": "auth_bruteforce", "subject": login, "distributed": True,
                "note": "one login guessed from 30+ IPs, a few tries each",
                "sources": len(w.spray_ips)})
    return out


def budget(lines: int) -> int:
    return max(450, int(0.05 * lines))


def streams(w: World, out: Writer, budget: int, culprits: list[dict]) -> list[Iterator]:
    ips = w.spray_ips
    # the spray: every IP tries 2–4 times; sessions are always 4 lines, so it is exact
    rng = w.rng("spray")
    r = rng.random
    tries = [2 + int(r() * 2.6) for _ in ips]
    spray_lines = 4 * sum(tries)
    per = max(40, (budget - spray_lines) // len(w.brute_ips))
    # common names first, then real logins harvested from the web site
    pool = D.GUESS_NAMES + tuple(u["login"] for u in w.users[1:8])
    counts: dict[str, int] = {}

    def hammer(k: int, ip: str) -> Iterator:
        g = w.rng(f"hammer:{k}")
        a, b = _WINDOWS[k]
        pacer = Pacer(w, g, per, w.at(a), w.at(b), 9)
        svc = ("smtpd", "submission/smtpd", "smtps/smtpd")[k % 3]
        pending = [0]

        def build(t: float) -> Episode:
            names = [pool[int(g.random() * len(pool))] for _ in range(1 + int(g.random() * 3))]
            names = [n if g.random() < 0.7 else f"{n}@{D.DOMAIN}" for n in names]
            pending[0] = len(names)
            return out.auth_fail_session(g, t, svc, "unknown", ip, names,
                                         "LOGIN" if g.random() < 0.8 else "PLAIN",
                                         tls=svc == "submission/smtpd")

        def kept(ep: Episode) -> None:
            counts[ip] = counts.get(ip, 0) + pending[0]

        yield from paced(pacer, build, kept)
        for c in culprits:
            if c["subject"] == ip:
                c["failures"] = counts.get(ip, 0)
                c["window"] = [w.iso(w.at(a)), w.iso(w.at(b))]

    def spray() -> Iterator:
        login = w.user_by_name[D.DISTRIBUTED_TARGET]["login"]
        order = [ip for ip, n in zip(ips, tries, strict=True) for _ in range(n)]
        rng.shuffle(order)
        t_a, t_b = w.at(0.30), w.at(0.60)
        for j, ip in enumerate(order):
            t = t_a + (t_b - t_a) * (j + r()) / len(order)
            yield t
            yield out.auth_fail_session(rng, t, "smtpd", "unknown", ip, [login], lost=True)
        culprits[-1].update({"failures": len(order), "sources": len(ips),
                             "window": [w.iso(t_a), w.iso(t_b)]})

    return [hammer(k, ip) for k, ip in enumerate(w.brute_ips)] + [spray()]
