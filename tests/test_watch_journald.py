"""The journald source against a real systemd-journald: a private journal namespace (its own
sockets and files, the system journal untouched), lines sent to its syslog socket as Postfix
would, `journalctl --namespace` followed by the daemon. A stop and restart resumes after the
saved cursor: the failure logged while stopped is counted once, and the third failure bans."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from relayguard.state import Store
from relayguard.watch import Watcher
from relayguard.watch.checkpoints import Checkpoints
from watchkit import Daemon, StateView, make_config, stamp, wait_for

JOURNALD = "/usr/lib/systemd/systemd-journald"
ATTACKER = "203.0.113.77"


class Journal:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.run_dir = Path(f"/run/systemd/journal.{namespace}")
        self.proc = subprocess.Popen([JOURNALD, namespace], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: (self.run_dir / "dev-log").exists(), timeout=10, what="journald socket")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def syslog(self, tag: str, message: str, priority: int = 2 * 8 + 4) -> None:
        """What Postfix's syslog() sends: facility mail (2), severity warning (4)."""
        self.sock.sendto(f"<{priority}>{stamp()} {tag}: {message}".encode(),
                         str(self.run_dir / "dev-log"))

    def auth_failure(self, ip: str, user: str) -> None:
        self.syslog("postfix/smtpd[4242]", f"warning: unknown[{ip}]: SASL LOGIN authentication "
                                          f"failed: UGFzc3dvcmQ6, sasl_username={user}")

    def wait_written(self, text: str, n: int) -> None:
        """Until the journal holds `n` entries containing `text` (journald is asynchronous)."""
        def count() -> bool:
            out = subprocess.run(["journalctl", f"--namespace={self.namespace}", "--output=cat",
                                  "--no-pager"], capture_output=True, text=True, check=False)
            return out.stdout.count(text) >= n
        wait_for(count, timeout=10, what=f"{n} × {text!r} in the journal")

    def close(self) -> None:
        self.sock.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        for d in glob.glob(f"/var/log/journal/*.{self.namespace}"):
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def journal() -> Iterator[Journal]:
    if os.geteuid() != 0 or not os.access(JOURNALD, os.X_OK) or not shutil.which("journalctl"):
        pytest.skip("needs root, systemd-journald and journalctl")
    j = Journal(f"rgtest{os.getpid()}")
    try:
        yield j
    finally:
        j.close()


def test_journald_source_bans_and_resumes_after_cursor(journal: Journal, tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    extra = {"watch": {"journald": True,
                       "journald_args": [f"--namespace={journal.namespace}", "SYSLOG_FACILITY=2"]}}
    view = StateView(state)
    with Daemon(state, [], extra) as d:
        journal.syslog("cron[1]", "not mail", priority=9 * 8 + 6)  # filtered out by the match
        journal.auth_failure(ATTACKER, "admin")
        journal.auth_failure(ATTACKER, "root")
        wait_for(lambda: d.stats.auth_failures == 2, timeout=10, what="two failures")
    with Store(state) as s:
        cp = Checkpoints(s).load("journald")
    assert cp is not None and cp.cursor and cp.cursor.startswith("s=")
    journal.auth_failure(ATTACKER, "info")  # while stopped
    with Daemon(state, [], extra) as d:
        wait_for(lambda: view.banned(ATTACKER), timeout=10, what="the ban at the third failure")
        assert d.stats.auth_failures == 1  # the two before the restart were not read again
        assert d.stats.lines == 1
    view.close()


def test_journald_once(journal: Journal, tmp_path: Path) -> None:
    """`watch --once` on the journal: what is there after the cursor, then exit."""
    state = tmp_path / "state.db"
    cfg = make_config({"watch": {"journald": True, "journald_args": [
        f"--namespace={journal.namespace}", "SYSLOG_FACILITY=2"]}})
    journal.auth_failure("203.0.113.78", "admin")
    journal.auth_failure("203.0.113.79", "admin")
    journal.wait_written("sasl_username=admin", 2)
    first = Watcher(cfg, str(state), []).run_once()
    assert first.auth_failures == 2
    journal.auth_failure("203.0.113.78", "root")
    journal.wait_written("sasl_username=root", 1)
    second = Watcher(cfg, str(state), []).run_once()
    assert second.lines == second.auth_failures == 1  # resumed after the cursor
