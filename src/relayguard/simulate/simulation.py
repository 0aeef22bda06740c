"""One run: the plan (world, labels, budgets) and the merge of the scenarios' streams into one
time-ordered syslog.

An *episode* is everything one actor causes at one moment: an SMTP session with its queued
messages and their deliveries (retries included), a burst of firewall lines, a statistics dump.
It is a list of `(time, text)` whose first item is the earliest. Streams (baseline traffic, each
attack, noise) announce the start of their next episode and build it when the merge gets there;
each is paced by a *line budget* mapped onto its time window (`pacing`), so the file length is
controlled without knowing it in advance (a few quiet lines top it up at the end). The merger
emits every pending line older than the next episode's start, so memory holds only lines still
in flight (at most the ~20 minutes of a retry), never the log.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime, timedelta

from . import data as D
from .scenarios import SCENARIOS, attacks_of, baseline
from .world import World
from .writers import Writer


class Simulation:
    """One run: plan (budgets, windows, actors) at construction, lines from `lines()`."""

    def __init__(self, scenario: str, lines: int, seed: int = 1, start: datetime | None = None,
                 host: str = "mail") -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}")
        if lines < 1:
            raise ValueError("lines must be at least 1")
        self.scenario = scenario
        self.target = int(lines)
        self.seed = seed
        self.host = host
        w = self.world = World(scenario, lines, seed, start, host)
        self.attacks = attacks_of(scenario)
        names = {m.NAME for m in self.attacks}
        self.attack_culprits = {m.NAME: m.plan(w) for m in self.attacks}
        for m in self.attacks:
            w.culprits += self.attack_culprits[m.NAME]
        if any(m.FILLS_QUEUE for m in self.attacks):
            w.symptoms.append({"kind": "queue_surge", "subject": "deferred",
                               "note": "spam deferrals stay queued"})
        baseline.plan(w, "blocklisted" in names)
        self.out = Writer(w, w.rng("pids"))

        # Shares of the volume: the attacks' first, the baseline's the rest of what the
        # budget-free streams leave.
        self.attack_budget = {m.NAME: m.budget(self.target) for m in self.attacks}
        base = max(300, self.target - sum(self.attack_budget.values()) - baseline.fixed_lines(w))
        self.base_budget = baseline.budgets(w, base)
        self._minute_cache: dict[int, str] = {}
        self._secs = [f"{s:02d} {host} " for s in range(60)]

    # ----------------------------------------------------------------------- output

    def lines(self) -> Iterator[str]:
        """The log, line by line (no newline). Lines may hold lone surrogates (invalid UTF-8).

        Stream protocol: a stream yields the start time of its next episode, and when resumed
        (the merge has reached that time) yields the episode, or None if it dropped it. Building
        only then gives each episode the process ids and queue IDs of its own moment.
        """
        w, out = self.world, self.out
        streams = baseline.streams(w, out, self.base_budget)
        for m in self.attacks:
            streams += m.streams(w, out, self.attack_budget[m.NAME], self.attack_culprits[m.NAME])
        agenda: list[tuple[float, int, Iterator]] = []
        for i, g in enumerate(streams):
            t0 = next(g, None)
            if t0 is not None:
                agenda.append((t0, i, g))
        heapq.heapify(agenda)

        heap: list[tuple[float, int, str]] = []
        push = heapq.heappush
        pop = heapq.heappop
        replace = heapq.heapreplace
        seq = 0
        emitted = 0
        last_sec = -1
        hdr = ""
        header = self._header
        last_t = w.t_begin
        first_t: float | None = None
        padded = False
        never = float("inf")
        due: list[tuple[float, int, str]] = []  # what goes out now, in this order
        while True:
            if not agenda and not padded:
                # Top up to the requested size with quiet single lines before the end: streams
                # stop a few lines short of their budgets rather than overshoot.
                padded = True
                seq = self._pad(heap, seq, emitted + len(due), last_t)
                if heap:
                    last_t = max(heap)[0]  # the last line out is the latest
            start = agenda[0][0] if agenda else never
            while heap and heap[0][0] <= start:
                due.append(pop(heap))
            for t, _, body in due:
                sec = int(t)
                if sec != last_sec:  # the header changes once a second, not once a line
                    last_sec = sec
                    hdr = header(sec)
                emitted += 1
                yield hdr + body
            due.clear()
            if not agenda:
                break
            start, i, g = agenda[0]
            ep = next(g, None)
            nxt = next(g, None)
            if nxt is None:
                pop(agenda)
            else:
                replace(agenda, (nxt, i, g))
            if ep is None:
                continue
            if first_t is None:
                first_t = start
            last_t = start
            if type(ep) is str:
                # a deliberately malformed line: the header is built here, then damaged
                emitted += 1
                yield out.malformed(ep, start, emitted)
                continue
            # the first line goes out next, before any later one: at the announced start
            t, body = ep[0]
            due.append((t, 0, body))
            for k in range(1, len(ep)):
                t, body = ep[k]
                seq += 1
                push(heap, (t, seq, body))
        self.emitted = emitted
        self.first_t = first_t if first_t is not None else w.t_begin
        self.last_t = last_t

    def _pad(self, heap: list[tuple[float, int, str]], seq: int, emitted: int,
             last_t: float) -> int:
        """Queue the quiet lines that bring the file to its requested size; returns `seq`."""
        w = self.world
        short = self.target - emitted - len(heap)
        if short > 0:
            rng = w.rng("pad")
            t_a = max(last_t, w.t_end - 3600)
            t_b = max(t_a + 1, w.t_end)
            for k in range(short):
                t = t_a + (t_b - t_a) * (k + rng.random()) / short
                seq += 1
                heapq.heappush(heap, (t, seq, self.out.noise_line(rng, t)))
        return seq

    def _header(self, sec: int) -> str:
        """`Jun 21 08:34:30 mail ` for second `sec` of the internal clock."""
        m = sec // 60
        p = self._minute_cache.get(m)
        if p is None:
            d = self.world.base_minute + timedelta(minutes=m)
            p = f"{D.MONTHS[d.month - 1]} {d.day:2d} {d.hour:02d}:{d.minute:02d}:"
            if len(self._minute_cache) > 4096:
                self._minute_cache.clear()
            self._minute_cache[m] = p
        return p + self._secs[sec - m * 60]

    def labels(self) -> dict:
        w = self.world
        return {
            "scenario": self.scenario, "seed": self.seed, "lines": self.emitted,
            "start": w.iso(self.first_t), "end": w.iso(self.last_t),
            "host": self.host, "domain": D.DOMAIN, "public_ip": D.PUBLIC_IP,
            "trusted": list(D.TRUSTED),
            "culprits": w.culprits, "benign": w.benign, "symptoms": w.symptoms,
            "postfix_upgrade": {"at": w.iso(w.upgrade_at), "from": "3.7.6", "to": "3.7.11",
                                "note": "auth failures log sasl_username= from here on"},
            "malformed": w.malformed,
        }
