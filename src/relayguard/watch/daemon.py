"""`relayguard watch`: the loop.

    sources (files, journald) ─lines─▶ parse ─events─▶ correlate ─messages─▶ sliding windows
         │                                │                                        │
         │                                └─ auth failure ─▶ brute-force counter ─▶ ban (now)
         │                                                                         ▼
    checkpoint (with the counters)              detectors of `analyze` every few seconds
                                                        ▼
    queue poll (thread) ─▶ hysteresis ─▶ alert    dedupe ─▶ alert + automatic response

One thread does everything that touches the log and the state database, so events are handled
in order and a checkpoint always matches what was counted. Only waiting on the outside world is
elsewhere: `postqueue` (queue poll thread), SMTP and webhooks (alert thread), /metrics (HTTP
thread). A brute-force ban happens while the line that completes it is processed: within one
poll interval (0.2 s) of it being written.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..alert import Alert, Deduper, Dispatcher, Metrics
from ..alert import from_config as dispatcher_from_config
from ..correlate import Message
from ..detect import Finding
from ..detect import queue_surge as queue_surge_detector
from ..enrich.geo import GeoError
from ..parse import Event, LineParser
from ..parse.event import AUTH_FAILURE, CLIENT, DELIVERY, EXPIRED, PICKUP, REJECT
from ..pipeline.core import Pipeline
from ..state import StateError, Store, resolve_path
from .checkpoints import Checkpoints
from .follow import FileFollower
from .journald import JournalFollower
from .queuepoll import Hysteresis, QueuePoller, QueueSample, sample_queue
from .responder import Responder
from .settings import WatchSettings
from .windows import BruteForce

log = logging.getLogger("relayguard.watch")

# A message still in the queue this long after its first line is counted in the windows
# without waiting for `removed`: spam that is deferred for days must be seen now.
SETTLE = 30.0
# How often the daemon tells the state database it is alive (`relayguard status` calls it
# running while the last beat is younger than three of these).
HEARTBEAT_INTERVAL = 10.0


class WatchError(Exception):
    """The daemon cannot start (no source, unreadable state); the message is for the user."""


@dataclass
class Stats:
    lines: int = 0
    events: int = 0
    stale: int = 0  # lines older than ignore_older, skipped
    auth_failures: int = 0
    messages: int = 0
    bans: list[str] = field(default_factory=list)
    detections: int = 0
    findings: list[Finding] = field(default_factory=list)  # of the last detector run
    queue: QueueSample | None = None


class Watcher:
    """Build with the configuration; `run(stop)` until `stop` is set, or `run_once()`.

    Everything stateful is opened by `run`/`run_once` in the calling thread.
    """

    def __init__(self, cfg: dict[str, Any], state_path: str | None = None,
                 logs: list[str] | None = None) -> None:
        self.cfg = cfg
        self.settings = s = WatchSettings.from_config(cfg)
        if logs:
            s.logs = list(logs)
        self.state_path = state_path
        self.metrics = Metrics()
        self.dispatcher: Dispatcher = dispatcher_from_config(cfg, self.metrics)
        self.stats = Stats()
        self.ready = threading.Event()  # set once sources, state and /metrics are up
        self.metrics_address: tuple[str, int] | None = None
        self.dedupe = Deduper(s.cooldown)
        try:
            # The same assembly as `analyze` (geo; trusted networks of the instance watched).
            self.pipeline = Pipeline(cfg, config_dir=s.postfix_config_dir)
        except GeoError as exc:
            raise WatchError(str(exc)) from None
        self.windows = self.pipeline.slide(s.window)
        # The batch loop's per-line step: the same time filter, correlation and sweeps.
        self.feed = self.pipeline.feed(self._event, self._completed)
        self.correlator = self.feed.correlator
        self.bruteforce = BruteForce(s.bf_max_failures, s.bf_window)
        self.queue_state = Hysteresis(s.queue_threshold, s.queue_recover)
        self.sources: list[Any] = []
        self.parsers: dict[str, LineParser] = {}
        self.responder: Responder | None = None
        self.store: Store | None = None
        self._own_store: Store | None = None
        self.checkpoints: Checkpoints | None = None
        self.poller: QueuePoller | None = None
        self._released: set[tuple[str, str, str]] = set()  # counted before `removed`
        self._banned_until: dict[str, float] = {}
        self._dirty = False
        self._due: dict[str, float] = {}
        self._beating = False

    # ------------------------------------------------------------------ lifecycle
    def open(self, background: bool = True) -> None:
        """Open the state, the sources, and (`background`) the queue poller and /metrics."""
        s = self.settings
        self.responder = Responder(self.cfg, self.state_path, s.postfix_config_dir)
        self.responder.open()
        # One connection to the state database per process: the respond package's. A second
        # Store on the same file would open and close the file, and closing any descriptor of
        # a file drops every POSIX lock the process holds on it — SQLite's included.
        store = self.responder.store
        if store is None:
            local = {k: v for k, v in self.cfg.items() if k != "state"}
            local["state"] = {k: v for k, v in (self.cfg.get("state") or {}).items() if k != "url"}
            store = self._own_store = Store(resolve_path(self.state_path, local))
        self.store = store
        self.checkpoints = Checkpoints(store)
        now = time.time()
        self.bruteforce.load(self.checkpoints.load_failures(now - s.bf_window))
        logs = s.logs
        if not logs and not s.journald:
            from ..sources.files import InputError, default_logs

            try:
                logs = default_logs(s.postfix_config_dir)
            except InputError as exc:
                raise WatchError(f"{exc}; or set [watch] logs, or [watch] journald = true") from None
        for path in dict.fromkeys(logs):  # each file once, in the order given
            self.sources.append(FileFollower(path, self.checkpoints.load(path),
                                             grace=s.rotate_grace))
        if s.journald:
            cp = self.checkpoints.load("journald")
            since = now - s.ignore_older if s.ignore_older else None
            self.sources.append(JournalFollower(cp, program=s.journalctl, args=s.journald_args,
                                                since=since, follow=background))
        for src in self.sources:
            self.parsers[src.name] = LineParser(reference=now, lean=True)
        if background and s.queue_poll > 0 and s.queue_threshold > 0:
            from ..queue import PostfixTools

            self.poller = QueuePoller(PostfixTools(s.postfix_config_dir), s.queue_poll).start()
        if background and s.metrics_listen:
            self.metrics_address = self.metrics.serve(s.metrics_listen)
            log.info("metrics on http://%s:%d/metrics", *self.metrics_address)
        self._update_active()
        log.info("watching %s", ", ".join(src.name for src in self.sources) or "nothing")
        self.ready.set()

    def close(self) -> None:
        """Read what the sources hold right now, final checkpoint, then everything closed
        (alerts flushed, threads stopped)."""
        try:
            if self.checkpoints is not None:
                self.step(periodic=False)
                for src in self.sources:
                    lines = src.finish()
                    if lines:
                        self._process(src, lines)
                self.checkpoint()
        finally:
            for src in self.sources:
                src.close()
            self.sources = []
            if self.poller is not None:
                self.poller.stop()
            self.dispatcher.close(timeout=15)
            self.metrics.close()
            if self._beating and self.store is not None:
                self.store.stop_beating("watch")
                self._beating = False
            if self.responder is not None:
                self.responder.close()
            if self._own_store is not None:
                self._own_store.close()
                self._own_store = None
            self.store = None

    def run(self, stop: threading.Event) -> None:
        """Follow until `stop` is set (SIGTERM/SIGINT in the command), then shut down cleanly."""
        try:
            self.open()
            while not stop.is_set():
                behind = self.step()
                if not behind:
                    stop.wait(self.settings.poll_interval)
        finally:
            self.close()

    def run_once(self) -> Stats:
        """Read what the sources hold now, run the detectors and the queue check once, send
        the alerts, checkpoint, and return (for cron, and for tests)."""
        s = self.settings
        try:
            self.open(background=False)
            while True:
                before = self.stats.lines
                if not self.step(periodic=False):
                    break
                if self.stats.lines == before:
                    time.sleep(0.02)  # journalctl is still reading the journal
            self.detect(final=True)
            if s.queue_poll > 0 and s.queue_threshold > 0:
                from ..queue import PostfixTools

                self._queue_sample(sample_queue(PostfixTools(s.postfix_config_dir)))
            self.expire()
        finally:
            self.close()
        return self.stats

    # ------------------------------------------------------------------ the loop
    def step(self, periodic: bool = True) -> bool:
        """Read every source once and handle what came; then the periodic tasks that are due.
        True when a source has more to read right away."""
        behind = False
        for src in self.sources:
            try:
                lines = src.poll()
            except OSError as exc:  # an I/O error on one file must not stop the others
                log.error("%s: %s", src.name, exc)
                continue
            if lines:
                self._process(src, lines)
            elif getattr(src, "dirty", False):  # a rotated file finished: the checkpoint drops it
                self._dirty = True
            behind = behind or src.behind
        if periodic:
            self._periodic()
        return behind

    def _every(self, name: str, interval: float) -> bool:
        now = time.monotonic()
        if now >= self._due.get(name, 0.0):
            self._due[name] = now + interval
            return True
        return False

    def _periodic(self) -> None:
        s = self.settings
        if self.poller is not None:
            sample = self.poller.latest()
            if sample is not None:
                self._queue_sample(sample)
        if s.detect_interval and self._every("detect", s.detect_interval):
            self.detect()
        if self._every("expire", s.expire_interval):
            self.expire()
        if self._dirty and self._every("checkpoint", s.checkpoint_interval):
            self.checkpoint()
        if self._every("heartbeat", HEARTBEAT_INTERVAL):
            self.beat()

    def _process(self, src: Any, lines: list[str]) -> None:
        log.debug("%s: %d lines", src.name, len(lines))
        parse = self.parsers[src.name].parse
        feed = self.feed
        ignore = self.settings.ignore_older
        feed.since = time.time() - ignore if ignore else float("-inf")
        self.metrics.lines.labels(src.name).inc(len(lines))
        for name, n in getattr(src, "take_counts", dict)().items():  # files only
            self.metrics.file_lines.labels(name).inc(n)
        self.stats.lines += len(lines)
        unparsed_before = self.parsers[src.name].unparsed
        outside, events = feed.outside, self.stats.events
        step = feed.line
        for line in lines:
            step(parse, line)
        old = feed.outside - outside
        if old:
            self.stats.stale += old
            self.metrics.old.inc(old)
        unparsed = self.parsers[src.name].unparsed - unparsed_before
        if unparsed:
            self.metrics.unparsed.inc(unparsed)
        if self.stats.events > events and feed.end is not None:
            self.metrics.last_line.set(feed.end)
        self._dirty = True

    def _event(self, ev: Event) -> None:
        self.stats.events += 1
        kind = ev.event
        m = self.metrics
        if kind == AUTH_FAILURE:
            m.auth_failures.inc()
            self.stats.auth_failures += 1
            self._auth_failure(ev)
        elif kind == DELIVERY:
            st = ev.fields.get("status")
            if st:
                m.message_status(st)
        elif kind in (CLIENT, PICKUP):
            m.message_status("received")
        elif kind == REJECT:
            m.message_status("rejected")
        elif kind == EXPIRED:
            m.message_status("expired")
        self.pipeline.event(ev)  # then the feed correlates it

    def _completed(self, msg: Message) -> None:
        key = (msg.host, msg.instance, msg.queue_id)
        if key in self._released:
            self._released.discard(key)
            return
        self.stats.messages += 1
        self.windows.message(msg)

    def _release_settled(self, final: bool = False) -> None:
        """Count messages still queued SETTLE seconds after their first line (see SETTLE);
        `final`: all of them, as `analyze` counts those open at the end of its input."""
        end = self.windows.end
        if end is None:
            return
        cutoff = float("inf") if final else end - SETTLE
        for msg in self.correlator.open.values():
            # Keyed as `_completed` looks them up (the correlator's own key is the queue ID
            # alone): a message released here and later swept or removed is counted once.
            key = (msg.host, msg.instance, msg.queue_id)
            if msg.first_seen <= cutoff and key not in self._released:
                self._released.add(key)
                self.stats.messages += 1
                self.windows.message(msg)
        for msg in self.correlator.sweep(end):
            self._completed(msg)
        if len(self._released) > len(self.correlator.open):
            self._released &= {(m.host, m.instance, m.queue_id) for m in self.correlator.open.values()}

    # ------------------------------------------------------------------ brute force
    def _auth_failure(self, ev: Event) -> None:
        """fail2ban's rule, without waiting for the detectors: `max_failures` failures from one
        address within `window` → ban it now, through the automatic response of auth_bruteforce
        (so `[respond] auth_bruteforce = "alert"` turns it off, and the allowlist holds)."""
        ip = ev.fields.get("client_ip")
        if not ip or ip == "unknown":
            return
        s = self.settings
        now = time.time()
        if ev.ts < now - s.bf_window:
            return  # an old failure (a backlog): nothing to stop any more
        n = self.bruteforce.failure(ip, ev.ts)
        if not self.bruteforce.reached(n) or self._banned_until.get(ip, 0.0) > now:
            return
        assert self.responder is not None
        self.bruteforce.reset(ip)
        if not self.responder.bans_enabled:
            return
        self._banned_until[ip] = now + max(s.bf_ban_for, 1.0)
        user = ev.fields.get("sasl_username")
        f = Finding("auth_bruteforce", ip, 50,
                    f"{n} failed SASL logins from {ip} within {_human(s.bf_window)}"
                    + (f" (last as {user!r})" if user else "") + ".", ev.ts, ev.ts)
        f.evidence = {"failures": n, "examples": [ev.raw]}
        done = self.responder.respond(f)
        banned = [d for d in done if d.action == "ban" and d.ok and d.detail != "already banned"
                  and not d.detail.startswith("already banned")]
        if not banned:
            for d in done:  # the respond package has logged why (allowlist, backend failure)
                log.debug("no ban of %s: %s", ip, d)
            return
        log.info("banned %s: %s", ip, f.summary)
        self.stats.bans.append(ip)
        self.metrics.bans.labels("bruteforce").inc()
        self._update_active()
        if s.alert_bans:
            self.dispatcher.submit(Alert(
                f"ban:{ip}", "ban", ip, "medium", f"banned {ip} for {_human(s.bf_ban_for)}",
                f"{f.summary}\n{banned[0]}\nLift it with `relayguard ban remove {ip}`.\n\n"
                f"Last line:\n  {ev.raw}",
                [{"command": f"relayguard ban remove {ip}", "why": "lift the ban"}],
                {"ip": ip, "failures": n, "response": [d.to_dict() for d in done]},
                reason="notice"), always=True)

    # ------------------------------------------------------------------ detection
    def detect(self, final: bool = False) -> list[Finding]:
        """Run the detectors of `analyze` on the window; alert what is new or worse.
        `final` (--once): the input ends here, count every message still open."""
        t0 = time.perf_counter()
        self._release_settled(final)
        self.pipeline.queue_depth(self.correlator)
        findings = self.pipeline.detect()
        self.stats.detections += 1
        self.stats.findings = findings
        active: dict[str, int] = {}
        for f in findings:
            active[f.kind] = active.get(f.kind, 0) + 1
            self._finding(f)
            if self.store is not None:  # what the dashboard shows as current findings
                self.store.save_finding(f.to_dict(), f.first_seen, f.last_seen)
        from ..detect import KINDS

        for k in KINDS:
            self.metrics.findings_active.labels(k).set(active.get(k, 0))
        self.metrics.detect_seconds.set(time.perf_counter() - t0)
        return findings

    def _finding(self, f: Finding, always: bool = False) -> None:
        reason = self.dedupe.check(f"{f.kind}:{f.subject}", f.severity)
        if reason is None:
            return
        self.metrics.finding(f.kind, f.severity)
        done = []
        if reason != "reminder" and self.responder is not None:
            done = self.responder.respond(f)
            if any(d.ok and d.action == "ban" for d in done):
                self.metrics.bans.labels("finding").inc()
            if done:
                self._update_active()
        alert = Alert.from_finding(f, reason)
        if done:
            alert.text += "\n\nDone automatically:\n" + "\n".join(f"  - {d}" for d in done)
            alert.details["responses"] = [d.to_dict() for d in done]
        self.dispatcher.submit(alert, always=always)

    # ------------------------------------------------------------------ queue
    def _queue_sample(self, sample: QueueSample) -> None:
        self.stats.queue = sample
        if sample.error:
            self.metrics.queue_polls.labels("error").inc()
            return
        self.metrics.queue_polls.labels("ok").inc()
        self.metrics.queue_sizes(sample.queues)
        change = self.queue_state.update(sample.total)
        if change == "surge":
            f = self._surge_finding(sample)
            # The admin chose the threshold: this alert goes out whatever its severity.
            self._finding(f, always=True)
        elif change == "recovered":
            s = self.settings
            self.dedupe.forget("queue_surge:queue")  # the next surge is a new incident
            self.dispatcher.submit(Alert(
                "queue_surge:queue", "queue_recovered", "queue", "info",
                f"queue back to normal: {sample.total} messages",
                f"The Postfix queue holds {sample.total} messages, below "
                f"{int(s.queue_threshold * s.queue_recover)} ({s.queue_recover:.0%} of the "
                f"threshold {s.queue_threshold}); it peaked at {self.queue_state.peak}.",
                details={"total": sample.total, "queues": sample.queues,
                         "peak": self.queue_state.peak, "threshold": s.queue_threshold},
                reason="notice"))

    def _surge_finding(self, sample: QueueSample) -> Finding:
        """The queue_surge finding of `analyze`, for the size `postqueue` reported."""
        f = queue_surge_detector.surge(sample.total, sample.ts, self.settings.queue_threshold)
        f.evidence["queues"] = dict(sample.queues)
        return f

    # ------------------------------------------------------------------ upkeep
    def expire(self) -> None:
        if self.responder is None:
            return
        try:
            expired = self.responder.expire()
        except Exception as exc:  # noqa: BLE001 — expiry must never stop the daemon
            log.error("ban expiry failed: %s", exc)
            return
        now = time.time()
        for ip in [ip for ip, t in self._banned_until.items() if t <= now]:
            del self._banned_until[ip]
        for b in expired:
            self._banned_until.pop(b.network, None)
        self.bruteforce.prune(now)
        self.dedupe.forget_older(now - max(self.settings.cooldown, self.settings.window) * 2)
        self._update_active()

    def _update_active(self) -> None:
        if self.responder is None:
            return
        try:
            bans, locks = self.responder.active()
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot count bans and locks: %s", exc)
            return
        self.metrics.bans_active.set(bans)
        self.metrics.locks_active.set(locks)

    def beat(self) -> None:
        """Tell `relayguard status` this daemon is alive (one upsert every few seconds)."""
        if self.store is None:
            return
        try:
            self.store.beat("watch", {"pid": os.getpid(), "interval": HEARTBEAT_INTERVAL,
                                      "sources": [src.name for src in self.sources]})
            self._beating = True
        except StateError as exc:
            log.warning("heartbeat: %s", exc)

    def checkpoint(self) -> None:
        """Save where every source stopped, with the brute-force counters, in one transaction."""
        assert self.checkpoints is not None
        now = time.time()
        cps = [src.checkpoint() for src in self.sources]
        self.checkpoints.save(cps, self.bruteforce.take_dirty(), now - self.settings.bf_window)
        self._dirty = False
        log.debug("checkpoint: %s", ", ".join(f"{c.source}@{c.offset}" if c.cursor is None
                                                else f"{c.source}@{c.cursor}" for c in cps))


def _human(sec: float) -> str:
    for unit, n in (("h", 3600), ("m", 60)):
        if sec >= n and sec % n == 0:
            return f"{int(sec // n)}{unit}"
    return f"{sec:g}s"
