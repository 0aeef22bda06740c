"""The policy server over real sockets: TCP and unix, many connections, hostile clients,
fail-open and fail-closed, bans reloaded while serving, and the `relayguard policy` CLI.

`ServerThread`, `PolicyClient` and `policy_request` are reused by the Redis and Postfix tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relayguard.policy.limits import PolicySettings
from relayguard.policy.server import PolicyServer, parse_listen, raise_fd_limit
from relayguard.state.counters import Check, MemoryCounters, Outcome, read_sqlite_usage
from relayguard.state.shared import Ban, Lock, SqliteShared
from relayguard.state.store import Store

RELAYGUARD = str(Path(sys.executable).with_name("relayguard"))


def policy_request(state: str = "RCPT", user: str = "alice@example.org",
                   client: str = "192.0.2.7", rcpts: int = 0, instance: str = "1.2.3",
                   **extra: str) -> bytes:
    attrs = {"request": "smtpd_access_policy", "protocol_state": state,
             "protocol_name": "ESMTP", "client_address": client, "client_name": "unknown",
             "sasl_method": "LOGIN" if user else "", "sasl_username": user,
             "sender": user or "someone@example.net", "recipient": "rcpt@example.com",
             "recipient_count": str(rcpts), "instance": instance, "size": "0", **extra}
    return ("".join(f"{k}={v}\n" for k, v in attrs.items()) + "\n").encode()


class PolicyClient:
    """A blocking client speaking the protocol, as Postfix's smtpd does."""

    def __init__(self, address: str, timeout: float = 5.0) -> None:
        kind, where, port = parse_listen(address)
        if kind == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(where)
        else:
            self.sock = socket.create_connection((where.strip("[]"), port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def raw(self, data: bytes) -> bytes:
        """Send, then read one answer block; b"" when the server closed the connection."""
        self.sock.sendall(data)
        while b"\n\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                return b""
            self.buf += chunk
        block, _, self.buf = self.buf.partition(b"\n\n")
        return block

    def ask(self, **kw: Any) -> str:
        """The action and its text, e.g. "DUNNO" or "DEFER_IF_PERMIT Rate limit exceeded"."""
        return self.raw(policy_request(**kw)).decode().removeprefix("action=")

    def closed(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


class ServerThread:
    """A PolicyServer on its own event loop in a thread (port 0: a free one)."""

    def __init__(self, settings: PolicySettings, counters: Any = None,
                 shared_factory: Callable[[], Any] | None = None,
                 listen: list[str] | None = None) -> None:
        self.server = PolicyServer(settings, counters or MemoryCounters(), shared_factory,
                                   listen or ["127.0.0.1:0"])
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> ServerThread:
        self.thread.start()
        self._ready.wait(15)
        if self._error is not None:
            raise self._error
        return self

    @property
    def address(self) -> str:
        return self.server.addresses[0]

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's loop (its objects are not thread-safe) and return."""
        async def wrap() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_answer(address: str, prefix: str, timeout: float = 10.0, **request: Any) -> str:
    """Ask until the answer starts with `prefix` (bans and locks are reloaded periodically)."""
    deadline = time.monotonic() + timeout
    c = PolicyClient(address)
    try:
        while True:
            got = c.ask(**request)
            if got.startswith(prefix) or time.monotonic() > deadline:
                return got
            time.sleep(0.05)
    finally:
        c.close()


def policy_settings(*limits: dict, **policy: Any) -> PolicySettings:
    return PolicySettings.from_config({"policy": {"limits": list(limits), **policy}})


LIMIT3 = {"key": "sasl_username", "max_messages": 3, "window": "1m",
          "message": "Rate limit exceeded, try later"}


def send_message(c: PolicyClient, user: str, instance: str, rcpts: int = 1) -> list[str]:
    out = [c.ask(state="RCPT", user=user, instance=instance) for _ in range(rcpts)]
    out.append(c.ask(state="END-OF-MESSAGE", user=user, instance=instance, rcpts=rcpts))
    return out


# ------------------------------------------------------------------------------ basics
def test_listen_address_forms() -> None:
    assert parse_listen("127.0.0.1:10031") == ("tcp", "127.0.0.1", 10031)
    assert parse_listen("inet:127.0.0.1:10031") == ("tcp", "127.0.0.1", 10031)
    assert parse_listen("[::1]:10031") == ("tcp", "::1", 10031)
    assert parse_listen("10031") == ("tcp", "127.0.0.1", 10031)
    assert parse_listen("unix:/run/rg/policy.sock") == ("unix", "/run/rg/policy.sock", 0)
    for bad in ("localhost", "host:port", "unix:", "1.2.3.4:70000"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_tcp_and_unix_socket_share_one_limit(tmp_path: Path) -> None:
    sock = tmp_path / "run" / "policy.sock"
    with ServerThread(policy_settings(LIMIT3, unix_mode="0660"),
                      listen=["127.0.0.1:0", f"unix:{sock}"]) as srv:
        assert srv.server.addresses[1] == f"unix:{sock}"
        assert oct(sock.stat().st_mode & 0o777) == "0o660"
        tcp, unix = PolicyClient(srv.address), PolicyClient(f"unix:{sock}")
        assert send_message(tcp, "alice", "m1") == ["DUNNO", "DUNNO"]
        assert send_message(unix, "alice", "m2") == ["DUNNO", "DUNNO"]
        assert send_message(tcp, "alice", "m3") == ["DUNNO", "DUNNO"]
        assert unix.ask(state="RCPT", user="alice") == "DEFER_IF_PERMIT Rate limit exceeded, try later"
    assert not sock.exists()  # removed at close


def test_many_long_lived_connections_interleaved() -> None:
    with ServerThread(policy_settings(LIMIT3)) as srv:
        clients = [PolicyClient(srv.address) for _ in range(50)]
        for round_ in range(3):
            for i, c in enumerate(clients):
                assert send_message(c, f"user{i}", f"{i}.{round_}") == ["DUNNO", "DUNNO"]
        assert all(c.ask(user=f"user{i}").startswith("DEFER_IF_PERMIT")
                   for i, c in enumerate(clients))
        assert srv.server.requests == 50 * 7


def test_pipelined_requests_are_answered_in_order() -> None:
    with ServerThread(policy_settings(LIMIT3)) as srv:
        c = PolicyClient(srv.address)
        burst = b"".join(policy_request("END-OF-MESSAGE", user="p", rcpts=1, instance=str(i))
                         for i in range(5))
        c.sock.sendall(burst)
        answers = [c.raw(b"") for _ in range(5)]
        assert answers == [b"action=DUNNO"] * 3 + [
            b"action=DEFER_IF_PERMIT Rate limit exceeded, try later"] * 2


# ------------------------------------------------------------------------------ hostile input
def test_garbage_huge_requests_and_1000_idle_connections_leave_it_answering() -> None:
    raise_fd_limit(4096)  # this process holds the 1,000 client sockets
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2200:
        pytest.skip(f"cannot open 1,000 connections with RLIMIT_NOFILE {soft}")
    with ServerThread(policy_settings(LIMIT3)) as srv:
        good = PolicyClient(srv.address)
        assert good.ask() == "DUNNO"
        rng = __import__("random").Random(7)
        hostile = [
            b"GET / HTTP/1.1\r\nHost: policy\r\n\r\n",
            b"\x00\x01\x02\xff" * 50 + b"\n\n",
            bytes(rng.randrange(256) for _ in range(5000)) + b"\n\n",
            b"request=smtpd_access_policy\nno equals sign here\n\n",
            b"request=smtpd_access_policy\n" + b"a=b\n" * 500 + b"\n",  # too many attributes
            b"sender=" + b"x" * 100_000,  # huge, never terminated
            b"sender=" + b"x" * 1_000_000 + b"\n\n",  # 1 MB request
        ]
        for data in hostile:
            c = PolicyClient(srv.address)
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                if c.raw(data) == b"":  # closed without an answer, as the protocol asks
                    raise ConnectionResetError
            c.close()
        for _ in range(100):  # random bytes in random pieces, on one connection each
            c = PolicyClient(srv.address)
            try:
                for _ in range(rng.randrange(1, 5)):
                    c.sock.sendall(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
            except OSError:
                pass
            c.close()
        idle = []
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", int(srv.address.rsplit(":", 1)[1])))
            idle.append(s)
        for s in idle[::10]:
            s.sendall(b"request=smtpd_access_policy\nprotocol_state=RCPT\n")  # half a request
        deadline = time.monotonic() + 10
        while len(srv.server.connections) < 1001 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(srv.server.connections) >= 1001
        t = time.perf_counter()
        assert good.ask() == "DUNNO"  # the connection opened first still works…
        fresh = PolicyClient(srv.address)  # …and so does a new one
        assert send_message(fresh, "bob", "b1") == ["DUNNO", "DUNNO"]
        assert time.perf_counter() - t < 1.0
        assert srv.server.protocol_errors >= len(hostile)
        for s in idle:
            s.close()
        srv.call(lambda: None)  # the server is alive and its loop responsive


def test_idle_connections_are_closed_and_max_connections_enforced() -> None:
    with ServerThread(policy_settings(idle_timeout="0.3s", max_connections=5)) as srv:
        clients = [PolicyClient(srv.address) for _ in range(5)]
        assert clients[0].ask() == "DUNNO"
        extra = PolicyClient(srv.address)
        assert extra.closed(3)  # over max_connections: waits for a slot, then idles out too
        assert all(c.closed(3) for c in clients)  # idle past 0.3 s: closed
        again = PolicyClient(srv.address)
        assert again.ask() == "DUNNO"


def test_client_that_never_reads_is_paused_then_dropped() -> None:
    with ServerThread(policy_settings(idle_timeout="1s")) as srv:
        c = PolicyClient(srv.address)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sock.settimeout(1)
        burst = policy_request() * 500
        with pytest.raises(OSError):  # stalls (TCP back-pressure), or is closed
            for _ in range(2000):  # up to ~200 MB of requests, answers never read
                c.sock.sendall(burst)
        assert PolicyClient(srv.address).ask() == "DUNNO"  # others are served meanwhile
        deadline = time.monotonic() + 5
        while len(srv.server.connections) > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(srv.server.connections) == 0  # dropped after idle_timeout


# ------------------------------------------------------------------------------ fail-open
class BrokenCounters(MemoryCounters):
    def apply(self, checks: Any, now: float) -> Outcome:
        raise RuntimeError("disk on fire")


class SlowCounters(MemoryCounters):
    """An asynchronous store (like Redis) that takes `delay` seconds to answer."""

    is_async = True

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.calls = 0

    async def apply_async(self, checks: list[Check]) -> Outcome:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return self.apply(checks, time.time())


@pytest.mark.parametrize("fail_closed, expected", [
    (False, "DUNNO"),
    (True, "DEFER_IF_PERMIT Policy service temporarily unavailable, try again later"),
])
def test_internal_error_fails_open_or_closed(fail_closed: bool, expected: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    with ServerThread(policy_settings(LIMIT3, fail_closed=fail_closed),
                      counters=BrokenCounters()) as srv:
        c = PolicyClient(srv.address)
        with caplog.at_level("WARNING", logger="relayguard.policy"):
            assert c.ask() == expected
            assert c.ask() == expected  # same connection, still served
        assert srv.server.failures == 2
    assert any("internal error" in r.getMessage() and "disk on fire" in (r.exc_text or "")
               for r in caplog.records)


def test_bug_in_decision_code_fails_open(monkeypatch: pytest.MonkeyPatch) -> None:
    with ServerThread(policy_settings(LIMIT3)) as srv:
        monkeypatch.setattr(srv.server.policy, "plan", lambda *a: 1 / 0)
        assert PolicyClient(srv.address).ask() == "DUNNO"


@pytest.mark.parametrize("fail_closed", [False, True])
def test_slow_state_store_times_out_then_circuit_breaks(fail_closed: bool) -> None:
    counters = SlowCounters(delay=2.0)
    with ServerThread(policy_settings(LIMIT3, state_timeout="100ms", fail_closed=fail_closed),
                      counters=counters) as srv:
        c = PolicyClient(srv.address)
        t = time.perf_counter()
        first = c.ask()
        assert time.perf_counter() - t < 1.0  # answered at the timeout, not after 2 s
        assert first.startswith("DEFER_IF_PERMIT" if fail_closed else "DUNNO")
        t = time.perf_counter()
        assert c.ask() == first  # breaker open: the store is not even asked
        assert time.perf_counter() - t < 0.5 and counters.calls == 1
        time.sleep(1.1)
        counters.delay = 0
        assert c.ask() == "DUNNO"  # store healthy again: real decisions resume
        assert counters.calls == 2


def test_async_store_answers_in_order_on_one_connection() -> None:
    with ServerThread(policy_settings(LIMIT3), counters=SlowCounters(0.01)) as srv:
        c = PolicyClient(srv.address)
        c.sock.sendall(b"".join(policy_request("END-OF-MESSAGE", user="q", rcpts=1,
                                               instance=str(i)) for i in range(5)))
        assert [c.raw(b"")[7:12] for _ in range(5)] == [b"DUNNO"] * 3 + [b"DEFER"] * 2


# ------------------------------------------------------------------------------ shared state
def test_bans_and_locks_from_the_state_database_apply_while_serving(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    writer = SqliteShared(Store(db))
    writer.add_ban(Ban("203.0.113.5", "brute force", time.time(), None))

    def factory() -> SqliteShared:
        return SqliteShared(Store(db))

    with ServerThread(policy_settings(refresh_interval="0.1s"), shared_factory=factory) as srv:
        c = PolicyClient(srv.address)
        # Loaded before the first request.
        assert c.ask(client="203.0.113.5", user="").startswith("REJECT Access denied")
        assert c.ask(user="mallory@example.org") == "DUNNO"
        writer.add_lock(Lock("mallory@example.org", "compromised", time.time(), None))
        writer.add_ban(Ban("198.51.100.0/24", "spam", time.time(), time.time() + 60))
        writer.remove_ban("203.0.113.5")
        deadline = time.monotonic() + 5
        while c.ask(user="mallory@example.org") == "DUNNO" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.ask(user="mallory@example.org").startswith("REJECT This account is locked")
        assert c.ask(client="198.51.100.200", user="").startswith("REJECT")
        assert c.ask(client="203.0.113.5", user="") == "DUNNO"
    writer.close()


def test_unreadable_state_fails_open(tmp_path: Path) -> None:
    def factory() -> Any:
        raise OSError("no database here")

    with ServerThread(policy_settings(LIMIT3, refresh_interval="0.1s"),
                      shared_factory=factory) as srv:
        assert PolicyClient(srv.address).ask() == "DUNNO"


# ------------------------------------------------------------------------------ the CLI
def start_cli(tmp_path: Path, config: str, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_tcp_port()
    cfg = tmp_path / "relayguard.toml"
    cfg.write_text(config)
    proc = subprocess.Popen([RELAYGUARD, "policy", "serve", "--listen", f"127.0.0.1:{port}",
                             "--config", str(cfg), "--state", str(tmp_path / "state.db"),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_listening(port, proc)
    return proc, port


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {proc.stdout.read()}")  # type: ignore[union-attr]
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


CLI_CONFIG = """
[policy]
flush_interval = "0.2s"
[[policy.limits]]
key = "sasl_username"
max_messages = 3
window = "1h"
message = "Rate limit exceeded, try later"
"""


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    proc, port = start_cli(tmp_path, CLI_CONFIG)
    yield proc, port
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_cli_serve_counts_survive_restart_and_report(tmp_path: Path,
                                                     cli_server: tuple[subprocess.Popen, int]) -> None:
    proc, port = cli_server
    c = PolicyClient(f"127.0.0.1:{port}")
    for i in range(3):
        assert send_message(c, "alice@example.org", f"a{i}") == ["DUNNO", "DUNNO"]
    assert send_message(c, "bob@example.org", "b0") == ["DUNNO", "DUNNO"]
    assert c.ask(user="alice@example.org").startswith("DEFER_IF_PERMIT")
    c.close()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert "stopping: 9 requests answered" in out
    # Restarted: alice is still over her hourly limit, bob has room.
    proc2, port2 = start_cli(tmp_path, CLI_CONFIG)
    try:
        c = PolicyClient(f"127.0.0.1:{port2}")
        assert c.ask(user="alice@example.org").startswith("DEFER_IF_PERMIT")
        assert c.ask(user="bob@example.org") == "DUNNO"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the server flushes every 0.2 s
            with sqlite3.connect(tmp_path / "state.db") as db:
                over = read_sqlite_usage(db).get("sasl_username:alice@example.org|over-messages|3600")
            if over == 2:
                break
            time.sleep(0.1)
        r = subprocess.run([RELAYGUARD, "policy", "report", "--format", "json", "--config",
                            str(tmp_path / "relayguard.toml"), "--state",
                            str(tmp_path / "state.db")], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert [(e["value"], e["status"], e["used"], e["over"]) for e in doc["entries"]] == [
            ("alice@example.org", "over", 3, 2)]
        text = subprocess.run([RELAYGUARD, "policy", "report", "--all", "--config",
                               str(tmp_path / "relayguard.toml"), "--state",
                               str(tmp_path / "state.db")], capture_output=True, text=True,
                              timeout=30).stdout
        assert "alice@example.org" in text and "bob@example.org" in text
    finally:
        proc2.send_signal(signal.SIGTERM)
        proc2.wait(15)


def test_cli_rejects_bad_configuration(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[policy.limits]]\nkey = "sasl_username"\nmax_messages = 3\n')
    r = subprocess.run([RELAYGUARD, "policy", "serve", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "window is required" in r.stderr
    r = subprocess.run([RELAYGUARD, "policy", "serve", "--listen", "nowhere", "--config",
                        str(cfg.with_name("none.toml"))], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "no such file" in r.stderr
    good = tmp_path / "good.toml"
    good.write_text("")
    r = subprocess.run([RELAYGUARD, "policy", "serve", "--listen", "nowhere", "--config",
                        str(good)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "bad listen address" in r.stderr


def test_cli_report_without_limits_or_counters(tmp_path: Path) -> None:
    cfg = tmp_path / "rg.toml"
    cfg.write_text("")
    r = subprocess.run([RELAYGUARD, "policy", "report", "--config", str(cfg), "--state",
                        str(tmp_path / "none.db")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "No rate limits configured" in r.stdout
    assert not (tmp_path / "none.db").exists()  # a report creates nothing


if os.environ.get("RELAYGUARD_POLICY_SERVER_SMOKE"):  # pragma: no cover - manual use
    print(ServerThread(policy_settings(LIMIT3)).start().address)
