"""Follow the systemd journal: `journalctl -f -o json`, resuming after a saved cursor.

The parser reads `journalctl -o json` records directly (see parse.syslog), so the records are
handed out as they come; only their `__CURSOR` is read here, for the checkpoint. journalctl
runs as a child process (argv, no shell) read by a thread; it is restarted, after its cursor,
if it dies.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import subprocess
import threading
import time
from collections.abc import Sequence

from ..sources.files import CUT, MAX_LINE
from .follow import Checkpoint

log = logging.getLogger("relayguard.watch")

SOURCE = "journald"
CURSOR = re.compile(r'"__CURSOR"\s*:\s*"([^"]+)"')
MAX_QUEUED = 100_000  # records waiting for the main loop: then journalctl waits (backpressure)
MAX_PER_POLL = 50_000


class JournalFollower:
    kind = "journald"

    def __init__(self, checkpoint: Checkpoint | None = None, *, program: str = "journalctl",
                 args: Sequence[str] = (), since: float | None = None,
                 restart_delay: float = 2.0, follow: bool = True) -> None:
        """`args`: extra journalctl arguments and matches (`--namespace=NS`, `SYSLOG_FACILITY=2`,
        `+`, `_TRANSPORT=kernel`…). Without a cursor, reading starts at `since` (epoch), or at
        the end of the journal when None. `follow=False` (`watch --once`): read what the
        journal holds now, then stop."""
        self.follow = follow
        self.ended = False
        self.name = SOURCE
        self.program = program
        self.args = list(args)
        self.since = since
        self.restart_delay = restart_delay
        self.cursor: str | None = checkpoint.cursor if checkpoint else None
        self._queue: queue.Queue[str | None] = queue.Queue(MAX_QUEUED)
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._next_start = 0.0
        self._closed = False
        self.behind = False
        self.restarts = 0
        self._start()

    def argv(self) -> list[str]:
        argv = [self.program, "--output=json", "--no-pager", "--quiet"]
        if self.follow:
            argv.append("--follow")
        if self.cursor:
            argv.append(f"--after-cursor={self.cursor}")
        elif self.since is not None:
            argv.append(f"--since=@{int(self.since)}")
        elif self.follow:
            argv.append("--lines=0")  # from now on (--once without a start: all of it)
        return argv + self.args

    def _start(self) -> None:
        argv = self.argv()
        try:
            self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        except OSError as exc:
            log.error("journald: cannot run %s (%s)", argv[0], exc.strerror)
            self._proc = None
            self.ended = not self.follow
            self._next_start = time.monotonic() + self.restart_delay
            return
        self._thread = threading.Thread(target=self._reader, args=(self._proc,),
                                        name="journalctl-reader", daemon=True)
        self._thread.start()

    def _reader(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        skipping = False  # in the rest of a record longer than MAX_LINE (not held: memory)
        while not self._closed:
            raw = proc.stdout.readline(MAX_LINE + 1)
            if not raw:
                break
            whole = raw.endswith(b"\n")
            if skipping:
                skipping = not whole
                continue
            text = raw.decode("utf-8", "surrogateescape")
            if not whole and len(raw) > MAX_LINE:
                skipping = True
                text = text[:MAX_LINE] + CUT  # the parser counts it unparsed, as files.py
            self._queue.put(text.rstrip("\n"))
        self._queue.put(None)  # end of this process's output

    def poll(self) -> list[str]:
        self.behind = False
        out: list[str] = []
        ended = False
        while len(out) < MAX_PER_POLL:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                ended = True
                continue
            out.append(item)
        else:
            self.behind = True
        for line in reversed(out):  # only the last cursor matters
            m = CURSOR.search(line)
            if m:
                self.cursor = m.group(1)
                break
        if ended:
            self._died()
        if not self.follow:
            # --once: more to come until journalctl has ended and everything was handed out.
            self.behind = self.behind or not self.ended
            return out
        if self._proc is None and not self._closed and time.monotonic() >= self._next_start:
            self.restarts += 1
            self._start()
        return out

    def _died(self) -> None:
        proc = self._proc
        if proc is None:
            return
        err = b""
        if proc.stderr is not None:
            with contextlib.suppress(OSError):
                err = proc.stderr.read() or b""
        rc = proc.wait()
        if not self.follow:
            self.ended = True
            if rc:
                log.warning("journald: journalctl exited %s: %s", rc,
                            err.decode("utf-8", "replace").strip()[-300:])
            self._proc = None
            return
        if not self._closed:
            log.warning("journald: journalctl exited (%s): %s; restarting after the last cursor",
                        rc, err.decode("utf-8", "replace").strip()[-300:])
        self._proc = None
        self._next_start = time.monotonic() + self.restart_delay

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(SOURCE, cursor=self.cursor)

    def finish(self) -> list[str]:
        return []

    def close(self) -> None:
        self._closed = True
        proc = self._proc
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self._proc = None
