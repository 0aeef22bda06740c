"""A compromised LAN host inside mynetworks relaying spam without any login."""

from __future__ import annotations

from collections.abc import Iterator

from .. import data as D
from ..pacing import Episode, Pacer, paced
from ..world import World
from ..writers import Writer

NAME = "trusted-relay"
FILLS_QUEUE = True  # spam deferrals stay queued


def plan(w: World) -> list[dict]:
    return [{"kind": "trusted_host_relay", "subject": D.RELAY_HOST[1]}]


def budget(lines: int) -> int:
    return max(200, int(0.06 * lines))


def streams(w: World, out: Writer, budget: int, culprits: list[dict]) -> list[Iterator]:
    return [_stream(w, out, budget, culprits)]


def _stream(w: World, out: Writer, budget: int, culprits: list[dict]) -> Iterator:
    rng = w.rng("relay")
    r = rng.random
    cname, ip = D.RELAY_HOST
    t_a, t_b = w.at(0.55), w.at(0.80)
    pacer = Pacer(w, rng, budget, t_a, t_b, 20)
    stats = {"messages": 0, "senders": 0, "pending": 0}

    def build(t: float) -> Episode:
        msgs = []
        for _ in range(1 + int(r() * 3)):
            sender = w.ext_person(rng, w.rand_domain(rng))
            rcpts = [w.ext_person(rng, w.rand_domain(rng) if r() < 0.7
                                  else D.USER_DESTINATIONS[int(r() * 11)])
                     for _ in range(1 + int(r() * r() * 5))]
            msgs.append((sender, rcpts, None, "spam"))
        stats["pending"] = len(msgs)
        return out.session(rng, t, "smtpd", cname, ip, msgs, tls=False)

    def kept(ep: Episode) -> None:
        stats["messages"] += stats["pending"]

    yield from paced(pacer, build, kept)
    for c in culprits:
        c.update({"messages": stats["messages"], "window": [w.iso(t_a), w.iso(t_b)],
                  "note": "no SASL login, message-id=<>, a new envelope sender each time"})
