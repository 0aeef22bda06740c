#!/usr/bin/env python3
"""Queue-control benchmark on a real, private Postfix instance (needs root and Postfix).

Fills the queue of a throw-away instance (tests/harness) with N spam messages sent by one
compromised SASL login from many addresses, plus some legitimate mail, kept queued with
`defer_transports` (nothing is delivered, nothing is retried). Then times, end to end through
the `relayguard` command line:

    queue summary           the qshape-like picture of the whole queue
    queue list              envelope selection (--sender-domain), JSON out
    queue hold --sasl-user  selection through the queue files (postcat), then postsuper -h
    queue release           postsuper -H
    queue hold --sasl-user --log   the same selection through the mail log
    queue export            backup (postcat) of --export messages

Run:  .venv/bin/python bench/queue_bench.py [--messages 10000] [--ham 500] [--export 1000]
Prints one line per step and a JSON summary (`--json FILE` writes it too).
"""

from __future__ import annotations

import argparse
import json
import os
import smtplib
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from harness import PostfixInstance, connect, login, missing_requirements  # noqa: E402

SPAM_USER = "admin"
HAM_USER = "bob"
BODY = b"Subject: Cheap watches\r\nFrom: x\r\n\r\nBuy now.\r\n"


def inject(pf: PostfixInstance, user: str, sender: str, n: int, ip_base: str,
           workers: int, per_conn: int = 500) -> None:
    """`n` messages over parallel SMTP sessions (AUTH as `user`), `per_conn` per session, each
    session from another 127.x address; one small message with two outside recipients."""
    password = pf.password(user)
    jobs = [(i, min(per_conn, n - i * per_conn)) for i in range((n + per_conn - 1) // per_conn)]

    def session(job: tuple[int, int]) -> int:
        k, count = job
        smtp = connect(pf, f"{ip_base}.{k % 250 + 1}")
        try:
            code, text = login(smtp, user, password)
            if code != 235:
                raise RuntimeError(f"AUTH failed: {code} {text}")
            for j in range(count):
                smtp.sendmail(sender, [f"u{j}@victim{j % 37}.example", f"v{j}@target{k}.example"],
                              BODY)
        finally:
            try:
                smtp.quit()
            except smtplib.SMTPException:
                smtp.close()
        return count

    with ThreadPoolExecutor(max_workers=workers) as pool:
        sent = sum(pool.map(session, jobs))
    assert sent == n, (sent, n)


def queue_files(pf: PostfixInstance) -> dict[str, int]:
    """Files per queue directory: cheap to poll, unlike `postqueue -j` over 10,000 messages,
    which would compete with Postfix for the CPU while it is still filling the queue."""
    counts = {}
    for name in ("maildrop", "incoming", "active", "deferred", "hold"):
        n = 0
        for _dir, _subdirs, files in os.walk(pf.queue_dir / name):
            n += len(files)
        counts[name] = n
    return counts


def wait_queued(pf: PostfixInstance, want: int, timeout: float = 900) -> float:
    """Wait until exactly `want` messages sit in the deferred queue and nothing is in flight."""
    t0 = time.monotonic()
    while True:
        c = queue_files(pf)
        if c["deferred"] >= want and c["maildrop"] + c["incoming"] + c["active"] == 0:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"queue did not settle: {c} (want {want} deferred)")
        time.sleep(1.0)


def relayguard(*args: str, state: Path, expect: tuple[int, ...] = (0,)) -> tuple[float, Any]:
    argv = [sys.executable, "-m", "relayguard", *args, "--format", "json"]
    env = dict(os.environ, RELAYGUARD_STATE=str(state))
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=3600)
    dt = time.perf_counter() - t0
    if r.returncode not in expect:
        raise SystemExit(f"{' '.join(argv)} exited {r.returncode}:\n{r.stderr[-2000:]}")
    return dt, json.loads(r.stdout) if r.stdout.strip() else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=10_000, help="spam messages to select and hold")
    ap.add_argument("--ham", type=int, default=500, help="legitimate messages that must stay")
    ap.add_argument("--export", type=int, default=1000, help="messages to back up (0: skip)")
    ap.add_argument("--workers", type=int, default=8, help="parallel SMTP sessions")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    reason = missing_requirements()
    if reason:
        print(f"queue_bench: skipped: {reason}", file=sys.stderr)
        return 0
    results: dict[str, Any] = {"messages": args.messages, "ham": args.ham}
    work = Path(tempfile.mkdtemp(prefix="relayguard-qbench-"))
    state = work / "state.db"
    # defer_transports: queued mail is never attempted; long queue run and backoff times: once
    # deferred it stays put (the harness's 2 s timers would move it back and forth meanwhile).
    pf = PostfixInstance(relayhost=("127.0.0.1", 9), main_cf={
        "defer_transports": "smtp, relay", "qmgr_message_active_limit": "40000",
        "default_process_limit": "200", "queue_run_delay": "3600s",
        "minimal_backoff_time": "3600s", "maximal_backoff_time": "3600s",
    })
    t_total = time.perf_counter()
    try:
        pf.start()
        cfg = str(pf.config_dir)
        domain = pf.domain
        t0 = time.perf_counter()
        inject(pf, SPAM_USER, f"{SPAM_USER}@{domain}", args.messages, "127.0.5", args.workers)
        inject(pf, HAM_USER, f"{HAM_USER}@{domain}", args.ham, "127.0.6", args.workers)
        wait_queued(pf, args.messages + args.ham)
        results["fill_s"] = round(time.perf_counter() - t0, 2)
        step("fill the queue (SMTP, AUTH)", results["fill_s"], args.messages + args.ham)

        dt, summ = relayguard("queue", "summary", "--config-dir", cfg, state=state)
        assert summ["messages"] == args.messages + args.ham, summ["messages"]
        results["summary_s"] = round(dt, 2)
        step("queue summary", dt, summ["messages"])

        dt, listed = relayguard("queue", "list", "--config-dir", cfg, "--sender",
                                f"{SPAM_USER}@{domain}", state=state)
        assert len(listed) == args.messages
        results["list_by_sender_s"] = round(dt, 2)
        step("queue list --sender (select only)", dt, len(listed))

        dt, res = relayguard("queue", "hold", "--config-dir", cfg, "--sasl-user", SPAM_USER,
                             "--yes", state=state)
        assert len(res["done"]) == args.messages, (len(res["done"]), res.get("gone"))
        results["hold_by_sasl_user_queue_files_s"] = round(dt, 2)
        step("queue hold --sasl-user (queue files)", dt, len(res["done"]))

        dt, res = relayguard("queue", "release", "--config-dir", cfg, "--all", "--yes", state=state)
        assert len(res["done"]) == args.messages
        results["release_s"] = round(dt, 2)
        step("queue release --all", dt, len(res["done"]))

        pf.wait_log_quiet()
        log = str(pf.maillog)
        log_lines = pf.maillog.read_bytes().count(b"\n")
        dt, res = relayguard("queue", "hold", "--config-dir", cfg, "--sasl-user", SPAM_USER,
                             "--log", log, "--yes", state=state)
        assert len(res["done"]) == args.messages
        results["hold_by_sasl_user_log_s"] = round(dt, 2)
        results["log_lines"] = log_lines
        step(f"queue hold --sasl-user --log ({log_lines} log lines)", dt, len(res["done"]))

        # The split for the first path, in-process: selection vs. postsuper.
        from relayguard.queue import PostfixTools, postsuper, select
        from relayguard.queue.select import Selector

        tools = PostfixTools(cfg)
        subprocess.run(["postsuper", "-c", cfg, "-H", "ALL"], check=True, capture_output=True)
        t0 = time.perf_counter()
        sel = select(tools, Selector(sasl_users=(SPAM_USER,)))
        t_sel = time.perf_counter() - t0
        t0 = time.perf_counter()
        act = postsuper(tools, "hold", sel.ids)
        t_act = time.perf_counter() - t0
        assert len(act.done) == args.messages
        results["select_sasl_user_s"] = round(t_sel, 2)
        results["postsuper_hold_s"] = round(t_act, 2)
        step("  of which: select --sasl-user (postqueue -j + postcat)", t_sel, len(sel.ids))
        step("  of which: postsuper -h - (IDs on stdin)", t_act, len(act.done))

        if args.export:
            n = min(args.export, args.messages)
            ids = sel.ids[:n]
            id_args = [a for q in ids for a in ("--queue-id", q)]
            dt, res = relayguard("queue", "export", "--config-dir", cfg, *id_args, "--yes",
                                 "--backup-dir", str(work / "backups"), state=state)
            assert len(res["done"]) == n
            results["export_s"] = round(dt, 2)
            results["export_n"] = n
            step("queue export (backup with postcat, fsync)", dt, n)
    finally:
        pf.stop()
        results["total_s"] = round(time.perf_counter() - t_total, 2)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print(f"total {results['total_s']:.1f}s")
    print(json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


def step(name: str, seconds: float, n: int) -> None:
    rate = f"{n / seconds:,.0f} msg/s" if seconds > 0 else ""
    print(f"{name:<58} {seconds:7.2f}s  {n:>6} msgs  {rate}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
