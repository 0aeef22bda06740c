"""Hostile input (issue 14): time stamps no log can carry, and lines of any length, are unparsed
lines, counted — never a traceback, never unbounded memory — in analyze, parse, show and watch.
Commands run as the user runs them (a child process), on files written here."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pfguard import system_env
from relayguard.watch.follow import FileFollower
from watchkit import auth_failure, stamp

ENV = system_env(TZ="UTC")
ROOT = Path(__file__).resolve().parent.parent
INCIDENT = ROOT / "examples" / "incident.log"
BODY = ("mail postfix/submission/smtpd[9378]: C65F66CBD1D: client=x[87.208.228.223], "
        "sasl_method=LOGIN, sasl_username=mallory@example.org")
MESSAGE = "C65F66CBD1D: client=x[87.208.228.223], sasl_method=LOGIN, sasl_username=mallory@example.org"


def journald(realtime: str) -> str:
    return json.dumps({"MESSAGE": MESSAGE, "SYSLOG_IDENTIFIER": "postfix/submission/smtpd",
                       "_PID": "9378", "_HOSTNAME": "mail", "__REALTIME_TIMESTAMP": realtime})


# What a broken clock, a hostile writer or a damaged journal can really put in a log: each is a
# Postfix line except for its time, which datetime cannot show in some zone (or at all).
OUT_OF_RANGE = {
    "rfc3339-year-1-east": f"0001-01-01T00:00:00+14:00 {BODY}",
    "rfc3339-year-1-local": f"0001-01-01T00:00:00 {BODY}",
    "rfc3339-9999-west": f"9999-12-31T23:59:59-14:00 {BODY}",
    "rfc3339-year-10000": f"10000-01-01T00:00:00+00:00 {BODY}",
    "rfc3339-before-1970": f"1969-12-31T23:59:59Z {BODY}",
    "journald-1e23": journald("1" + "0" * 23),
    "journald-negative": journald("-1000000"),
    "journald-huge": journald("9" * 400),
}


def rg(*args: str, stdin: Path | None = None) -> subprocess.CompletedProcess[str]:
    with open(stdin or os.devnull, "rb") as fh:
        return subprocess.run([sys.executable, "-m", "relayguard", *args], capture_output=True,
                              text=True, env=ENV, timeout=120, stdin=fh)


def no_postfix(p: subprocess.CompletedProcess[str], lines: int, name: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stdout[:300], p.stderr[-2000:])
    assert p.stderr == (f"relayguard: error: no Postfix lines among {lines} lines read from "
                        f"{name}: is this a mail log?\n")
    assert p.stdout == ""


def totals(log: Path) -> dict[str, int]:
    p = rg("analyze", "--format", "json", str(log))
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout)["totals"]


def findings(log: Path) -> list[tuple[str, str]]:
    p = rg("analyze", "--format", "json", str(log))
    assert p.returncode in (0, 1), p.stderr
    return [(f["kind"], f["subject"]) for f in json.loads(p.stdout)["findings"]]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict[str, int]]:
    """The first 2,000 lines of the example incident, and what analyze counts in them."""
    lines = INCIDENT.read_text(errors="surrogateescape").splitlines()[:2000]
    path = tmp_path_factory.mktemp("good") / "good.log"
    path.write_text("\n".join(lines) + "\n", errors="surrogateescape")
    return lines, totals(path)


@pytest.mark.parametrize("line", OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys())
def test_out_of_range_stamp_alone_is_no_postfix_line(tmp_path: Path, line: str) -> None:
    log = tmp_path / "one.log"
    log.write_text(line + "\n")
    for args in (["analyze"], ["parse"], ["show", "user", "mallory@example.org"]):
        no_postfix(rg(*args, str(log)), 1, str(log))


@pytest.mark.parametrize("line", OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys())
def test_out_of_range_stamp_among_good_lines(tmp_path: Path, line: str,
                                             good: tuple[list[str], dict[str, int]]) -> None:
    """The good lines are analyzed as without it; the bad one is one more unparsed line."""
    lines, base = good
    log = tmp_path / "mixed.log"
    log.write_text("\n".join(lines[:1000] + [line] + lines[1000:]) + "\n", errors="surrogateescape")
    assert totals(log) == {**base, "lines": base["lines"] + 1, "unparsed": base["unparsed"] + 1}
    p = rg("parse", "--stats", str(log))
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines()[-1] == f"lines={base['lines'] + 1} unparsed={base['unparsed'] + 1}"
    assert "mallory" not in p.stdout
    shown = rg("show", "user", "admin", str(log))
    assert shown.returncode in (0, 1) and "Traceback" not in shown.stderr, shown.stderr
    assert "admin" in shown.stdout


def test_classic_stamps_in_a_file_from_year_10000(tmp_path: Path) -> None:
    """A classic stamp takes its year from the file's mtime: one set by a broken clock (year
    10000) is not a year to read the log in; --year outside 1970..9998 is a usage error."""
    log = tmp_path / "mail.log"
    log.write_text(INCIDENT.read_text(errors="surrogateescape"), errors="surrogateescape")
    expected = findings(log)
    os.utime(log, (253402300800.0 + 86400, 253402300800.0 + 86400))
    assert findings(log) == expected
    p = rg("analyze", "--year", "10000", str(log))
    assert p.returncode == 2 and "--year" in p.stderr and "Traceback" not in p.stderr
    p = rg("analyze", "--since", "0001-01-01T00:00:00+14:00", str(log))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr == ("relayguard: error: bad time '0001-01-01T00:00:00+14:00': give a time "
                        "between 1970 and 9998\n")
    p = rg("analyze", "--until", "10000000000d", str(log))  # before 1970
    assert p.stderr == "relayguard: error: bad time '10000000000d': give a time between 1970 and 9998\n"


def peak_rss_mb(args: list[str], stdin: Path | None = None) -> tuple[int, str, float]:
    """Exit status, stderr and peak RSS (MB) of `relayguard ARGS`, measured from a fresh parent
    (RUSAGE_CHILDREN keeps the largest child ever waited for: ours must be the only one)."""
    code = (
        "import resource, subprocess, sys, json\n"
        "fh = open(sys.argv[1], 'rb') if sys.argv[1] else subprocess.DEVNULL\n"
        "p = subprocess.run([sys.executable, '-m', 'relayguard', *sys.argv[2:]], stdin=fh,\n"
        "                   capture_output=True, text=True)\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps([p.returncode, p.stderr, rss]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(stdin or ""), *args], env=ENV,
                         capture_output=True, text=True, timeout=120, check=True)
    code_, err, rss = json.loads(out.stdout)
    return code_, err, rss


@pytest.fixture(scope="module")
def no_newline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 MiB without a newline, behind a Postfix header (which must not make it a Postfix
    line)."""
    path = tmp_path_factory.mktemp("big") / "big.log"
    with open(path, "wb") as fh:
        fh.write(b"Jun 21 08:34:30 mail postfix/smtpd[1]: connect from ")
        block = b"A" * (1 << 20)
        for _ in range(64):
            fh.write(block)
    return path


