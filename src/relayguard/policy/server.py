"""The asyncio policy server: many long-lived Postfix connections, one answer per request.

Robustness rules, in order of importance:
1. The server never dies from what a client sends. Malformed input (not name=value, NUL bytes,
   a request over `max_request_size` or `max_attributes`) is logged and that connection closed,
   as SMTPD_POLICY_README asks ("must not send a reply ... log a warning and disconnect").
2. It never breaks mail flow on its own failure: an exception while deciding, or a state store
   slower than `state_timeout` (or down), is logged and answered with DUNNO; with
   `fail_closed = true`, DEFER_IF_PERMIT. After a state-store failure the store is not asked
   again for a second (a circuit breaker), so a dead Redis costs each request nothing.
3. Connections idle longer than `idle_timeout` are closed (Postfix itself drops idle ones after
   smtpd_policy_service_max_idle, 300 s, so the default 600 s never races it); beyond
   `max_connections` new ones are refused.

The request path does no I/O besides the socket when counters are local (memory + SQLite
flushed in the background); bans and locks come from an in-memory snapshot that a background
thread reloads from the shared state every `refresh_interval`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import resource
import signal
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..state.counters import CounterStore, Outcome
from ..state.shared import SharedState
from .limits import Plan, Policy, PolicySettings, StateView
from .protocol import ProtocolError, RequestReader, parse_listen

log = logging.getLogger("relayguard.policy")

#: Answers waiting for a client that does not read (reading from it is paused well before).
MAX_WRITE_BACKLOG = 1024 * 1024
BREAKER_SECONDS = 1.0


class _Connection(asyncio.Protocol):
    """One client (one Postfix smtpd process, usually), answered in order."""

    __slots__ = ("busy", "last", "queue", "reader", "server", "transport")

    def __init__(self, server: PolicyServer) -> None:
        self.server = server
        s = server.settings
        self.reader = RequestReader(s.max_request_size, s.max_attributes)
        self.transport: asyncio.Transport | None = None
        self.last = time.monotonic()
        self.busy = False  # an answer is being computed asynchronously
        self.queue: deque[dict[bytes, bytes]] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        srv = self.server
        if len(srv.connections) >= srv.settings.max_connections:
            srv.gate("maxconn", "refusing a connection: %d open (max_connections)",
                     len(srv.connections))
            transport.abort()  # type: ignore[attr-defined]
            return
        srv.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        try:
            requests = self.reader.feed(data)
        except ProtocolError as exc:
            self.server.protocol_errors += 1
            self.server.gate("protocol", "closing connection from %s: %s", self._peer(), exc)
            self.abort()
            return
        except Exception:  # noqa: BLE001 - a bug in the reader costs one connection, no more
            self.server.protocol_errors += 1
            self.server.gate("reader", "closing connection from %s: reader failed",
                             self._peer(), exc_info=True)
            self.abort()
            return
        for req in requests:
            if self.busy:
                self.queue.append(req)
            else:
                self.server.dispatch(self, req)

    def write(self, data: bytes) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(data)
        if t.get_write_buffer_size() > MAX_WRITE_BACKLOG:
            self.server.gate("backlog", "closing connection from %s: it does not read answers",
                             self._peer())
            self.abort()

    # Flow control: a client that sends requests without reading the answers fills our write
    # buffer; stop reading from it (TCP then stalls the client) until it reads again. It
    # costs nothing meanwhile, and idle_timeout closes it if it never does.
    def pause_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def resume(self) -> None:
        """After an asynchronous answer: handle the requests that queued up meanwhile."""
        self.busy = False
        while self.queue and not self.busy:
            self.server.dispatch(self, self.queue.popleft())

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _peer(self) -> str:
        if self.transport is None:
            return "?"
        peer = self.transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            return f"{peer[0]}:{peer[1]}"
        return "unix socket"


class PolicyServer:
    """Listen, answer, keep the state fresh. `await start()`, then `await wait_closed()`."""

    def __init__(self, settings: PolicySettings, counters: CounterStore,
                 shared_factory: Callable[[], SharedState] | None = None,
                 listen: list[str] | None = None) -> None:
        self.settings = settings
        self.counters = counters
        self.policy = Policy(settings)
        self.shared_factory = shared_factory
        self.listen = list(listen or settings.listen)
        self.connections: set[_Connection] = set()
        self.servers: list[asyncio.AbstractServer] = []
        self.addresses: list[str] = []  # what we actually listen on (ports resolved)
        self.requests = 0
        self.failures = 0
        self.protocol_errors = 0
        self._breaker_until = 0.0
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        self._closed: asyncio.Event | None = None
        self._gates: dict[str, float] = {}
        self._unix_paths: list[Path] = []
        self._shared: SharedState | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._closed = asyncio.Event()
        raise_fd_limit(self.settings.max_connections + 64)
        for spec in self.listen:
            kind, where, port = parse_listen(spec)
            if kind == "unix":
                path = Path(where)
                _remove_stale_socket(path)
                server = await loop.create_unix_server(lambda: _Connection(self), str(path),
                                                       backlog=1024)
                os.chmod(path, self.settings.unix_mode)
                self._unix_paths.append(path)
                self.addresses.append(f"unix:{path}")
            else:
                server = await loop.create_server(lambda: _Connection(self), where, port,
                                                  backlog=1024, reuse_address=True)
                for sock in server.sockets:
                    host, real_port = sock.getsockname()[:2]
                    self.addresses.append(f"[{host}]:{real_port}" if ":" in host
                                          else f"{host}:{real_port}")
            self.servers.append(server)
        if self.shared_factory is not None:
            # The thread owns the state connection (SQLite connections belong to the thread
            # that opened them); wait for its first load so that bans apply from the first
            # request, but not forever: a slow store must not keep the server from starting.
            first = threading.Event()
            self._refresher = threading.Thread(target=self._refresh_loop, args=(first,),
                                               daemon=True, name="relayguard-policy-state")
            self._refresher.start()
            await asyncio.to_thread(first.wait, 5.0)
        self._tasks.append(loop.create_task(self._housekeeping()))
        log.info("policy server listening on %s (%d limits, %s, fail-%s)",
                 ", ".join(self.addresses), len(self.settings.limits),
                 type(self.counters).__name__, "closed" if self.settings.fail_closed else "open")

    async def wait_closed(self) -> None:
        assert self._closed is not None
        await self._closed.wait()

    async def close(self) -> None:
        """Stop listening, drop the connections, save the counters."""
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.abort()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._stop.set()
        for path in self._unix_paths:
            with contextlib.suppress(OSError):
                path.unlink()
        try:
            self.counters.close()
            aclose = getattr(self.counters, "aclose", None)
            if aclose is not None:
                await aclose()
        except Exception:  # noqa: BLE001 - closing must finish whatever happens
            log.exception("closing the counter store")
        if self._closed is not None:
            self._closed.set()

    # ------------------------------------------------------------------ requests
    def dispatch(self, conn: _Connection, req: dict[bytes, bytes]) -> None:
        """Answer `req` now, or start the asynchronous part (a Redis round trip)."""
        self.requests += 1
        try:
            now = time.time()
            plan = self.policy.plan(req, now)
            if plan.answer is not None:
                conn.write(plan.answer)
                return
            if not self.counters.is_async:
                conn.write(self.policy.conclude(plan, self.counters.apply(plan.checks, now), now))
                return
        except Exception:  # noqa: BLE001 - rule 2: fail open (or closed), never crash
            conn.write(self._failed("internal error while deciding", exc_info=True))
            return
        if time.monotonic() < self._breaker_until:
            conn.write(self._failed("state store unavailable (recent failure)", quiet=True))
            return
        # No coroutine, task or wait_for per request (each costs more than the decision): the
        # store hands back a future, a timer bounds the wait, a callback writes the answer.
        loop = asyncio.get_running_loop()
        submit = getattr(self.counters, "submit", None)
        try:
            fut: asyncio.Future[Outcome] = (
                submit(plan.checks) if submit is not None
                else asyncio.ensure_future(self.counters.apply_async(plan.checks)))
        except Exception:  # noqa: BLE001
            conn.write(self._failed("internal error while asking the state store", exc_info=True))
            return
        conn.busy = True
        timer = loop.call_later(self.settings.state_timeout, _expire, fut)
        fut.add_done_callback(functools.partial(self._answer_async, conn, plan, timer))

    def _answer_async(self, conn: _Connection, plan: Plan, timer: asyncio.TimerHandle,
                      fut: asyncio.Future[Outcome]) -> None:
        timer.cancel()
        try:
            if fut.cancelled():
                self._breaker_until = time.monotonic() + BREAKER_SECONDS
                conn.write(self._failed("state store timed out"))
                return
            exc = fut.exception()
            if exc is not None:
                self._breaker_until = time.monotonic() + BREAKER_SECONDS
                conn.write(self._failed(f"state store failed ({exc!r})"))
                return
            try:
                conn.write(self.policy.conclude(plan, fut.result()))
            except Exception:  # noqa: BLE001
                conn.write(self._failed("internal error while concluding", exc_info=True))
        finally:
            conn.resume()

    def _failed(self, why: str, exc_info: bool = False, quiet: bool = False) -> bytes:
        self.failures += 1
        action = "DEFER_IF_PERMIT" if self.settings.fail_closed else "DUNNO"
        if not quiet:
            self.gate("fail:" + why[:20], "%s: answering %s (fail-%s)", why, action,
                      "closed" if self.settings.fail_closed else "open", exc_info=exc_info,
                      level=logging.WARNING)
        return self.policy.fail_answer

    # ------------------------------------------------------------------ background
    async def _housekeeping(self) -> None:
        """Idle connections, counter flushes, forgetting empty counters."""
        s = self.settings
        tick = max(0.05, min(1.0, s.idle_timeout / 4, s.flush_interval))
        next_flush = time.monotonic() + s.flush_interval
        while True:
            await asyncio.sleep(tick)
            mono = time.monotonic()
            for conn in [c for c in self.connections if mono - c.last > s.idle_timeout]:
                if not conn.busy:
                    conn.abort()
            if mono >= next_flush:
                next_flush = mono + s.flush_interval
                try:
                    self.counters.flush()
                    sweep = getattr(self.counters, "sweep", None)
                    if sweep is not None:
                        sweep(time.time())
                except Exception:  # noqa: BLE001
                    log.exception("counter flush failed")
                if self.policy.suppressed:
                    log.info("%d repeated decisions not logged in the last %gs",
                             self.policy.suppressed, s.flush_interval)
                    self.policy.suppressed = 0

    def _refresh_loop(self, first: threading.Event) -> None:
        """Reload bans and locks every refresh_interval; keep the last good copy on failure."""
        failing = False
        interval = 0.0
        while not self._stop.wait(interval):
            interval = self.settings.refresh_interval
            try:
                if self._shared is None:
                    self._shared = self.shared_factory()  # type: ignore[misc]
                self.policy.view = StateView.load(self._shared)  # one atomic swap
                if failing:
                    log.info("bans and locks readable again")
                failing = False
            except Exception as exc:  # noqa: BLE001
                if not failing:
                    log.warning("cannot reload bans and locks (%s); enforcing the last copy", exc)
                failing = True
                with contextlib.suppress(Exception):
                    if self._shared is not None:
                        self._shared.close()
                self._shared = None
            first.set()
        with contextlib.suppress(Exception):
            if self._shared is not None:
                self._shared.close()

    def gate(self, key: str, fmt: str, *args: Any, exc_info: bool = False,
             level: int = logging.WARNING) -> None:
        """Log at most once per 10 s per kind of event (a storm of garbage is one line)."""
        now = time.monotonic()
        if now - self._gates.get(key, -1e9) < 10:
            return
        self._gates[key] = now
        log.log(level, fmt, *args, exc_info=exc_info)


def _expire(fut: asyncio.Future[Any]) -> None:
    """state_timeout elapsed: give up on the store's answer (the request fails open/closed)."""
    if not fut.done():
        fut.cancel()


