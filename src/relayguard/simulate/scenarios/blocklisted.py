"""Ordinary outbound mail to partners once our address is listed: the replies name the list."""

from __future__ import annotations

from collections.abc import Iterator

from .. import data as D
from ..pacing import Episode, Pacer, paced
from ..world import World
from ..writers import Writer

NAME = "blocklisted"
FILLS_QUEUE = False


def plan(w: World) -> list[dict]:
    # in "all", after the compromised account's spam run (it ends at 0.62): one cause of
    # bounces at a time
    w.blocked_since = w.at(0.64 if w.scenario == "all" else 0.5)
    return [{"kind": "blocklisted", "subject": D.BL_ZEN},
            {"kind": "blocklisted", "subject": D.BL_SPAMCOP}]


def budget(lines: int) -> int:
    return max(100, int(0.02 * lines))


def streams(w: World, out: Writer, budget: int, culprits: list[dict]) -> list[Iterator]:
    return [_stream(w, out, budget, culprits)]


def _stream(w: World, out: Writer, budget: int, culprits: list[dict]) -> Iterator:
    rng = w.rng("blocklisted")
    r = rng.random
    since = w.blocked_since
    assert since is not None  # set by plan()
    pacer = Pacer(w, rng, budget, since, w.t_end, 11)
    users = w.users

    def build(t: float) -> Episode:
        u = users[1 + int(r() * (len(users) - 1))]
        cname, ip = w.pick_user_ip(rng, u, t)
        rcpts = [w.ext_person(rng, D.PARTNERS[int(r() * len(D.PARTNERS))])
                 for _ in range(1 + (r() < 0.3))]
        return out.session(rng, t, u["svc"], cname, ip,
                           [(u["addr"], rcpts, w.user_msgid(rng, 0, t), "user")],
                           auth=(u["mech"], u["login"]), dkim=True)

    yield from paced(pacer, build)
    for c in culprits:
        c["since"] = w.iso(since)
