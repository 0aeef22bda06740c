"""Redis for a fleet: the bans and locks every MTA enforces, and rate counters they share.

Keys (all under one prefix, `relayguard:` by default, so a Redis can be shared with others):

    relayguard:bans            hash  network -> JSON {reason, since, expires, backend, source}
    relayguard:locks           hash  user    -> JSON {reason, since, expires, source}
    relayguard:ctr:<counter>   hash  sub-bucket index -> count; expires with its window

Bans and locks carry their expiry in the value and every read filters on it (and deletes what
has expired), so nothing depends on a cleaner having run. Counters follow the sliding window of
`state.counters` and are updated by one Lua script per request: the read of every window, the
decision and the increments happen atomically, whichever server of the fleet asks, with time
taken from the Redis server (`TIME`) so the machines' clocks need not agree.

One Redis server (or a Sentinel-managed primary). Redis Cluster is not supported: the script
touches the counters of several keys (user, address, sender) that would live in other slots.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .counters import Check, Outcome, bucket_count, bucket_width, over_name, parse_counter_name
from .records import Ban, Lock, covers, normalise_network

__all__ = ["DEFAULT_PREFIX", "RedisCounters", "RedisShared", "safe_url"]

DEFAULT_PREFIX = "relayguard:"

# One call decides a batch of requests (every request the server received while the previous
# call was in flight), each request all-or-nothing as in state.counters.
# KEYS: for each check of each request, its counter then its "over" counter.
# ARGV: the number of requests; then per request the number of its checks k, followed by 7
# numbers per check: window, sub-bucket width (s), sub-buckets, limit, need, add, blocking.
# Returns, per request: allowed (0/1) then each check's usage.
_APPLY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
local a = 2
local key = 1
for r = 1, tonumber(ARGV[1]) do
  local k = tonumber(ARGV[a])
  a = a + 1
  local usages = {}
  local allowed = 1
  for i = 0, k - 1 do
    local b = a + i * 7
    local width = tonumber(ARGV[b + 1])
    local nb = tonumber(ARGV[b + 2])
    local limit = tonumber(ARGV[b + 3])
    local need = tonumber(ARGV[b + 4])
    local cur = math.floor(now / width)
    local oldest = cur - nb + 1
    local ctr = KEYS[key + 2 * i]
    local h = redis.call('HGETALL', ctr)
    local sum = 0
    for j = 1, #h, 2 do
      if tonumber(h[j]) < oldest then
        redis.call('HDEL', ctr, h[j])
      else
        sum = sum + tonumber(h[j + 1])
      end
    end
    usages[i + 1] = sum
    if need > 0 and sum + need > limit then
      local over = KEYS[key + 2 * i + 1]
      redis.call('HINCRBY', over, cur, 1)
      redis.call('EXPIRE', over, width * (nb + 1))
      local oh = redis.call('HKEYS', over)
      for j = 1, #oh do
        if tonumber(oh[j]) < oldest then redis.call('HDEL', over, oh[j]) end
      end
      if tonumber(ARGV[b + 6]) == 1 then allowed = 0 end
    end
  end
  if allowed == 1 then
    for i = 0, k - 1 do
      local b = a + i * 7
      local add = tonumber(ARGV[b + 5])
      if add > 0 then
        local width = tonumber(ARGV[b + 1])
        local ctr = KEYS[key + 2 * i]
        redis.call('HINCRBY', ctr, math.floor(now / width), add)
        redis.call('EXPIRE', ctr, width * (tonumber(ARGV[b + 2]) + 1))
      end
    end
  end
  out[#out + 1] = allowed
  for i = 1, k do out[#out + 1] = usages[i] end
  a = a + 7 * k
  key = key + 2 * k
end
return out
"""


