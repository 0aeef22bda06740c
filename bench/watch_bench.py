#!/usr/bin/env python3
"""Benchmark of `relayguard watch`, run as its own process with its default intervals.

1. Ban latency: for each of --trials attacking addresses, two failed logins are written to the
   followed log, then the third; the time from the third line's write() to the ban being in
   the state database (ban_backend = "state", read through another connection every 2 ms).
2. Load: realistic lines (relayguard.simulate, scenario "all", restamped to the current time
   so that every stage does its work: nothing is skipped as old) appended at --rate lines/s
   for --seconds; the daemon's CPU (utime + stime from /proc, as a share of one core) and
   memory (VmRSS at the end, VmHWM: the peak), and whether it kept up (lines read, from
   /metrics, against lines written; the lag after the writer stops).

Run:  .venv/bin/python bench/watch_bench.py [--trials 20] [--rate 2000] [--seconds 20]
Prints one line per result and a JSON summary (--json FILE writes it too). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from relayguard.simulate import generate  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def stamp(ts: float) -> str:
    lt = time.localtime(ts)
    return f"{time.strftime('%b', lt)} {lt.tm_mday:2d} {time.strftime('%H:%M:%S', lt)}"


def auth_failure(ip: str, user: str) -> str:
    return (f"{stamp(time.time())} mail postfix/smtpd[4242]: warning: unknown[{ip}]: SASL LOGIN "
            f"authentication failed: UGFzc3dvcmQ6, sasl_username={user}\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def memory_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def scrape(port: int) -> dict[str, float]:
    """/metrics, summed over labels: {name: value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def lines_read(port: int) -> float:
    return scrape(port).get("relayguard_lines_total", 0.0)


class Daemon:
    def __init__(self, work: Path, log: Path, port: int) -> None:
        self.state = work / "state.db"
        conf = work / "relayguard.toml"
        # Defaults everywhere but: no queue polling (no Postfix needed), metrics on a free
        # port, no SASL map in /etc/postfix, and the simulator's networks as trusted.
        conf.write_text(
            '[watch]\nqueue_poll = "0"\n'
            f'metrics_listen = "127.0.0.1:{port}"\n'
            '[analyze]\ntrusted = ["192.168.0.0/16", "10.0.0.0/8", "127.0.0.0/8"]\n'
            '[respond]\nsasl_access_map = ""\n')
        self.err = open(work / "watch.err", "w")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relayguard", "watch", "--config", str(conf),
             "--state", str(self.state), "--log", str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.err,
            cwd=str(ROOT))
        self.port = port
        deadline = time.monotonic() + 30
        while True:
            try:
                lines_read(port)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"watch did not start: see {work / 'watch.err'}") from None
                time.sleep(0.05)

    def stop(self) -> int:
        self.proc.terminate()
        rc = self.proc.wait(30)
        self.err.close()
        return rc


def ban_latency(work: Path, trials: int) -> dict[str, Any]:
    log = work / "latency.log"
    log.touch()
    d = Daemon(work, log, free_port())
    db = sqlite3.connect(str(d.state), timeout=30)
    out: list[float] = []
    try:
        with open(log, "a", buffering=1) as fh:
            for i in range(trials):
                ip = f"198.18.{i // 250}.{i % 250 + 1}"
                fh.write(auth_failure(ip, "admin"))
                fh.write(auth_failure(ip, "root"))
                # The two first are read in another poll than the third; a random phase so the
                # third lands anywhere in the daemon's poll interval (0.2 s).
                time.sleep(0.3 + random.uniform(0, 0.2))
                fh.write(auth_failure(ip, "info"))
                t0 = time.perf_counter()
                while True:
                    row = db.execute("SELECT 1 FROM bans WHERE network = ?", (ip,)).fetchone()
                    if row:
                        out.append(time.perf_counter() - t0)
                        break
                    if time.perf_counter() - t0 > 10:
                        raise SystemExit(f"{ip} not banned after 10 s")
                    time.sleep(0.002)
    finally:
        db.close()
        d.stop()
    out.sort()
    return {"trials": trials, "min_ms": round(out[0] * 1000, 1),
            "median_ms": round(statistics.median(out) * 1000, 1),
            "p95_ms": round(out[max(0, int(len(out) * 0.95) - 1)] * 1000, 1),
            "max_ms": round(out[-1] * 1000, 1)}


