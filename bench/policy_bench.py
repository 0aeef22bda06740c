"""Policy server benchmark: relayguard vs policyd-rate-limit, same requests, same run.

    .venv/bin/python bench/policy_bench.py [--duration 10] [--connections 8] [--quick]

What it does:
1. Installs policyd-rate-limit (PyPI, pinned) into its own virtualenv under bench/out/ the first
   time (it needs PyYAML; the project's environment stays untouched).
2. Starts each server in turn on a free loopback port with an equivalent configuration: two
   limits per SASL user, 100 per minute and 1000 per day, refusing with defer_if_permit
   (policyd-rate-limit: `limits: [[100, 60], [1000, 86400]]`, SQLite backend, count_mode 1;
   relayguard: two [[policy.limits]] on sasl_username, SQLite state) and no debug logging.
3. Drives it with a realistic Postfix 3.7 request stream (about 30 attributes per request):
   for each message RCPT, DATA and END-OF-MESSAGE, 2,000 users round-robin, one recipient per
   message (so policyd-rate-limit's recipient counting and relayguard's message counting agree).
   Each of the `--connections` connections has one request in flight at a time, as Postfix
   does; the client is one epoll loop with non-blocking sockets (cheaper than asyncio, so the
   client is not what is measured).
4. Prints requests/s, p50/p90/p99/p99.9/max latency and the server's CPU time per request for
   relayguard (uvloop, plain asyncio, and with Redis counters when redis-server is installed)
   and policyd-rate-limit, and writes bench/out/policy_bench.json. `--quick`: the default
   relayguard only; `--skip-prl`: without policyd-rate-limit.

Processes are not pinned to CPUs by default: on this 2-vCPU virtual machine a wake-up sent to
the other (idle) vCPU sometimes takes 4-8 ms, so pinning server and client to different CPUs
made p99 *worse* (a trivial echo server: p99 3.7 ms pinned apart, 80 µs unpinned). --pin pins
the server to CPU 0 and the client to CPU 1 anyway, for machines where that helps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PRL_VERSION = "1.2.0"
USERS = 2000
LIMITS = [(100, 60), (1000, 86400)]  # (messages, seconds), the same for both servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(state: str, i: int) -> bytes:
    """Request of message `i` at `state`, as Postfix 3.7 sends it (SMTPD_POLICY_README)."""
    user = f"user{i % USERS}@example.org"
    inst = f"{0x1a2b + i:x}.{0x6543210 + i:x}.{i % 7}.0"
    attrs = [
        ("request", "smtpd_access_policy"), ("protocol_state", state),
        ("protocol_name", "ESMTP"), ("helo_name", "client.example.net"),
        ("queue_id", "" if state == "RCPT" else "4XvQ2l0Bz5z9tHl"),
        ("sender", f"user{i % USERS}@example.org"), ("recipient", f"rcpt{i}@example.com"),
        ("recipient_count", "0" if state == "RCPT" else "1"),
        ("client_address", f"198.51.{(i // 250) % 250}.{i % 250 + 1}"),
        ("client_name", "unknown"), ("reverse_client_name", "unknown"), ("instance", inst),
        ("sasl_method", "PLAIN"), ("sasl_username", user), ("sasl_sender", ""),
        ("size", "0" if state == "RCPT" else "2345"), ("ccert_subject", ""), ("ccert_issuer", ""),
        ("ccert_fingerprint", ""), ("ccert_pubkey_fingerprint", ""),
        ("encryption_protocol", "TLSv1.3"), ("encryption_cipher", "TLS_AES_256_GCM_SHA384"),
        ("encryption_keysize", "256"), ("etrn_domain", ""), ("stress", ""),
        ("client_port", str(40000 + i % 20000)), ("policy_context", ""),
        ("server_address", "192.0.2.25"), ("server_port", "587"),
        ("compatibility_level", "3.6"), ("mail_version", "3.7.11"),
    ]
    return ("".join(f"{k}={v}\n" for k, v in attrs) + "\n").encode()


def make_stream(n_messages: int) -> list[bytes]:
    out = []
    for m in range(n_messages):
        for state in ("RCPT", "DATA", "END-OF-MESSAGE"):
            out.append(request(state, m))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (from /proc; 0 if unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def system_busy() -> float:
    """CPU seconds spent busy by the whole machine since boot (all CPUs)."""
    try:
        vals = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return (sum(vals[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def drive(port: int, connections: int, duration: float, warmup: float,
          stream: list[bytes], pids: tuple[int, ...] = ()) -> dict:
    """One request in flight per connection; latencies of the measured part only.

    Also measures, over the measured part, the CPU time of `pids` (the server, and Redis) per
    request — an efficiency figure that other load on the machine barely disturbs — and how
    busy the rest of the machine was (other processes make latency numbers noisy)."""
    sel = selectors.EpollSelector() if hasattr(selectors, "EpollSelector") else selectors.DefaultSelector()
    socks = []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
    n = len(stream)
    pos = [k * (n // connections) for k in range(connections)]  # disjoint slices of the stream
    sent_at = [0] * connections
    buf = [b""] * connections
    lat: list[int] = []
    answers: dict[str, int] = {}
    perf = time.perf_counter_ns
    for k, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, k)
        sent_at[k] = perf()
        s.sendall(stream[pos[k] % n])
    start = perf()
    measure_from = start + int(warmup * 1e9)
    stop_at = measure_from + int(duration * 1e9)
    done = 0
    closed = 0
    cpu0: tuple[float, float, float] | None = None
    while closed < connections:
        for key, _ in sel.select(1.0):
            k = key.data
            s = key.fileobj
            try:
                data = s.recv(4096)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            if not data:
                raise RuntimeError("the server closed a connection")
            buf[k] += data
            if not buf[k].endswith(b"\n\n"):
                continue
            now = perf()
            reply = buf[k]
            buf[k] = b""
            if now >= measure_from and sent_at[k] >= measure_from:
                if cpu0 is None:
                    cpu0 = (sum(cpu_seconds(p) for p in pids), time.process_time(),
                            system_busy())
                lat.append(now - sent_at[k])
                word = reply[7:].split(b" ", 1)[0].split(b"\n", 1)[0].decode().upper()
                answers[word] = answers.get(word, 0) + 1
                done += 1
            if now >= stop_at:
                sel.unregister(s)
                closed += 1
                continue
            pos[k] += 1
            sent_at[k] = perf()
            s.sendall(stream[pos[k] % n])  # type: ignore[union-attr]
    cpu1 = (sum(cpu_seconds(p) for p in pids), time.process_time(), system_busy())
    for s in socks:
        s.close()
    lat.sort()
    cpu0 = cpu0 or cpu1
    server_cpu = cpu1[0] - cpu0[0]
    client_cpu = cpu1[1] - cpu0[1]
    others = max(0.0, (cpu1[2] - cpu0[2]) - server_cpu - client_cpu)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] / 1000 if lat else float("nan")

    return {"requests": done, "seconds": duration, "req_per_s": round(done / duration),
            "p50_us": round(pct(50), 1), "p90_us": round(pct(90), 1),
            "p99_us": round(pct(99), 1), "p999_us": round(pct(99.9), 1),
            "max_us": round(lat[-1] / 1000, 1) if lat else None, "answers": answers,
            "server_cpu_us_per_req": round(server_cpu / done * 1e6, 1) if done else None,
            "client_cpu_us_per_req": round(client_cpu / done * 1e6, 1) if done else None,
            "other_load_cpus": round(others / duration, 2)}


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:g}s")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# ----------------------------------------------------------------------------- relayguard
def relayguard_starter(event_loop: str = "uvloop", redis_url: str = ""):
    """A starter for relayguard with SQLite state (default) or Redis counters (a fleet)."""

    def start(work: Path, port: int, pin: bool) -> subprocess.Popen:
        cfg = work / "relayguard.toml"
        limits = "".join(
            f'[[policy.limits]]\nkey = "sasl_username"\nmax_messages = {n}\nwindow = "{s}s"\n'
            f'action = "DEFER_IF_PERMIT"\nmessage = "Rate limit reach, retry later"\n\n'
            for n, s in LIMITS)
        state = f'[state]\nurl = "{redis_url}"\n\n' if redis_url else ""
        cfg.write_text(f'{state}[policy]\nlisten = ["127.0.0.1:{port}"]\n\n{limits}')
        db = work / "relayguard-state.db"
        for f in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            f.unlink(missing_ok=True)
        exe = Path(sys.executable).with_name("relayguard")
        argv = [str(exe), "policy", "serve", "--config", str(cfg), "--state", str(db),
                "--log-level", "warning"]
        if pin and shutil.which("taskset"):
            argv = ["taskset", "-c", "0", *argv]
        env = dict(os.environ, RELAYGUARD_EVENT_LOOP=event_loop)
        log = open(work / "relayguard.log", "a")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    return start


class RedisServer:
    """A throw-away redis-server on a free loopback port (no persistence)."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.dir = work / "redis"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc, "redis-server")
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop(self.proc)