@pytest.mark.parametrize("how", ["plain", "gzip", "stdin"])
def test_64_mib_without_newline_in_bounded_memory(tmp_path: Path, no_newline: Path,
                                                  how: str) -> None:
    path, stdin, name = no_newline, None, str(no_newline)
    if how == "gzip":
        path = tmp_path / "big.log.gz"
        path.write_bytes(gzip.compress(no_newline.read_bytes(), compresslevel=1))
        name = str(path)
    elif how == "stdin":
        path, stdin, name = Path("-"), no_newline, "stdin"
    start = time.monotonic()
    rc, err, rss = peak_rss_mb(["analyze", str(path)], stdin)
    elapsed = time.monotonic() - start
    assert (rc, err) == (2, f"relayguard: error: no Postfix lines among 1 lines read from {name}: "
                            "is this a mail log?\n")
    assert rss < 150, f"peak RSS {rss:.0f} MB reading 64 MiB without a newline"
    assert elapsed < 60


def test_long_lines_among_good_lines(tmp_path: Path, good: tuple[list[str], dict[str, int]]) -> None:
    """A line of 100 KB (inside one read) and one of 3 MB (across reads), each with a Postfix
    line hidden past the cut: two unparsed lines, the hidden ones never read, the good lines
    analyzed as without them."""
    lines, base = good
    hidden = f"{lines[0][:15]} {BODY}"
    long1 = f"{lines[0][:15]} mail postfix/smtpd[1]: connect from " + "B" * 100_000 + hidden
    long2 = f"{lines[0][:15]} mail postfix/smtpd[1]: " + "C" * (3 << 20) + hidden
    log = tmp_path / "long.log"
    log.write_text("\n".join(lines[:500] + [long1] + lines[500:1500] + [long2] + lines[1500:])
                   + "\n", errors="surrogateescape")
    assert totals(log) == {**base, "lines": base["lines"] + 2, "unparsed": base["unparsed"] + 2}
    p = rg("parse", str(log))
    assert p.returncode == 0 and "mallory" not in p.stdout