def _remove_stale_socket(path: Path) -> None:
    """A socket file left by a previous run blocks bind(); anything else is not ours to delete."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket")
    path.unlink()


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft limit on open files toward `wanted` (up to the hard limit); the new soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
    return soft


def run(settings: PolicySettings, counters: CounterStore,
        shared_factory: Callable[[], SharedState] | None,
        listen: list[str] | None = None, ready: Callable[[PolicyServer], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT. Uses uvloop when it is installed (faster), unless
    $RELAYGUARD_EVENT_LOOP is "asyncio"."""

    async def main() -> None:
        server = PolicyServer(settings, counters, shared_factory, listen)
        await server.start()
        # Everything loaded so far (modules, configuration) lives forever: keep it out of the
        # collector's full passes, which otherwise stall requests for milliseconds.
        gc.freeze()
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stopping.set)
        if ready is not None:
            ready(server)
        await stopping.wait()
        log.info("stopping: %d requests answered, %d fail-%s answers, %d bad connections",
                 server.requests, server.failures,
                 "closed" if settings.fail_closed else "open", server.protocol_errors)
        await server.close()

    factory = None
    if os.environ.get("RELAYGUARD_EVENT_LOOP", "").lower() != "asyncio":
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            pass
    # Latency: a background thread (counter flush, state reload) may hold the GIL for the
    # whole switch interval (5 ms by default) while a request waits; 0.5 ms bounds that.
    sys.setswitchinterval(0.0005)
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
