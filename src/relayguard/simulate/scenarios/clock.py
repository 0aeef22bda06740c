"""What the clock drives: hourly cron, the daily report mailed to root, and the web site's
contact form (local submissions through pickup, benign). Budget-free: its lines are counted
by a dry run at planning time."""

from __future__ import annotations

from collections.abc import Iterator

from .. import data as D
from ..world import World
from ..writers import Writer


def stream(w: World, out: Writer) -> Iterator:
    rng = w.rng("clock")
    r = rng.random
    hour0 = int(w.t_begin // 3600)
    forms = sorted(w.at(r()) for _ in range(max(1, int(4 * w.span / 86_400))))
    fi = 0
    h = hour0
    while True:
        t_cron = h * 3600 + 17 * 60 + r()  # run-parts /etc/cron.hourly at :17
        if t_cron < w.t_begin:
            h += 1
            continue
        while fi < len(forms) and forms[fi] < t_cron:
            t = forms[fi]
            fi += 1
            yield t
            ep = []
            out.pickup(ep, rng, t, 33, "www-data", [f"info@{D.DOMAIN}"],
                       1200 + int(r() * 2000), w.user_msgid(rng, 3, t))
            yield ep
        if t_cron > w.t_end:
            return
        yield t_cron
        ep = out.cron_hourly(t_cron)
        if w.dt(t_cron).hour == 6:
            # cron.daily's report, mailed to root (aliased to admin)
            t = t_cron + 8 * 60 + r() * 60
            out.pickup(ep, rng, t, 0, "root", [f"postmaster@{D.DOMAIN}"],
                       3000 + int(r() * 9000), w.user_msgid(rng, 3, t))
        yield ep
        h += 1