def test_follower_cuts_a_long_line_written_across_polls(tmp_path: Path) -> None:
    """The watch follower: a 3 MiB line written in pieces over several polls is one cut
    (unparsed) line; the lines after it are read, and the checkpoint is at the end."""
    log = tmp_path / "mail.log"
    log.write_bytes(b"first\n")
    f = FileFollower(str(log))
    assert f.poll() == ["first"]
    with open(log, "ab") as fh:
        fh.write(b"X" * (3 << 20))
        fh.flush()
        got = f.poll()
        for _ in range(3):
            fh.write(b"Y" * (1 << 20))
            fh.flush()
            got += f.poll()
        fh.write(b"Y\nsecond\nthi")
        fh.flush()
        got += f.poll()
        fh.write(b"rd\n")
        fh.flush()
        got += f.poll()
    assert len(got) == 3, [x[:20] for x in got]
    assert got[0] == "X" * (64 << 10) + "\0"
    assert got[1:] == ["second", "third"]
    assert f.checkpoint().offset == log.stat().st_size
    f.close()
    # A restart from that checkpoint resumes exactly there.
    with open(log, "ab") as fh:
        fh.write(b"fourth\n")
    g = FileFollower(str(log), f.checkpoint())
    assert g.poll() == ["fourth"]
    g.close()


def test_watch_once_reads_past_hostile_lines(tmp_path: Path) -> None:
    """`watch --once` over a log with out-of-range stamps and long lines between brute-force
    failures: it does not stop; every failure is read and the attacker banned."""
    from click.testing import CliRunner

    from relayguard.cli import main

    log, state, conf = tmp_path / "mail.log", tmp_path / "state.db", tmp_path / "rg.toml"
    conf.write_text('[watch]\nqueue_poll = "0"\nmetrics_listen = ""\n'
                    '[analyze]\ntrusted = ["127.0.0.0/8"]\n[respond]\nsasl_access_map = ""\n')
    ip = "198.51.100.66"
    hostile = [*OUT_OF_RANGE.values(), f"{stamp()} mail postfix/smtpd[1]: " + "Z" * (2 << 20)]
    lines = []
    for i, bad in enumerate(hostile):
        lines += [bad, auth_failure(ip, f"user{i}")]
    log.write_text("\n".join(lines) + "\n")
    r = CliRunner().invoke(main, ["watch", "--once", "--config", str(conf), "--state", str(state),
                                  "--log", str(log)])
    assert r.exit_code == 0, r.output  # findings of medium severity only: 0
    assert f"banned {ip}" in r.output and "MEDIUM   auth_bruteforce" in r.output
    assert f"lines {len(lines)}, events {len(hostile)}" in r.output
