"""A Windows PC with a spam bot: thousands of SYNs to port 25 of MXes everywhere (firewall)."""

from __future__ import annotations

from collections.abc import Iterator

from .. import data as D
from ..pacing import Episode, Pacer, paced
from ..world import World
from ..writers import Writer

NAME = "direct-smtp"
FILLS_QUEUE = False


def plan(w: World) -> list[dict]:
    return [{"kind": "direct_smtp", "subject": D.DIRECT_SMTP_PC}]


def budget(lines: int) -> int:
    return max(120, int(0.04 * lines))


def streams(w: World, out: Writer, budget: int, culprits: list[dict]) -> list[Iterator]:
    return [_stream(w, out, budget, culprits)]


def _stream(w: World, out: Writer, budget: int, culprits: list[dict]) -> Iterator:
    rng = w.rng("direct")
    r = rng.random
    t_a, t_b = w.at(0.35), w.at(0.95)
    pacer = Pacer(w, rng, budget, t_a, t_b, 6)
    stats = {"n": 0}

    def build(t: float) -> Episode:
        ep = []
        tt = t
        for _ in range(1 + int(r() * 10)):
            dst = w.public_ip(rng) if r() < 0.7 else w.dom_info(w.rand_domain(rng))[1]
            ep.append((tt, out.fw_line(rng, tt, D.DIRECT_SMTP_PC, dst)))
            tt += r() * 0.3
        return ep

    def kept(ep: Episode) -> None:
        stats["n"] += len(ep)

    yield from paced(pacer, build, kept)
    for c in culprits:
        c.update({"connections": stats["n"], "window": [w.iso(t_a), w.iso(t_b)]})