def safe_url(url: str) -> str:
    """The URL without its password, for logs and reports."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "redis://?"
    if parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}"
    else:
        netloc = f":***@{netloc}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _client(url: str, timeout: float) -> Any:
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - redis is a dependency
        raise RuntimeError("the redis package is needed for [state] url: pip install redis") from exc
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                decode_responses=True)


class RedisShared:
    """`SharedState` in Redis: the same bans and locks for every machine of the fleet."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX, timeout: float = 2.0) -> None:
        self.url = url
        self.prefix = prefix
        self.r = _client(url, timeout)
        self._bans = prefix + "bans"
        self._locks = prefix + "locks"

    # ------------------------------------------------------------------ bans
    def add_ban(self, ban: Ban) -> Ban:
        ban.network = normalise_network(ban.network)
        self.r.hset(self._bans, ban.network, json.dumps(
            {"reason": ban.reason, "since": ban.since, "expires": ban.expires,
             "backend": ban.backend, "source": ban.source}))
        return ban

    def remove_ban(self, network: str) -> Ban | None:
        key = normalise_network(network)
        raw = self.r.hget(self._bans, key)
        if raw is None:
            return None
        self.r.hdel(self._bans, key)
        return _ban(key, raw)

    def bans(self, now: float | None = None) -> list[Ban]:
        now = time.time() if now is None else now
        out, expired = [], []
        for network, raw in self.r.hgetall(self._bans).items():
            ban = _ban(network, raw)
            if ban is None:
                continue
            if ban.active(now):
                out.append(ban)
            else:
                expired.append(network)
        if expired:
            self.r.hdel(self._bans, *expired)
        return sorted(out, key=lambda b: b.since)

    def banned(self, ip: str, now: float | None = None) -> Ban | None:
        now = time.time() if now is None else now
        raw = self.r.hget(self._bans, ip)
        if raw is not None:
            ban = _ban(ip, raw)
            if ban is not None and ban.active(now):
                return ban
        for ban in self.bans(now):
            if "/" in ban.network and covers(ban.network, ip):
                return ban
        return None

    # ------------------------------------------------------------------ locks
    def add_lock(self, lock: Lock) -> Lock:
        self.r.hset(self._locks, lock.user, json.dumps(
            {"reason": lock.reason, "since": lock.since, "expires": lock.expires,
             "source": lock.source}))
        return lock

    def remove_lock(self, user: str) -> Lock | None:
        raw = self.r.hget(self._locks, user)
        if raw is None:
            return None
        self.r.hdel(self._locks, user)
        return _lock(user, raw)

    def locks(self, now: float | None = None) -> list[Lock]:
        now = time.time() if now is None else now
        out, expired = [], []
        for user, raw in self.r.hgetall(self._locks).items():
            lock = _lock(user, raw)
            if lock is None:
                continue
            if lock.active(now):
                out.append(lock)
            else:
                expired.append(user)
        if expired:
            self.r.hdel(self._locks, *expired)
        return sorted(out, key=lambda lk: lk.since)

    def locked(self, user: str, now: float | None = None) -> Lock | None:
        now = time.time() if now is None else now
        raw = self.r.hget(self._locks, user)
        lock = _lock(user, raw) if raw is not None else None
        return lock if lock is not None and lock.active(now) else None

    def close(self) -> None:
        self.r.close()


def _ban(network: str, raw: str) -> Ban | None:
    try:
        d = json.loads(raw)
        return Ban(network=network, reason=str(d.get("reason") or ""), since=float(d["since"]),
                   expires=None if d.get("expires") is None else float(d["expires"]),
                   backend=str(d.get("backend") or "state"), source=d.get("source"))
    except (ValueError, KeyError, TypeError):
        return None  # not ours or damaged: never enforce what cannot be read


def _lock(user: str, raw: str) -> Lock | None:
    try:
        d = json.loads(raw)
        return Lock(user=user, reason=str(d.get("reason") or ""), since=float(d["since"]),
                    expires=None if d.get("expires") is None else float(d["expires"]),
                    source=d.get("source"))
    except (ValueError, KeyError, TypeError):
        return None


