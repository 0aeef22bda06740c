"""A log with nothing to analyze is an error, never "No findings" (issue 12): an empty file, random
bytes, another program's log, a time window that leaves no line. One line on stderr, exit 2,
nothing on stdout and no report file."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pfguard import system_env

ENV = system_env(TZ="UTC")
ROOT = Path(__file__).resolve().parent.parent
INCIDENT = ROOT / "examples" / "incident.log"
SAMPLES = Path(__file__).parent / "data" / "samples.log"
SSHD = """\
Jun 21 10:00:00 mx sshd[811]: Accepted password for root from 198.51.100.4 port 50522 ssh2
Jun 21 10:00:01 mx CRON[812]: (root) CMD (run-parts /etc/cron.hourly)
Jun 21 10:00:02 mx sshd[813]: Failed password for invalid user admin from 203.0.113.9 port 4242 ssh2
"""


def rg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relayguard", *args], capture_output=True,
                          text=True, env=ENV, timeout=120, stdin=subprocess.DEVNULL)


def refused(p: subprocess.CompletedProcess[str], message: str) -> None:
    """The user sees exactly `message` as the one line on stderr, exit 2, and nothing else."""
    assert p.returncode == 2, (p.returncode, p.stdout[:500], p.stderr)
    assert p.stderr == f"relayguard: error: {message}\n"
    assert p.stdout == ""


@pytest.fixture
def sshd(tmp_path: Path) -> Path:
    path = tmp_path / "sshd.log"
    path.write_text(SSHD)
    return path


@pytest.fixture
def noise(tmp_path: Path) -> tuple[Path, int]:
    """200 KB of random bytes and the number of lines they split into."""
    data = random.Random(12).randbytes(200_000)
    path = tmp_path / "rnd.log"
    path.write_bytes(data)
    return path, len(data.split(b"\n")) - (1 if data.endswith(b"\n") else 0)


def incident_mail_lines() -> int:
    """Postfix and firewall lines of the example log, counted here independently of the parser
    (its NUL and non-UTF-8 lines are damage, not mail)."""
    n = 0
    for line in INCIDENT.read_bytes().split(b"\n"):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if b"\0" in line:
            continue
        tag = line.split(b" ")[4:5]
        n += bool(tag) and (tag[0].startswith(b"postfix/") or (tag[0] == b"kernel:" and b" DPT=" in line))
    return n


@pytest.mark.parametrize("fmt", ["text", "json", "html"])
def test_empty_file(tmp_path: Path, fmt: str) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    refused(rg("analyze", str(empty), "--format", fmt), f"no input: read 0 lines from {empty}")


@pytest.mark.parametrize("fmt", ["text", "json", "html"])
def test_random_bytes_write_no_report(tmp_path: Path, noise: tuple[Path, int], fmt: str) -> None:
    path, lines = noise
    out = tmp_path / f"report.{fmt}"
    refused(rg("analyze", str(path), "--format", fmt, "-o", str(out)),
            f"no Postfix lines among {lines:,} lines read from {path}: is this a mail log?")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rnd.log"]  # no report, no leftover


def test_existing_report_is_left_as_it_was(tmp_path: Path, sshd: Path) -> None:
    out = tmp_path / "report.html"
    out.write_text("yesterday's report")
    refused(rg("analyze", str(sshd), "--format", "html", "-o", str(out)),
            f"no Postfix lines among 3 lines read from {sshd}: is this a mail log?")
    assert out.read_text() == "yesterday's report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "sshd.log"]


def test_sshd_only_log(sshd: Path) -> None:
    refused(rg("analyze", str(sshd), "--year", "2026"),
            f"no Postfix lines among 3 lines read from {sshd}: is this a mail log?")


def test_several_files_are_named(sshd: Path, noise: tuple[Path, int], tmp_path: Path) -> None:
    path, lines = noise
    refused(rg("analyze", str(sshd), str(path)),
            f"no Postfix lines among {lines + 3:,} lines read from {sshd} and {path}: is this a mail log?")
    more = [tmp_path / f"other{i}.log" for i in range(3)]
    for m in more:
        m.write_text(SSHD)
    refused(rg("analyze", str(sshd), *map(str, more)),
            "no Postfix lines among 12 lines read from 4 files: is this a mail log?")


def test_since_after_the_end_of_the_log() -> None:
    n = incident_mail_lines()
    assert n > 15_000
    refused(rg("analyze", str(INCIDENT), "--year", "2026", "--since", "2026-12-01T14:00"),
            f"all {n:,} Postfix and firewall lines in {INCIDENT} are before --since "
            "2026-12-01T14:00 (the log ends 2026-06-22T00:00:46)")


def test_since_as_a_duration_on_an_old_log(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = rg("analyze", str(INCIDENT), "--year", "2026", "--since", "6h", "--format", "json", "-o", str(out))
    assert p.returncode == 2 and p.stdout == "" and not out.exists()
    assert re.fullmatch(r"relayguard: error: all [\d,]+ Postfix and firewall lines in \S+ are before "
                        r"--since \d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)? \(the log ends 2026-06-22T00:00:46\)\n",
                        p.stderr), p.stderr


def test_until_before_the_start_of_the_log() -> None:
    n = incident_mail_lines()
    refused(rg("analyze", str(INCIDENT), "--year", "2026", "--until", "2026-06-20T23:00", "--format", "json"),
            f"all {n:,} Postfix and firewall lines in {INCIDENT} are after --until "
            "2026-06-20T23:00 (the log starts 2026-06-21T00:00:14)")


def test_window_in_a_gap_of_the_log(tmp_path: Path) -> None:
    log = tmp_path / "gap.log"
    log.write_text("Jun 21 10:00:00 mx postfix/qmgr[1]: 1C205316C411: removed\n"
                   "Jun 21 12:00:00 mx postfix/qmgr[1]: 2D316427D522: removed\n")
    refused(rg("analyze", str(log), "--year", "2026", "--since", "2026-06-21T11:00",
               "--until", "2026-06-21T11:30"),
            f"none of the 2 Postfix lines in {log} are between --since 2026-06-21T11:00 and --until "
            "2026-06-21T11:30 (the log runs from 2026-06-21T10:00 to 2026-06-21T12:00)")


def test_since_after_until_is_refused_before_reading(tmp_path: Path) -> None:
    missing = tmp_path / "not-read.log"  # a read would fail with "no such file"
    refused(rg("analyze", str(missing), "--since", "2026-06-21T12:00", "--until", "2026-06-21T11:00"),
            "--since 2026-06-21T12:00 is after --until 2026-06-21T11:00: no time is in between")


def test_mail_log_with_other_programs_still_analyzes(tmp_path: Path) -> None:
    postfix = [line for line in SAMPLES.read_text().splitlines()
               if line and not line.startswith("#") and " postfix/" in line]
    sshd = SSHD.splitlines()
    mixed = tmp_path / "mixed.log"
    # other programs' lines in between, as syslog writes them
    mixed.write_text("".join(f"{sshd[i % 3]}\n{line}\n" for i, line in enumerate(postfix)))
    p = rg("analyze", str(mixed), "--year", "2026", "--format", "json")
    assert p.returncode in (0, 1), p.stderr
    doc = json.loads(p.stdout)
    assert doc["input"]["lines"] == 2 * len(postfix)
    assert doc["input"]["postfix"] == len(postfix)
    assert doc["totals"]["messages"] > 0
    text = rg("analyze", str(mixed), "--year", "2026")
    assert text.returncode == p.returncode and text.stderr == "" and text.stdout


def test_show_user_on_a_log_without_mail(sshd: Path, tmp_path: Path) -> None:
    for fmt in ("text", "json"):
        refused(rg("show", "user", "admin", str(sshd), "--no-queue", "--state", str(tmp_path / "none.db"),
                   "--format", fmt),
                f"no Postfix lines among 3 lines read from {sshd}: is this a mail log?")


def test_show_ip_on_an_empty_log(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    refused(rg("show", "ip", "203.0.113.9", str(empty), "--no-queue", "--state", str(tmp_path / "none.db")),
            f"no input: read 0 lines from {empty}")


@pytest.mark.parametrize("cmd", ["messages", "parse"])
def test_messages_and_parse_refuse_random_bytes(cmd: str, tmp_path: Path, noise: tuple[Path, int]) -> None:
    path, lines = noise
    message = f"no Postfix lines among {lines:,} lines read from {path}: is this a mail log?"
    refused(rg(cmd, str(path)), message)
    out = tmp_path / "out.jsonl"
    p = rg(cmd, str(path), "-o", str(out))
    assert p.returncode == 2 and p.stderr == f"relayguard: error: {message}\n"
    assert not out.exists()


def test_messages_on_a_mail_log_still_succeeds(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    p = rg("messages", str(INCIDENT), "--year", "2026", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert len(out.read_text().splitlines()) > 100
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]
