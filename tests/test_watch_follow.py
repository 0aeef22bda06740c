"""Following files: appends, partial lines, rename rotation, copytruncate, delete and recreate,
and restarts from a checkpoint (also across a rotation that happened while stopped). Real
files in a temporary directory; every line written is read exactly once."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
from pathlib import Path

import pytest

from relayguard.state import Store
from relayguard.watch.checkpoints import Checkpoints
from relayguard.watch.follow import Checkpoint, FileFollower


def write(path: Path, lines: list[str], mode: str = "a") -> None:
    with open(path, mode, encoding="utf-8") as fh:
        for ln in lines:
            fh.write(ln + "\n")


def numbered(prefix: str, n: int) -> list[str]:
    return [f"{prefix} line {i:04d} " + "x" * (i % 37) for i in range(n)]


def test_appends_and_partial_lines(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    write(log, ["one", "two"])
    f = FileFollower(str(log))
    assert f.poll() == ["one", "two"]
    assert f.poll() == []
    with open(log, "a") as fh:
        fh.write("thr")
        fh.flush()
        assert f.poll() == []  # a line being written is not a line yet
        fh.write("ee\nfour\n")
    assert f.poll() == ["three", "four"]
    assert f.checkpoint().offset == log.stat().st_size
    f.close()


def test_missing_file_is_followed_once_it_appears(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    f = FileFollower(str(log))
    assert f.poll() == []
    write(log, ["first"])
    assert f.poll() == ["first"]
    f.close()


def test_rename_rotation_finishes_the_old_file_first(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    a, b, c, late = numbered("a", 50), numbered("b", 30), numbered("c", 40), numbered("late", 5)
    write(log, a)
    f = FileFollower(str(log), grace=60)
    assert f.poll() == a
    write(log, b)  # written before the rename, not read yet
    old = open(log, "a")  # noqa: SIM115 — syslog's descriptor, kept across the rename
    os.rename(log, tmp_path / "mail.log.1")
    write(log, c, "w")
    got = f.poll()
    assert got == b + c  # the old file's end first, then the new file from its start
    old.write("\n".join(late) + "\n")  # syslog had not reopened yet
    old.close()
    assert f.poll() == late  # still read: the old file is drained for `grace` seconds
    assert f.rotations == 1
    f.close()


def test_copytruncate_loses_nothing(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    a, b, c = numbered("a", 100), numbered("b", 60), numbered("c", 20)
    write(log, a)
    f = FileFollower(str(log))
    assert f.poll() == a
    write(log, b)  # not read before logrotate copies and truncates
    shutil.copyfile(log, tmp_path / "mail.log.1")
    with open(log, "r+") as fh:
        fh.truncate(0)
    write(log, c)
    assert f.poll() == b + c
    assert f.truncations == 1
    f.close()


def test_copytruncate_then_regrowth_past_our_offset(tmp_path: Path) -> None:
    """Truncated and written again beyond where we were before the next poll: the size alone
    does not show it; the last line we read no longer being there does."""
    log = tmp_path / "mail.log"
    a, b, c = numbered("a", 10), numbered("b", 5), numbered("c", 200)
    write(log, a)
    f = FileFollower(str(log))
    assert f.poll() == a
    write(log, b)
    shutil.copyfile(log, tmp_path / "mail.log.1")
    write(log, c, "w")  # truncate + much more than before
    assert log.stat().st_size > f.checkpoint().offset
    assert f.poll() == b + c
    f.close()


def test_deleted_and_recreated(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    a, b = numbered("a", 20), numbered("b", 20)
    write(log, a)
    f = FileFollower(str(log), grace=0)
    assert f.poll() == a
    log.unlink()
    assert f.poll() == []
    write(log, b, "w")
    assert f.poll() == b
    f.close()


def _restart(tmp_path: Path, log: Path, cp: Checkpoint) -> FileFollower:
    """Through the state database, as the daemon does."""
    with Store(tmp_path / "state.db") as store:
        cps = Checkpoints(store)
        cps.save([cp])
        loaded = cps.load(str(log))
    assert loaded == cp
    return FileFollower(str(log), loaded)


def test_restart_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    a, b = numbered("a", 30), numbered("b", 30)
    write(log, a)
    f = FileFollower(str(log))
    assert f.poll() == a
    cp = f.checkpoint()
    f.close()
    write(log, b)  # while stopped
    g = _restart(tmp_path, log, cp)
    assert g.poll() == b
    g.close()


def test_restart_after_rename_rotation_while_stopped(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    a, b, c = numbered("a", 30), numbered("b", 30), numbered("c", 30)
    write(log, a)
    f = FileFollower(str(log))
    assert f.poll() == a
    cp = f.checkpoint()
    f.close()
    write(log, b)
    os.rename(log, tmp_path / "mail.log.1")
    write(log, c, "w")
    g = _restart(tmp_path, log, cp)
    assert g.poll() == b + c
    g.close()


def test_restart_after_rotation_and_compression_while_stopped(tmp_path: Path) -> None:
    """logrotate without delaycompress: the file we were reading is now mail.log.1.gz."""
    log = tmp_path / "mail.log"
    a, b, c = numbered("a", 30), numbered("b", 30), numbered("c", 30)
    write(log, a)
    f = FileFollower(str(log))
    assert f.poll() == a
    cp = f.checkpoint()
    f.close()
    write(log, b)
    with open(log, "rb") as src, gzip.open(tmp_path / "mail.log.1.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    log.unlink()
    write(log, c, "w")
    g = _restart(tmp_path, log, cp)
    assert g.poll() == b + c
    g.close()


def test_restart_after_copytruncate_while_stopped(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    a, b, c = numbered("a", 30), numbered("b", 30), numbered("c", 5)
    write(log, a)
    f = FileFollower(str(log))
    assert f.poll() == a
    cp = f.checkpoint()
    f.close()
    write(log, b)
    shutil.copyfile(log, tmp_path / "mail.log.1")
    write(log, c, "w")
    g = _restart(tmp_path, log, cp)
    assert g.poll() == b + c
    g.close()


def test_start_at_end_without_checkpoint(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    write(log, ["old"])
    f = FileFollower(str(log), start_at_end=True)
    assert f.poll() == []
    write(log, ["new"])
    assert f.poll() == ["new"]
    f.close()


def test_a_rotated_file_stays_in_the_checkpoint_until_read_to_its_end(tmp_path: Path) -> None:
    """Stopped while syslog still writes to the renamed file: the restart reads the lines
    written to it after the stop, and the new file from where it stopped — nothing twice."""
    log = tmp_path / "mail.log"
    a, b, c, d = numbered("a", 40), numbered("b", 30), numbered("c", 20), numbered("d", 10)
    write(log, a)
    f = FileFollower(str(log), grace=60)
    assert f.poll() == a
    old = open(log, "a")  # noqa: SIM115 — syslog's descriptor, kept across the rename
    os.rename(log, tmp_path / "mail.log.1")
    write(log, b, "w")
    assert f.poll() == b
    cp = f.checkpoint()
    assert [p.name for p in cp.files] == [str(log), str(log)]  # the renamed file, then the new
    f.close()
    old.write("".join(x + "\n" for x in c))  # syslog had not reopened yet
    old.close()
    write(log, d)
    g = _restart(tmp_path, log, cp)
    assert g.poll() == c + d
    g.close()


def test_a_lost_file_is_said_with_its_size(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = tmp_path / "mail.log"
    write(log, numbered("a", 30))
    f = FileFollower(str(log))
    f.poll()
    write(log, numbered("b", 10))  # seen by the checkpoint's size, not read
    cp = f.checkpoint()
    f.close()
    size = log.stat().st_size
    log.unlink()  # rotated and deleted while stopped (rotate 0)
    write(log, numbered("c", 5))
    with caplog.at_level(logging.WARNING, "relayguard.watch"):
        g = _restart(tmp_path, log, cp)
    assert g.poll() == numbered("c", 5)
    [msg] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "was not found" in msg and f"at least {size - cp.offset} bytes" in msg
    g.close()
