"""Helpers for the `watch` tests: log lines stamped now, a daemon running in a thread with
short intervals, and waiting for conditions (never fixed sleeps)."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from relayguard import config as config_mod
from relayguard.state import Store
from relayguard.state.shared import SqliteShared
from relayguard.watch import Watcher

T = TypeVar("T")

# Short intervals: the tests wait for conditions, so fast loops make them fast.
FAST = {
    "watch": {"poll_interval": "0.05s", "detect_interval": "0.2s", "checkpoint_interval": "0.2s",
              "expire_interval": "0.2s", "queue_poll": "0", "metrics_listen": "",
              "rotate_grace": "1s"},
    "analyze": {"trusted": ["127.0.0.0/8"]},
    # No check_sasl_access map: the tests must not write into /etc/postfix.
    "respond": {"sasl_access_map": ""},
    "bruteforce": {"ban_backend": "state", "max_failures": 3, "window": "10m", "ban_for": "20m"},
}


def stamp(ts: float | None = None) -> str:
    """A classic syslog stamp (`Nov  5 08:34:30`) in local time."""
    lt = time.localtime(time.time() if ts is None else ts)
    return f"{time.strftime('%b', lt)} {lt.tm_mday:2d} {time.strftime('%H:%M:%S', lt)}"


def auth_failure(ip: str, user: str = "admin", ts: float | None = None, pid: int = 4242) -> str:
    return (f"{stamp(ts)} mail postfix/smtpd[{pid}]: warning: unknown[{ip}]: SASL LOGIN "
            f"authentication failed: UGFzc3dvcmQ6, sasl_username={user}")


def noise(i: int, ts: float | None = None) -> str:
    return f"{stamp(ts)} mail postfix/smtpd[{1000 + i % 50}]: connect from unknown[198.51.100.{i % 250}]"


def append(path: Path, lines: list[str]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("".join(ln + "\n" for ln in lines))
        fh.flush()


def wait_for(pred: Callable[[], T], timeout: float = 5.0, interval: float = 0.01,
             what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def make_config(*extra: dict[str, Any]) -> dict[str, Any]:
    """The bundled defaults with FAST and `extra` laid over them."""
    cfg = merge(config_mod.defaults(), FAST)
    for e in extra:
        cfg = merge(cfg, e)
    return cfg


class Daemon:
    """`Watcher.run` in a thread; `with Daemon(...) as d:` starts it and stops it cleanly."""

    def __init__(self, state: Path, logs: list[Path], *extra: dict[str, Any]) -> None:
        self.state = state
        self.logs = logs
        self.cfg = make_config(*extra)
        self.watcher: Watcher | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Daemon:
        self.watcher = Watcher(self.cfg, str(self.state), [str(p) for p in self.logs])
        self._stop.clear()

        def target() -> None:
            try:
                assert self.watcher is not None
                self.watcher.run(self._stop)
            except BaseException as exc:  # noqa: BLE001 — reported by the test
                self.error = exc
                self.watcher.ready.set()  # type: ignore[union-attr]

        self._thread = threading.Thread(target=target, name="watch-under-test", daemon=True)
        self._thread.start()
        assert self.watcher.ready.wait(10), "watch did not start"
        if self.error:
            raise self.error
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(20)
            assert not self._thread.is_alive(), "watch did not stop"
        if self.error:
            raise self.error

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stats(self) -> Any:
        assert self.watcher is not None
        return self.watcher.stats


class Hook:
    """An HTTP server (a thread) that keeps the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length", 0))
                assert self.headers.get("Content-Type") == "application/json"
                received.append(json.loads(self.rfile.read(n)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/abc"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def alert_keys(self) -> list[str]:
        return [b["relayguard"]["key"] for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class StateView:
    """The state database as another process sees it (its own connection)."""

    def __init__(self, path: Path) -> None:
        self.store = Store(path)
        self.shared = SqliteShared(self.store)

    def banned(self, ip: str) -> bool:
        return self.shared.banned(ip) is not None

    def close(self) -> None:
        self.store.close()
