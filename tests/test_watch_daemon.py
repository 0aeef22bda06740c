"""The daemon for real: a log file written while `watch` follows it (in a thread, short
intervals), bans read back from the state database through another connection.

- three failures → banned within a second of the third line being written; two → nothing;
- rotation (rename, copytruncate) in the middle of the traffic: every event counted once;
- stop and restart: failures written while stopped are counted once;
- ban expiry (ban_for = 2s) lifts the ban, audited;
- the windowed detectors find what `analyze` finds on the same log;
- `relayguard watch` as a process: SIGTERM → exit 0 with a final checkpoint.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relayguard.analysis import analyze
from relayguard.simulate import write_simulation
from relayguard.state import Store
from relayguard.watch import Watcher
from relayguard.watch.checkpoints import Checkpoints
from watchkit import (
    Daemon,
    StateView,
    append,
    auth_failure,
    make_config,
    noise,
    stamp,
    wait_for,
)

ATTACKER = "203.0.113.7"


def test_third_failure_bans_within_a_second(tmp_path: Path) -> None:
    log, state = tmp_path / "mail.log", tmp_path / "state.db"
    append(log, [noise(i) for i in range(20)])
    view = StateView(state)
    with Daemon(state, [log]) as d:
        append(log, [auth_failure(ATTACKER, "admin"), auth_failure(ATTACKER, "root")])
        wait_for(lambda: d.stats.auth_failures == 2, what="two failures read")
        assert not view.banned(ATTACKER)
        append(log, [auth_failure(ATTACKER, "info")])
        written = time.monotonic()
        wait_for(lambda: view.banned(ATTACKER), timeout=2.0, interval=0.005, what="the ban")
        elapsed = time.monotonic() - written
        assert elapsed < 1.0, f"ban took {elapsed:.3f}s"
        ban = view.shared.banned(ATTACKER)
        assert ban is not None and ban.source == "watch" and ban.backend == "state"
        assert ban.expires is not None and 1190 < ban.expires - time.time() <= 1200
    history = view.store.history(action="ban")
    assert [h["selector"]["network"] for h in history] == [ATTACKER]
    view.close()


def test_two_failures_are_not_banned(tmp_path: Path) -> None:
    log, state = tmp_path / "mail.log", tmp_path / "state.db"
    view = StateView(state)
    with Daemon(state, [log]) as d:
        # Two failures each from two addresses; a third address fails three times, but the
        # first of them more than the window (10m) before the others.
        old = time.time() - 700
        append(log, [auth_failure("203.0.113.1"), auth_failure("203.0.113.2"),
                     auth_failure("203.0.113.3", ts=old),
                     auth_failure("203.0.113.1"), auth_failure("203.0.113.2"),
                     auth_failure("203.0.113.3"), auth_failure("203.0.113.3")])
        wait_for(lambda: d.stats.auth_failures == 7, what="seven failures read")
        # Let detection and expiry run a few times: still nothing.
        n = d.stats.detections
        wait_for(lambda: d.stats.detections >= n + 3, what="three detector runs")
        assert view.shared.bans() == []
        assert d.stats.bans == []
    view.close()


def test_rotation_loses_nothing(tmp_path: Path) -> None:
    """Failures from many addresses (two each: no ban) across a rename rotation and a
    copytruncate: the daemon counts each exactly once."""
    log, state = tmp_path / "mail.log", tmp_path / "state.db"
    written = 0

    def burst(n: int, tag: int) -> None:
        nonlocal written
        append(log, [auth_failure(f"198.18.{tag}.{i % 200}", f"u{i}") for i in range(n)]
               + [noise(i) for i in range(n)])
        written += n

    with Daemon(state, [log]) as d:
        burst(150, 1)
        wait_for(lambda: d.stats.auth_failures == written, what="first burst")
        burst(150, 2)  # not necessarily read before the rotation
        os.rename(log, tmp_path / "mail.log.1")
        burst(150, 3)  # a new mail.log
        wait_for(lambda: d.stats.auth_failures == written, what="after the rename")
        burst(150, 4)
        shutil.copyfile(log, tmp_path / "mail.log.2")  # copytruncate's copy…
        with open(log, "r+") as fh:
            fh.truncate(0)  # …and truncation
        burst(150, 5)
        wait_for(lambda: d.stats.auth_failures == written, what="after copytruncate")
        assert d.stats.lines == 2 * written
    assert d.stats.auth_failures == written == 750
    assert d.stats.bans == []


def test_restart_counts_failures_written_while_stopped_once(tmp_path: Path) -> None:
    log, state = tmp_path / "mail.log", tmp_path / "state.db"
    view = StateView(state)
    with Daemon(state, [log]) as d:
        append(log, [auth_failure(ATTACKER)])
        wait_for(lambda: d.stats.auth_failures == 1, what="first failure")
    # Stopped: the checkpoint is at the end of the file, the failure saved with it.
    with Store(state) as store:
        cp = Checkpoints(store).load(str(log))
        assert cp is not None and cp.offset == log.stat().st_size
    append(log, [auth_failure(ATTACKER)])  # written while watch is down
    with Daemon(state, [log]) as d:
        wait_for(lambda: d.stats.auth_failures == 1, what="the failure written while stopped")
        n = d.stats.detections
        wait_for(lambda: d.stats.detections >= n + 2, what="detector runs")
        # Two failures so far, each counted once: no ban (counted twice, or the first one
        # forgotten, this would be wrong in one direction or the other).
        assert d.stats.auth_failures == 1 and not view.banned(ATTACKER)
        append(log, [auth_failure(ATTACKER)])
        wait_for(lambda: view.banned(ATTACKER), timeout=2, what="ban at the third failure")
    view.close()


def test_ban_expiry(tmp_path: Path) -> None:
    log, state = tmp_path / "mail.log", tmp_path / "state.db"
    view = StateView(state)
    with Daemon(state, [log], {"bruteforce": {"ban_for": "2s"}}) as d:
        append(log, [auth_failure(ATTACKER)] * 3)
        wait_for(lambda: view.banned(ATTACKER), what="ban")
        wait_for(lambda: d.watcher.metrics.bans_active._value.get() == 1, what="gauge 1")
        wait_for(lambda: not view.banned(ATTACKER), timeout=4, what="expiry")
        # Gone from the table (not only filtered out by its expiry time), and audited.
        wait_for(lambda: view.store.db.execute("SELECT count(*) FROM bans").fetchone()[0] == 0,
                 what="expired row removed")
        wait_for(lambda: d.watcher.metrics.bans_active._value.get() == 0, what="gauge 0")
        unbans = view.store.history(action="unban")
        assert unbans and unbans[0]["selector"]["source"] == "expiry"
        # A new attack after expiry is banned again.
        append(log, [auth_failure(ATTACKER)] * 3)
        wait_for(lambda: view.banned(ATTACKER), what="second ban")
    view.close()


def test_allowlisted_address_is_never_banned(tmp_path: Path) -> None:
    log, state = tmp_path / "mail.log", tmp_path / "state.db"
    view = StateView(state)
    with Daemon(state, [log], {"bruteforce": {"allow": ["203.0.113.0/24"]}}) as d:
        append(log, [auth_failure(ATTACKER)] * 5 + [auth_failure("198.51.100.9")] * 3)
        wait_for(lambda: view.banned("198.51.100.9"), what="the other address banned")
        assert d.stats.auth_failures == 8
        assert not view.banned(ATTACKER)
    view.close()


def test_windowed_detectors_find_what_analyze_finds(tmp_path: Path) -> None:
    """Same detector code on the sliding window: on a simulated incident (a window wide enough
    to hold it all), `watch --once` and `analyze` report the same findings."""
    log = tmp_path / "sim.log"
    write_simulation("all", 20000, log, seed=3)
    extra = {"watch": {"window": "1000d", "ignore_older": "0"},
             "analyze": {"trusted": ["192.168.0.0/16", "10.0.0.0/8", "127.0.0.0/8"]}}
    cfg = make_config(extra)
    stats = Watcher(cfg, str(tmp_path / "state.db"), [str(log)]).run_once()
    batch = analyze([str(log)], cfg)
    def key(fs):  # noqa: E306
        return [(f.kind, f.subject, f.severity, f.score) for f in fs if f.kind != "queue_surge"]
    assert key(stats.findings) == key(batch.findings)
    assert {f.kind for f in stats.findings} >= {"compromised_account", "trusted_host_relay",
                                                 "auth_bruteforce", "direct_smtp", "blocklisted"}


def test_old_lines_are_skipped(tmp_path: Path) -> None:
    """A first start on a long log does not act on last week's attack."""
    log, state = tmp_path / "mail.log", tmp_path / "state.db"
    week = time.time() - 7 * 86400
    append(log, [auth_failure(ATTACKER, ts=week + i) for i in range(10)])
    stats = Watcher(make_config(), str(state), [str(log)]).run_once()
    assert stats.stale == 10 and stats.auth_failures == 0 and stats.bans == []