# ----------------------------------------------------------------------------- policyd-rate-limit
def prl_venv() -> Path:
    venv = OUT / "policyd-rate-limit-venv"
    py = venv / "bin" / "python"
    marker = venv / f".installed-{PRL_VERSION}"
    if not marker.exists():
        print(f"installing policyd-rate-limit {PRL_VERSION} into {venv} ...", file=sys.stderr)
        shutil.rmtree(venv, ignore_errors=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet",
                        f"policyd-rate-limit=={PRL_VERSION}"], check=True)
        marker.touch()
    return venv


def start_prl(work: Path, port: int, pin: bool) -> subprocess.Popen:
    venv = prl_venv()
    run = work / "prl"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    cfg = work / "policyd-rate-limit.yaml"
    # Start from the package's own defaults (some settings have no fallback in its code) and
    # change only what the comparison needs.
    user = "root" if os.geteuid() == 0 else ""
    script = (
        "import os, sys, yaml, policyd_rate_limit as p\n"
        "d = yaml.safe_load(open(os.path.join(os.path.dirname(p.__file__), "
        "'policyd-rate-limit.yaml')))\n"
        "d.update(yaml.safe_load(sys.argv[2]))\n"
        "yaml.safe_dump(d, open(sys.argv[1], 'w'))\n")
    settings = {
        "debug": False, "SOCKET": ["127.0.0.1", port],
        "pidfile": str(run / "pid" / "policyd-rate-limit.pid"),
        "backend": 0, "sqlite_config": {"database": str(run / "db" / "db.sqlite3")},
        "limits": [list(x) for x in LIMITS], "limit_by_sasl": True, "count_mode": 1,
        "fail_action": "defer_if_permit Rate limit reach, retry later",
        "success_action": "dunno", "db_error_action": "dunno",
    }
    if user:  # it drops privileges when started as root; stay root so it can write run/
        settings.update(user=user, group="root")
    subprocess.run([str(venv / "bin" / "python"), "-c", script, str(cfg), json.dumps(settings)],
                   check=True)
    argv = [str(venv / "bin" / "python"), str(venv / "bin" / "policyd-rate-limit"), "-f", str(cfg)]
    if pin and shutil.which("taskset"):
        argv = ["taskset", "-c", "0", *argv]
    log = open(work / "policyd-rate-limit.log", "w")  # noqa: SIM115
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