class RedisCounters:
    """Counters shared by a fleet, one Lua script call per batch of requests.

    Requests that arrive while a call is in flight wait for the next one, which carries them
    all (auto-batching): under load a round trip serves many requests, at low load each request
    still goes alone, at once. Each request stays atomic and all-or-nothing on its own.
    """

    is_async = True

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX, timeout: float = 1.0,
                 max_batch: int = 256) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - redis is a dependency
            raise RuntimeError("the redis package is needed for [state] url") from exc
        self.url = url
        self.prefix = prefix + "ctr:"
        self.max_batch = max_batch
        self.r = aioredis.Redis.from_url(url, socket_timeout=timeout,
                                         socket_connect_timeout=timeout, decode_responses=False)
        self._script = self.r.register_script(_APPLY)
        self._pending: list[tuple[Sequence[Check], asyncio.Future[Outcome]]] = []
        self._running = False
        self._task: asyncio.Task[None] | None = None  # keep a reference: tasks are weakly held
        self.calls = 0  # script calls made (tests and curiosity: requests / calls = batch size)

    def apply(self, checks: Sequence[Check], now: float) -> Outcome:
        raise TypeError("RedisCounters is asynchronous: use apply_async")

    def submit(self, checks: Sequence[Check]) -> asyncio.Future[Outcome]:
        """Queue a request for the next script call; the future gets its Outcome. Cancelling
        the future (a timeout) drops the request if it has not been sent yet."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((checks, fut))
        if not self._running:
            self._running = True
            self._task = loop.create_task(self._drain())
        return fut

    async def apply_async(self, checks: Sequence[Check]) -> Outcome:
        return await self.submit(checks)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:self.max_batch]
                del self._pending[:self.max_batch]
                batch = [(c, f) for c, f in batch if not f.done()]  # timed out meanwhile
                if not batch:
                    continue
                try:
                    outcomes = await self._call([c for c, _ in batch])
                except BaseException as exc:  # noqa: BLE001 - every waiter gets the error
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc if isinstance(exc, Exception)
                                              else RuntimeError(repr(exc)))
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, fut), outcome in zip(batch, outcomes, strict=True):
                    if not fut.done():
                        fut.set_result(outcome)
        finally:
            self._running = False

    async def _call(self, requests: list[Sequence[Check]]) -> list[Outcome]:
        keys: list[str] = []
        args: list[int] = [len(requests)]
        for checks in requests:
            args.append(len(checks))
            for c in checks:
                keys.append(self.prefix + c.counter)
                keys.append(self.prefix + over_name(c.counter))
                args += [c.window, c.width, c.buckets, c.limit, c.need, c.add,
                         1 if c.blocking else 0]
        self.calls += 1
        res = [int(x) for x in await self._script(keys=keys, args=args)]
        outcomes = []
        i = 0
        for checks in requests:
            n = len(checks)
            outcomes.append(Outcome(bool(res[i]), res[i + 1:i + 1 + n]))
            i += 1 + n
        return outcomes

    def flush(self) -> None:
        """Nothing to do: every update is already in Redis."""

    async def aclose(self) -> None:
        await self.r.aclose()

    def close(self) -> None:
        """Synchronous close is a no-op; the server awaits `aclose()`."""


def read_redis_usage(url: str, prefix: str = DEFAULT_PREFIX,
                     now: float | None = None) -> dict[str, int]:
    """Counter name -> current usage, read from Redis (for `policy report`)."""
    r = _client(url, 5.0)
    try:
        t = r.time()
        now = float(t[0]) + float(t[1]) / 1e6 if now is None else now
        base = prefix + "ctr:"
        out = {}
        for key in r.scan_iter(match=base + "*", count=1000):
            name = key[len(base):]
            parsed = parse_counter_name(name)
            if parsed is None:
                continue
            window = parsed[3]
            width = bucket_width(window)
            oldest = int(now // width) - bucket_count(window) + 1
            total = sum(int(c) for b, c in r.hgetall(key).items() if int(b) >= oldest)
            if total:
                out[name] = total
        return out
    finally:
        r.close()