def test_sigterm_checkpoints_and_exits(tmp_path: Path) -> None:
    log, state, conf = tmp_path / "mail.log", tmp_path / "state.db", tmp_path / "rg.toml"
    conf.write_text('[watch]\npoll_interval = "0.05s"\nqueue_poll = "0"\nmetrics_listen = ""\n'
                    'checkpoint_interval = "1h"\n'
                    '[analyze]\ntrusted = ["127.0.0.0/8"]\n[respond]\nsasl_access_map = ""\n')
    append(log, [noise(i) for i in range(100)])
    # Created before the daemon starts: two processes creating one SQLite database at the same
    # moment can see "database is locked" while it switches to WAL.
    Store(state).close()

    def checkpoint() -> int:
        with Store(state) as s:
            cp = Checkpoints(s).load(str(log))
        return cp.offset if cp is not None else -1

    proc = subprocess.Popen([sys.executable, "-m", "relayguard", "watch", "--config", str(conf),
                             "--state", str(state), "--log", str(log)],
                            stderr=open(tmp_path / "stderr", "w"))  # noqa: SIM115
    try:
        size = log.stat().st_size
        # The first checkpoint comes once the first lines are read; the next would be an hour
        # later: only the one taken at SIGTERM can cover what follows.
        wait_for(lambda: checkpoint() == size, timeout=20, what="first checkpoint")
        append(log, [auth_failure(ATTACKER), f"{stamp()} mail postfix/qmgr[1]: last line"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert checkpoint() == log.stat().st_size, "no final checkpoint after the last line"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_state_db_readable_only_by_root(tmp_path: Path) -> None:
    log, state = tmp_path / "mail.log", tmp_path / "state.db"
    append(log, [noise(1)])
    Watcher(make_config(), str(state), [str(log)]).run_once()
    assert state.stat().st_mode & 0o077 == 0


def test_cli_once(tmp_path: Path) -> None:
    """`relayguard watch --once`: exit 1 with high findings in the window, then 0 when nothing
    new is left to read (resumed from the checkpoint); exit 2 on a bad setting."""
    from click.testing import CliRunner

    from relayguard.cli import main

    log, state, conf = tmp_path / "mail.log", tmp_path / "state.db", tmp_path / "rg.toml"
    conf.write_text('[watch]\nqueue_poll = "0"\nmetrics_listen = ""\n'
                    '[analyze]\ntrusted = ["127.0.0.0/8"]\n[respond]\nsasl_access_map = ""\n')
    ip = "198.51.100.66"
    append(log, [auth_failure(ip, f"user{i}") for i in range(6)] + [
        f"{stamp()} mail postfix/smtpd[4242]: 3C4D5E6F7A: client=unknown[{ip}], "
        "sasl_method=LOGIN, sasl_username=admin"])
    args = ["watch", "--once", "--config", str(conf), "--state", str(state), "--log", str(log)]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 1, first.output
    assert f"banned {ip}" in first.output and "auth_bruteforce" in first.output
    assert "lines 7, events 7" in first.output
    with Store(state) as store:  # kept for the dashboard's "current findings"
        assert ("auth_bruteforce", ip) in {(f["kind"], f["subject"]) for f in store.findings()}
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0 and "lines 0," in second.output
    conf.write_text('[watch]\npoll_interval = "often"\n')
    bad = CliRunner().invoke(main, args)
    assert bad.exit_code == 2 and "watch.poll_interval: expected a duration" in bad.output
