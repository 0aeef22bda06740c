"""Faults while following: `relayguard watch` (a real process) follows a log that a writer
thread appends to at a few thousand lines a second — Postfix SASL failures from many addresses
among ordinary lines — while logrotate renames it (the writer goes on writing to the old file a
moment, as syslog does before its HUP), copies and truncates it, and compresses `.1` into
`.2.gz`; the daemon is stopped with SIGTERM and killed with SIGKILL at seeded random moments and
started again. Afterwards:

- every file holds exactly as many lines as the daemon says it read from it (its own log:
  "finished FILE (…, file FINGERPRINT): N lines read", and the checkpoint's count for the file
  it follows) — a line lost or read twice shows;
- every address that failed three times is banned exactly once (state backend, audited), and
  none that failed twice is (a line read twice would make it three);
- nothing was reported missing.
"""

from __future__ import annotations

import gzip
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from relayguard.state import Store
from relayguard.watch.checkpoints import Checkpoints
from relayguard.watch.follow import HEAD_BYTES, fingerprint
from watchkit import auth_failure, stamp, wait_for

RATE = 3000  # lines per second


def attacker(i: int) -> str:
    return f"198.18.{i // 250}.{1 + i % 250}"


def near(i: int) -> str:  # fails twice: never banned
    return f"198.19.{i // 250}.{1 + i % 250}"


