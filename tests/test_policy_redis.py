"""A fleet: bans, locks and rate counters in a real redis-server started by the test.

Two `relayguard policy serve` processes on different ports, sharing one Redis, enforce one
combined limit; a Redis that goes away makes them fail open (or closed, when configured).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relayguard.state.counters import Check, over_name
from relayguard.state.shared import Ban, Lock, open_shared
from test_policy_server import (
    LIMIT3,
    RELAYGUARD,
    PolicyClient,
    ServerThread,
    free_tcp_port,
    policy_settings,
    send_message,
    wait_answer,
    wait_listening,
)

redis = pytest.importorskip("redis")


class RedisServer:
    """redis-server on a free loopback port, no persistence, in a temporary directory."""

    def __init__(self, tmp: Path) -> None:
        exe = shutil.which("redis-server")
        if not exe:
            pytest.skip("redis-server not installed (apt-get install redis-server)")
        self.port = free_tcp_port()
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port, self.proc)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.client().flushdb()
    return redis_server.url


# ------------------------------------------------------------------------------ shared state
def test_bans_and_locks_in_redis(redis_url: str) -> None:
    shared = open_shared({"state": {"url": redis_url}})
    assert type(shared).__name__ == "RedisShared"
    now = time.time()
    shared.add_ban(Ban("203.0.113.7/32", "brute force", now, now + 60, source="watch"))
    shared.add_ban(Ban("198.51.100.9/24", "spam net", now, None))
    shared.add_ban(Ban("192.0.2.1", "old", now - 100, now - 1))
    assert {b.network for b in shared.bans()} == {"203.0.113.7", "198.51.100.0/24"}
    assert shared.banned("203.0.113.7").reason == "brute force"  # type: ignore[union-attr]
    assert shared.banned("198.51.100.200").network == "198.51.100.0/24"  # type: ignore[union-attr]
    assert shared.banned("192.0.2.1") is None  # expired, and cleaned up
    assert "192.0.2.1" not in redis.Redis.from_url(redis_url).hkeys("relayguard:bans")
    assert shared.remove_ban("203.0.113.7").reason == "brute force"  # type: ignore[union-attr]
    assert shared.banned("203.0.113.7", now) is None
    shared.add_lock(Lock("admin@example.org", "password guessed", now))
    assert shared.locked("admin@example.org").reason == "password guessed"  # type: ignore[union-attr]
    assert [lk.user for lk in shared.locks()] == ["admin@example.org"]
    assert shared.remove_lock("admin@example.org") is not None
    assert shared.locked("admin@example.org") is None
    # Damaged entries written by someone else are ignored, never enforced.
    redis.Redis.from_url(redis_url).hset("relayguard:bans", "10.0.0.1", "{not json")
    assert shared.banned("10.0.0.1") is None
    shared.close()


def test_redis_counters_are_atomic_and_slide(redis_url: str) -> None:
    from relayguard.state.redis import RedisCounters, read_redis_usage

    async def run() -> list[bool]:
        rc = RedisCounters(redis_url)
        c = Check("sasl_username:alice|messages|2", 2, 3, 1, 1, True)
        # 10 concurrent requests: exactly 3 fit, whatever the interleaving.
        outs = await asyncio.gather(*(rc.apply_async([c]) for _ in range(10)))
        await rc.aclose()
        return [o.allowed for o in outs]

    assert sorted(asyncio.run(run())) == [False] * 7 + [True] * 3
    usage = read_redis_usage(redis_url)
    assert usage["sasl_username:alice|messages|2"] == 3
    assert usage[over_name("sasl_username:alice|messages|2")] == 7
    time.sleep(2.05)  # a 2 s window forgets within 1-2 s (1-second sub-buckets)
    assert "sasl_username:alice|messages|2" not in read_redis_usage(redis_url)


# ------------------------------------------------------------------------------ a fleet
FLEET_CONFIG = """
[state]
url = "{url}"
[policy]
refresh_interval = "0.2s"
state_timeout = "500ms"
[[policy.limits]]
key = "sasl_username"
max_messages = 5
window = "1m"
message = "Fleet limit reached"
"""


def start_server(tmp: Path, name: str, config: str) -> tuple[subprocess.Popen, int]:
    port = free_tcp_port()
    cfg = tmp / f"{name}.toml"
    cfg.write_text(config)
    proc = subprocess.Popen([RELAYGUARD, "policy", "serve", "--listen", f"127.0.0.1:{port}",
                             "--config", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    wait_listening(port, proc)
    return proc, port


def stop_server(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    return out


def test_two_servers_one_redis_one_combined_limit(redis_url: str, tmp_path: Path) -> None:
    config = FLEET_CONFIG.format(url=redis_url)
    (a, port_a), (b, port_b) = start_server(tmp_path, "a", config), start_server(tmp_path, "b", config)
    try:
        mx1, mx2 = PolicyClient(f"127.0.0.1:{port_a}"), PolicyClient(f"127.0.0.1:{port_b}")
        answers = []
        for i in range(5):  # alternating between the two MTAs' policy servers
            answers += send_message(mx1 if i % 2 else mx2, "alice@example.org", f"m{i}")
        assert answers == ["DUNNO"] * 10
        # The sixth message is refused by either server: the limit is the fleet's.
        assert mx1.ask(user="alice@example.org") == "DEFER_IF_PERMIT Fleet limit reached"
        assert mx2.ask(user="alice@example.org") == "DEFER_IF_PERMIT Fleet limit reached"
        assert mx1.ask(user="bob@example.org") == "DUNNO"
        # A ban and a lock decided anywhere apply on both within refresh_interval.
        shared = open_shared({"state": {"url": redis_url}})
        shared.add_ban(Ban("203.0.113.66", "seen by watch on mx3", time.time(), None))
        shared.add_lock(Lock("bob@example.org", "compromised", time.time()))
        shared.close()
        for port in (port_a, port_b):
            wait_answer(f"127.0.0.1:{port}", "REJECT", user="bob@example.org")
            wait_answer(f"127.0.0.1:{port}", "REJECT", client="203.0.113.66", user="")
        for c in (mx1, mx2):
            assert c.ask(client="203.0.113.66", user="").startswith("REJECT Access denied")
            assert c.ask(user="bob@example.org").startswith("REJECT This account is locked")
        # The report reads the fleet's counters from Redis.
        r = subprocess.run([RELAYGUARD, "policy", "report", "--format", "json", "--config",
                            str(tmp_path / "a.toml")], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["store"] == redis_url
        assert [(e["value"], e["used"], e["over"]) for e in doc["entries"]] == [
            ("alice@example.org", 5, 2)]
    finally:
        stop_server(a)
        stop_server(b)


@pytest.mark.parametrize("fail_closed", [False, True])
def test_redis_down_fails_open_or_closed(tmp_path: Path, fail_closed: bool) -> None:
    own = RedisServer(tmp_path)  # this one gets killed
    config = FLEET_CONFIG.format(url=own.url).replace("[policy]\n", f"[policy]\nfail_closed = {str(fail_closed).lower()}\n")
    proc, port = start_server(tmp_path, "s", config)
    try:
        c = PolicyClient(f"127.0.0.1:{port}")
        assert send_message(c, "alice@example.org", "m0") == ["DUNNO", "DUNNO"]
        own.proc.kill()
        own.proc.wait(10)
        t = time.perf_counter()
        answer = c.ask(user="alice@example.org")
        assert time.perf_counter() - t < 1.0  # at most state_timeout, never Postfix's 100 s
        if fail_closed:
            assert answer == "DEFER_IF_PERMIT Policy service temporarily unavailable, try again later"
        else:
            assert answer == "DUNNO"
        assert c.ask(client="203.0.113.1", user="") == "DUNNO"  # no limit applies: no Redis needed
    finally:
        out = stop_server(proc)
        own.stop()
    assert "state store" in out and ("fail-closed" if fail_closed else "fail-open") in out


def test_redis_counters_in_process(redis_url: str) -> None:
    """The same fleet semantics with two in-process servers (no subprocess start-up)."""
    from relayguard.state.redis import RedisCounters, RedisShared

    s = policy_settings(LIMIT3)
    with ServerThread(s, RedisCounters(redis_url), lambda: RedisShared(redis_url)) as one, \
            ServerThread(s, RedisCounters(redis_url), lambda: RedisShared(redis_url)) as two:
        c1, c2 = PolicyClient(one.address), PolicyClient(two.address)
        assert send_message(c1, "carol", "1") + send_message(c2, "carol", "2") == ["DUNNO"] * 4
        assert send_message(c1, "carol", "3", rcpts=2) == ["DUNNO"] * 3
        assert c2.ask(user="carol").startswith("DEFER_IF_PERMIT")
        assert socket.gethostname()  # both servers answered from one Redis
