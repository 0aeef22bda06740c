"""The LAN newsletter host, relaying unauthenticated as a trusted client (benign)."""

from __future__ import annotations

from collections.abc import Iterator

from .. import data as D
from ..pacing import Episode, Pacer, paced
from ..world import World
from ..writers import Writer


def stream(w: World, out: Writer, budget: int) -> Iterator:
    rng = w.rng("newsletter")
    r = rng.random
    cname, ip = D.NEWSLETTER_HOST
    pacer = Pacer(w, rng, budget, w.t_begin, w.t_end, 30)
    issue = f"{w.dt(w.t_begin):%Y%m%d}"

    def build(t: float) -> Episode:
        msgs = []
        for _ in range(1 + int(r() * 4)):  # a few subscribers per connection
            dom = (D.USER_DESTINATIONS[int(r() * len(D.USER_DESTINATIONS))] if r() < 0.6
                   else w.rand_domain(rng))
            rc = w.ext_person(rng, dom)
            mid = f"news.{issue}.{rng.getrandbits(40):010x}@{D.DOMAIN}"
            msgs.append((f"news@{D.DOMAIN}", [rc], mid, "news"))
        return out.session(rng, t, "smtpd", cname, ip, msgs, tls=False, dkim=True)

    return paced(pacer, build)
