"""Statistics dumps, dovecot, cron, kernel: volume that carries no mail."""

from __future__ import annotations

from collections.abc import Iterator

from ..pacing import Episode, Pacer, paced
from ..world import World
from ..writers import Writer


def stream(w: World, out: Writer, budget: int) -> Iterator:
    rng = w.rng("noise")
    r = rng.random
    pacer = Pacer(w, rng, budget, w.t_begin, w.t_end, 1.3, diurnal=0.4)

    def build(t: float) -> Episode:
        k = r()
        if k < 0.003:
            return out.anvil_stats(rng, t)
        if k < 0.006:
            return out.scache_stats(rng, t)
        return [(t, out.noise_line(rng, t))]

    return paced(pacer, build)