def bench(name: str, starter, work: Path, args: argparse.Namespace, stream: list[bytes],
          pin: bool, extra_pids: tuple[int, ...] = ()) -> dict:
    port = free_port()
    proc = starter(work, port, pin)
    try:
        wait_port(port, proc, name)
        time.sleep(0.3)
        result = drive(port, args.connections, args.duration, args.warmup, stream,
                       (proc.pid, *extra_pids))
    finally:
        # policyd-rate-limit exits cleanly (removing its pid file) on SIGUSR1 only.
        stop(proc, signal.SIGUSR1 if name.startswith("policyd-rate-limit") else signal.SIGTERM)
    result["server"] = name
    print(f"  {name}: {result['req_per_s']} req/s, p99 {result['p99_us']} µs, "
          f"{result['server_cpu_us_per_req']} µs CPU/req", file=sys.stderr)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per server")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--pin", action="store_true",
                    help="pin the server to CPU 0 and the client to CPU 1")
    ap.add_argument("--skip-prl", action="store_true", help="leave policyd-rate-limit out")
    ap.add_argument("--quick", action="store_true",
                    help="only the default relayguard (no plain-asyncio and Redis variants)")
    args = ap.parse_args()
    work = OUT / "policy-bench"
    work.mkdir(parents=True, exist_ok=True)
    pin = args.pin and (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    stream = make_stream(20000)  # 60,000 requests, cycled
    try:
        import uvloop  # noqa: F401
        loops = ["uvloop", "asyncio"]
    except ImportError:
        loops = ["asyncio"]
    results = [bench(f"relayguard ({loops[0]})", relayguard_starter(loops[0]), work, args,
                     stream, pin)]
    if not args.quick:
        for loop in loops[1:]:
            results.append(bench(f"relayguard ({loop})", relayguard_starter(loop), work, args,
                                 stream, pin))
        if shutil.which("redis-server"):
            redis = RedisServer(work)
            try:
                results.append(bench(f"relayguard ({loops[0]}, Redis)",
                                     relayguard_starter(loops[0], redis.url), work, args,
                                     stream, pin, (redis.proc.pid,)))
            finally:
                redis.stop()
    if not args.skip_prl:
        try:
            results.append(bench("policyd-rate-limit", start_prl, work, args, stream, pin))
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
            # e.g. no PyPI access, or a Python without the `imp` module it imports (3.12+)
            log = work / "policyd-rate-limit.log"
            tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
            print(f"policyd-rate-limit could not be measured: {exc}\n{tail}", file=sys.stderr)
    print(f"\npolicy servers, {args.connections} connections, one request in flight each, "
          f"{args.duration:g}s measured after {args.warmup:g}s warm-up"
          f"{', server on CPU 0, client on CPU 1' if pin else ''}; SQLite state unless noted:")
    print(f"{'server':<28} {'req/s':>7} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8} "
          f"{'p99.9 µs':>9} {'max µs':>9} {'CPU µs/req':>10} {'other load':>10}  answers")
    for r in results:
        print(f"{r['server']:<28} {r['req_per_s']:>7} {r['p50_us']:>8} {r['p90_us']:>8} "
              f"{r['p99_us']:>8} {r['p999_us']:>9} {r['max_us']:>9} "
              f"{r['server_cpu_us_per_req']:>10} {r['other_load_cpus']:>10}  {r['answers']}")
    print("CPU µs/req: the server's own CPU time per request (with Redis: server + redis-server), "
          "a figure other load\nbarely disturbs. other load: CPUs' worth of busy time not "
          "accounted to server or client (kernel\nnetwork work in interrupts, other processes): "
          "where it is high, the latency figures are disturbed.")
    ours = results[0]
    ok = ours["req_per_s"] >= 20000 and ours["p99_us"] <= 1000
    print(f"\ntarget >= 20000 req/s and p99 <= 1000 µs: {ours['server']} "
          f"{'meets it' if ok else 'MISSES it'}")
    theirs = [r for r in results if r["server"].startswith("policyd-rate-limit")]
    if theirs and theirs[0]["req_per_s"]:
        print(f"{ours['server']} / policyd-rate-limit throughput: "
              f"{ours['req_per_s'] / theirs[0]['req_per_s']:.1f}x")
    report = {"python": platform.python_version(), "cpus": os.cpu_count(),
              "connections": args.connections, "duration": args.duration, "pinned": pin,
              "limits": LIMITS, "users": USERS, "results": results}
    (OUT / "policy_bench.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