def load(work: Path, rate: int, seconds: float) -> dict[str, Any]:
    log = work / "load.log"
    log.touch()
    n = int(rate * seconds)
    # The simulator's own stamps are replaced by "now" as each line is written.
    source = [ln[16:] for ln in generate("all", n + 1000, seed=7) if ln[15:16] == " "][:n]
    d = Daemon(work, log, free_port())
    pid = d.proc.pid
    cpu0 = cpu_seconds(pid)
    t_start = time.monotonic()
    written = 0
    batch = max(1, rate // 50)  # 50 writes a second, as a busy syslog daemon flushes
    try:
        with open(log, "a", encoding="utf-8", errors="surrogateescape") as fh:
            while written < len(source):
                due = t_start + written / rate
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                st = stamp(time.time())
                chunk = source[written:written + batch]
                fh.write("".join(f"{st} {ln}\n" for ln in chunk))
                fh.flush()
                written += len(chunk)
        t_written = time.monotonic()
        cpu_written = cpu_seconds(pid)
        deadline = t_written + 30
        while lines_read(d.port) < written and time.monotonic() < deadline:
            time.sleep(0.01)
        caught_up = time.monotonic() - t_written
        m = scrape(d.port)
        read = m.get("relayguard_lines_total", 0)
        mem = memory_kib(pid)
    finally:
        rc = d.stop()
    elapsed = t_written - t_start
    return {"rate_target": rate, "lines": written, "seconds": round(elapsed, 2),
            "rate_achieved": round(written / elapsed), "lines_read": int(read),
            "kept_up": read >= written, "lag_after_writer_s": round(caught_up, 3),
            # Proof of work done: nothing skipped as old, messages and failures counted.
            "old_lines_skipped": int(m.get("relayguard_old_lines_total", 0)),
            "messages_by_status": int(m.get("relayguard_messages_total", 0)),
            "auth_failures": int(m.get("relayguard_auth_failures_total", 0)),
            "bans": int(m.get("relayguard_bans_total", 0)),
            "cpu_percent_of_one_core": round(100 * (cpu_written - cpu0) / elapsed, 1),
            "rss_mib": round(mem.get("VmRSS", 0) / 1024, 1),
            "peak_rss_mib": round(mem.get("VmHWM", 0) / 1024, 1), "exit_code": rc}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rg-watch-bench-") as tmp:
        work = Path(tmp)
        (work / "a").mkdir()
        (work / "b").mkdir()
        lat = ban_latency(work / "a", args.trials)
        print(f"ban latency (third failure written → ban in the state db), {lat['trials']} "
              f"trials: median {lat['median_ms']} ms, p95 {lat['p95_ms']} ms, "
              f"min {lat['min_ms']} ms, max {lat['max_ms']} ms")
        ld = load(work / "b", args.rate, args.seconds)
        print(f"load: {ld['lines']} lines at {ld['rate_achieved']}/s for {ld['seconds']} s: "
              f"CPU {ld['cpu_percent_of_one_core']}% of one core, RSS {ld['rss_mib']} MiB "
              f"(peak {ld['peak_rss_mib']} MiB), read {ld['lines_read']} "
              f"({'kept up' if ld['kept_up'] else 'FELL BEHIND'}; caught up "
              f"{ld['lag_after_writer_s']} s after the writer stopped)")
    result = {"schema": "relayguard.watch-bench/1", "python": sys.version.split()[0],
              "ban_latency": lat, "load": ld}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ld["kept_up"] else 1


if __name__ == "__main__":
    sys.exit(main())
