"""The site's users submitting mail (SASL, their own IPs, working hours, webmail now and then)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from .. import data as D
from ..pacing import Episode, Pacer, paced
from ..world import World
from ..writers import Writer


def stream(w: World, out: Writer, budget: int) -> Iterator:
    rng = w.rng("users")
    r = rng.random
    pacer = Pacer(w, rng, budget, w.t_begin, w.t_end, 12, diurnal=1.0)
    cum = w.user_cum
    users = w.users

    def build(t: float) -> Episode:
        u = users[min(bisect_left(cum, r()), len(users) - 1)]
        cname, ip = w.pick_user_ip(rng, u, t)
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
                rcpts.append(w.ext_person(rng, dom))
        msgs = [(u["addr"], rcpts, w.user_msgid(rng, style, t), "user")]
        if r() < 0.1:  # a second message in the same connection (a reply, a forward)
            msgs.append((u["addr"], rcpts[:1], w.user_msgid(rng, style, t), "user"))
        return out.session(rng, t, svc, cname, ip, msgs, auth=(mech, u["login"]),
                           tls=ip != "127.0.0.1", dkim=True)

    return paced(pacer, build)
