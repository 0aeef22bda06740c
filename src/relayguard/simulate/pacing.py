"""Pacing: how a stream spreads its line budget over its time window.

A stream does not know how many episodes it will have, only how many lines it may write; the
pacer turns the lines spent so far into the time of the next episode, optionally following the
site's working hours, so the file length is controlled without knowing it in advance.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from random import Random

from .world import World

# What one actor causes at one moment: (time, text) lines, the first the earliest; the merge
# writes that first line at the moment the stream announced, the others at their own times.
Episode = list[tuple[float, str]]


def diurnal_cum(world: World, t_a: float, t_b: float, depth: float) -> tuple[list[float], float]:
    """Cumulative activity over 15-minute buckets: quiet nights, busy working hours.

    `depth` 1 is people (nights at 15 %), 0.5 is mail from the world (nights at ~60 %)."""
    step = 900.0
    n = max(1, int((t_b - t_a) / step) + 1)
    cum = []
    acc = 0.0
    for i in range(n):
        h, weekday = world.hour_of(t_a + i * step)
        w = 0.15 if h < 7 or h >= 22 else 1.0 if 8 <= h < 18 else 0.5
        if not weekday:
            w *= 0.45
        acc += 1.0 - depth * (1.0 - w)
        cum.append(acc)
    return [c / acc for c in cum], step


class Pacer:
    """Maps a stream's consumed line budget onto its time window.

    The next episode starts where the budget spent so far says it should (jittered by up to one
    mean episode), so a stream always spans its window and ends within a few lines of its budget.
    """

    __slots__ = ("rng", "budget", "used", "t_a", "t_b", "mean", "last", "cum", "step", "misses")

    def __init__(self, world: World, rng: Random, budget: int, t_a: float, t_b: float,
                 mean: float, diurnal: float = 0.0) -> None:
        self.rng = rng
        self.budget = max(1, budget)
        self.used = 0
        self.t_a = t_a
        self.t_b = t_b
        self.mean = mean
        self.last = t_a
        self.misses = 0
        self.cum, self.step = diurnal_cum(world, t_a, t_b, diurnal) if diurnal else (None, 0.0)

    def time(self) -> float:
        u = (self.used + self.rng.random() * self.mean) / self.budget
        if u > 1.0:
            u = 1.0
        cum = self.cum
        if cum is None:
            t = self.t_a + u * (self.t_b - self.t_a)
        else:
            i = bisect_left(cum, u)
            lo = cum[i - 1] if i else 0.0
            hi = cum[i] if i < len(cum) else 1.0
            frac = (u - lo) / (hi - lo) if hi > lo else 0.0
            t = min(self.t_b, self.t_a + (i + frac) * self.step)
        if t < self.last:
            t = self.last
        self.last = t
        return t

    def take(self, n: int) -> bool:
        if self.used + n > self.budget:
            self.misses += 1
            return False
        self.used += n
        return True

    def done(self) -> bool:
        # after a miss, try a few smaller episodes before giving up the last lines
        return self.misses > 12 or self.budget - self.used < 2


def paced(pacer: Pacer, build: Callable[[float], Episode],
          kept: Callable[[Episode], None] | None = None) -> Iterator:
    """The stream protocol (see `simulation.Simulation.lines`) around a pacer and an episode
    builder; `kept` hears of each episode the budget took."""
    while True:
        t = pacer.time()
        yield t
        ep = build(t)
        if pacer.take(len(ep)):
            if kept is not None:
                kept(ep)
            yield ep
        else:
            yield None
            if pacer.done():
                return