class Writer:
    """syslog and logrotate on one log file. Lines are made when written (stamped now); the
    failures of each address are scattered over the whole run."""

    def __init__(self, directory: Path, seed: int, total: int, attackers: int, nears: int) -> None:
        self.dir = directory
        self.log = directory / "mail.log"
        rnd = random.Random(seed)
        kinds: list[tuple[str, int, int]] = [("noise", i, 0) for i in range(total)]
        slots = rnd.sample(range(total), 3 * attackers + 2 * nears)
        who = [(attacker(i), k) for i in range(attackers) for k in range(3)]
        who += [(near(i), k) for i in range(nears) for k in range(2)]
        self.failures = dict(zip(slots, who, strict=True))
        self.total = total
        self.kinds = kinds
        self.n = 0  # lines written
        self.lock = threading.Lock()
        self.fh = open(self.log, "a", encoding="utf-8")  # noqa: SIM115 — syslog's descriptor
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def line(self, i: int) -> str:
        if i in self.failures:
            ip, k = self.failures[i]
            return auth_failure(ip, f"user{k}", pid=2000 + i % 97)
        return (f"{stamp()} mail postfix/smtpd[{1000 + i % 50}]: disconnect from "
                f"unknown[192.0.2.{i % 250}] ehlo=1 quit=1 commands=2 seq={i}")

    def write(self, n: int) -> None:
        with self.lock:
            end = min(self.n + n, self.total)
            self.fh.write("".join(self.line(i) + "\n" for i in range(self.n, end)))
            self.fh.flush()
            self.n = end

    def start(self) -> None:
        def run() -> None:
            while not self.stop.is_set() and self.n < self.total:
                self.write(RATE // 100)
                time.sleep(0.01)
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(60)

    def _shift(self) -> None:
        """`.N.gz` → `.N+1.gz`, `.1` → `.2.gz` (delaycompress): nothing is deleted."""
        gz = sorted((int(m.group(1)), p) for p in self.dir.iterdir()
                    if (m := re.fullmatch(r"mail\.log\.(\d+)\.gz", p.name)))
        for k, p in reversed(gz):
            os.rename(p, self.dir / f"mail.log.{k + 1}.gz")
        one = self.dir / "mail.log.1"
        if one.exists():
            with open(one, "rb") as src, gzip.open(self.dir / "mail.log.2.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
            one.unlink()

    def rename(self, late: float = 0.05) -> None:
        """logrotate `create`: renamed; syslog writes on to the old file until its HUP."""
        with self.lock:
            self._shift()
            os.rename(self.log, self.dir / "mail.log.1")
        time.sleep(late)
        with self.lock:
            self.fh.close()
            self.fh = open(self.log, "a", encoding="utf-8")  # noqa: SIM115

    def copytruncate(self) -> None:
        with self.lock:
            self._shift()
            shutil.copyfile(self.log, self.dir / "mail.log.1")
            with open(self.log, "r+b") as fh:
                fh.truncate(0)

    def files(self) -> dict[str, int]:
        """Lines per file written, by fingerprint (as the daemon names them)."""
        out: dict[str, int] = {}
        for p in self.dir.iterdir():
            if p.name.startswith("mail.log"):
                opener = gzip.open if p.name.endswith(".gz") else open
                with opener(p, "rb") as fh:  # type: ignore[operator]
                    data = fh.read()
                if data:
                    out[fingerprint(data[:HEAD_BYTES])] = data.count(b"\n")
        return out

    def close(self) -> None:
        self.fh.close()


class Daemon:
    """`relayguard watch` as a process, its stderr kept per run."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.state = directory / "state.db"
        self.conf = directory / "rg.toml"
        self.conf.write_text(
            '[watch]\npoll_interval = "0.05s"\ncheckpoint_interval = "0.2s"\nqueue_poll = "0"\n'
            'metrics_listen = ""\nrotate_grace = "1s"\ndetect_interval = "0"\n'
            '[analyze]\ntrusted = ["127.0.0.0/8"]\n[respond]\nsasl_access_map = ""\n'
            '[bruteforce]\nban_backend = "state"\nmax_failures = 3\nwindow = "10m"\n'
            'ban_for = "20m"\n')
        Store(self.state).close()  # created once, before any daemon (see test_watch_daemon)
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.stderr: list[Path] = []

    def start(self) -> None:
        self.runs += 1
        err = self.dir / f"stderr.{self.runs}"
        self.stderr.append(err)
        with open(err, "w") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "relayguard", "watch", "--config", str(self.conf),
                 "--state", str(self.state), "--log", str(self.dir / "mail.log")], stderr=fh)

    def ready(self) -> None:
        wait_for(lambda: "watching" in self.stderr[-1].read_text(), timeout=20,
                 what="the daemon to start")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        if sig == signal.SIGTERM:  # its handler is set once it says what it watches
            self.ready()
        self.proc.send_signal(sig)
        rc = self.proc.wait(60)
        if sig == signal.SIGTERM:
            assert rc == 0, self.stderr[-1].read_text()
        self.proc = None

    def text(self) -> str:
        return "".join(p.read_text() for p in self.stderr)

    def finished(self) -> dict[str, int]:
        """Lines read per finished file, by fingerprint (a file finished again after a kill
        that came before its checkpoint says the same count: the last one stands)."""
        out: dict[str, int] = {}
        for m in re.finditer(r"finished \S+ \(inode \d+, file (\S+)\): (\d+) lines read",
                             self.text()):
            out[m.group(1)] = int(m.group(2))
        return out

    def chain(self) -> list[tuple[str, int, int]]:
        """The saved chain: (fingerprint, offset, lines) per file not finished."""
        with Store(self.state) as s:
            cp = Checkpoints(s).load(str(self.dir / "mail.log"))
        assert cp is not None
        return [(f.head or "", f.offset, f.lines) for f in cp.files]

    def caught_up(self) -> bool:
        """One file in the chain (every rotated file finished), at the end of mail.log."""
        try:
            chain = self.chain()
        except AssertionError:
            return False
        size = (self.dir / "mail.log").stat().st_size
        return len(chain) == 1 and chain[0][1] == size

    def counts(self) -> dict[str, int]:
        """What the daemon read, per file: finished files, then the one it follows."""
        out = self.finished()
        (head, _, lines), = self.chain()
        with open(self.dir / "mail.log", "rb") as fh:
            out[fingerprint(fh.read(HEAD_BYTES))] = lines
        assert head
        return out


def check(d: Daemon, w: Writer, attackers: int, nears: int) -> None:
    """The outcome the admin needs: every line once, every brute-forcer banned once."""
    wait_for(d.caught_up, timeout=30, interval=0.1, what="the daemon to catch up")
    d.signal(signal.SIGTERM)
    text = d.text()
    # Nothing reported missing (the warnings of follow.py), and nothing missing.
    warnings = [ln for ln in text.splitlines() if "relayguard.watch WARNING" in ln
                and ("not read" in ln or "not found" in ln or "cannot read" in ln)]
    assert warnings == []
    assert d.counts() == w.files(), [ln for ln in text.splitlines() if "relayguard.watch" in ln]
    assert sum(w.files().values()) == w.total
    with Store(d.state) as s:
        history = s.history(limit=None, action="ban")
        banned = [r["network"] for r in s.db.execute("SELECT network FROM bans")]
    assert sorted(banned) == sorted(attacker(i) for i in range(attackers))
    # Each ban once in the audit trail. (A SIGKILL between a ban and its audit record leaves
    # the ban without one: the respond package writes them apart.)
    audited = [h["selector"]["network"] for h in history]
    assert len(set(audited)) == len(audited) and set(audited) <= set(banned)


def test_rotations_signals_and_kills_at_random_moments(tmp_path: Path) -> None:
    """Seeded: 10 stops (SIGTERM or SIGKILL) and 11 rotations among 40,000 lines."""
    rnd = random.Random(14)
    attackers, nears = 300, 100
    w = Writer(tmp_path, 14, 40_000, attackers, nears)
    d = Daemon(tmp_path)
    d.start()
    d.ready()  # a first start has no checkpoint: it reads the file it finds, from its start
    w.start()
    events = ["rename"] * 6 + ["copytruncate"] * 5 + ["term"] * 5 + ["kill"] * 5
    rnd.shuffle(events)
    for ev in events:
        time.sleep(rnd.uniform(0.1, 0.6))
        if ev == "rename":
            w.rename()
        elif ev == "copytruncate":
            w.copytruncate()
        else:
            d.signal(signal.SIGTERM if ev == "term" else signal.SIGKILL)
            if rnd.random() < 0.5:  # a rotation while it is down
                (w.rename if rnd.random() < 0.5 else w.copytruncate)()
            d.start()
    w.join()
    w.close()
    assert w.n == w.total
    check(d, w, attackers, nears)


def test_sigterm_just_after_rotating_a_large_file(tmp_path: Path) -> None:
    """A backlog larger than one poll reads (8 MiB) in the rotated file: read at shutdown, all."""
    attackers, nears = 300, 100
    w = Writer(tmp_path, 15, 110_000, attackers, nears)
    w.write(100)
    d = Daemon(tmp_path)
    d.start()
    wait_for(d.caught_up, timeout=20, interval=0.05, what="the first lines read")
    w.write(100_000)  # ~12 MB at once: the daemon is behind when the file is renamed
    w.rename(late=0.0)
    w.write(1000)
    time.sleep(0.3)
    d.signal(signal.SIGTERM)
    d.start()
    w.write(9000)
    w.close()
    check(d, w, attackers, nears)


@pytest.mark.parametrize("how", ["rename", "copytruncate"])
def test_two_rotations_while_down(tmp_path: Path, how: str) -> None:
    attackers, nears = 50, 20
    w = Writer(tmp_path, 16, 4000, attackers, nears)
    w.write(1000)
    d = Daemon(tmp_path)
    d.start()
    wait_for(d.caught_up, timeout=20, interval=0.05, what="the first lines read")
    d.signal(signal.SIGKILL)
    for _ in range(2):  # both older files (`.2.gz` and `.1`) must be read
        w.write(1000)
        getattr(w, how)()
    w.write(1000)
    w.close()
    d.start()
    check(d, w, attackers, nears)
    text = d.text()
    assert "mail.log.2.gz from byte" in text and "mail.log.1 from byte 0" in text, text
