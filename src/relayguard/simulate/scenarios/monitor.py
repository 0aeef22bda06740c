"""The LAN monitoring box mailing its alerts to the admin (benign trusted relay)."""

from __future__ import annotations

from collections.abc import Iterator

from .. import data as D
from ..pacing import Episode, Pacer, paced
from ..world import World
from ..writers import Writer


def stream(w: World, out: Writer, budget: int) -> Iterator:
    rng = w.rng("monitor")
    cname, ip = D.MONITOR_HOST
    pacer = Pacer(w, rng, budget, w.t_begin, w.t_end, 8)

    def build(t: float) -> Episode:
        mid = f"{w.dt(t):%Y%m%d%H%M%S}.{rng.getrandbits(36):09X}@nagios.example.lan"
        return out.session(rng, t, "smtpd", cname, ip,
                           [(f"nagios@{D.DOMAIN}", [f"{D.ADMIN}@{D.DOMAIN}"], mid, "user")],
                           tls=False)

    return paced(pacer, build)
