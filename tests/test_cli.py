"""The `relayguard` command as a user runs it: sources, formats, exit codes, errors."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import subprocess
import sys
from pathlib import Path

import pytest

from logbuilder import LogBuilder
from pfguard import system_env

ENV = system_env(TZ="UTC")


def rg(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relayguard", *args], input=stdin.decode() if stdin else None,
                          capture_output=True, text=True, env=ENV, timeout=120)


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    log = LogBuilder()
    for i in range(12):
        log.auth_failure("91.200.12.7", ["admin", "info", "test"][i % 3])
        log.advance(2)
    for i in range(60):
        log.message(f"46.48.{i % 20}.9", user="admin", sender=f"x{i}@spam.example",
                    rcpts=[f"v{i}@t{i % 25}.example"], status="deferred" if i % 2 else "sent")
        log.advance(3)
    log.message("91.200.12.7", user="admin", sender="admin@ourdomain.example")
    return log.write(tmp_path_factory.mktemp("cli") / "mail.log")


def test_analyze_json_contract(incident: Path) -> None:
    p = rg("analyze", str(incident), "--format", "json", "--year", "2026", "--trusted", "192.168.0.0/16")
    assert p.returncode == 1, p.stderr
    doc = json.loads(p.stdout)
    assert doc["schema"] == "relayguard.analysis/1"
    assert set(doc["totals"]) >= {"lines", "unparsed", "messages", "sent", "deferred", "bounced",
                                  "rejected", "auth_failures"}
    assert doc["totals"]["auth_failures"] == 12
    f = {(x["kind"], x["subject"]): x for x in doc["findings"]}
    acct = f[("compromised_account", "admin")]
    assert acct["severity"] == "critical"
    assert {"messages", "recipients", "client_ips", "deferred_ratio", "examples"} <= set(acct["evidence"])
    assert acct["first_seen"].startswith("2026-06-21T")
    assert any(a["command"] == "relayguard lock admin" for a in acct["actions"])
    assert doc["top"]["sasl_users"][0]["name"] == "admin"


def test_text_report_names_culprits(incident: Path) -> None:
    p = rg("analyze", str(incident), "--year", "2026")
    assert p.returncode == 1
    assert "compromised_account" in p.stdout and "admin" in p.stdout
    assert "relayguard lock admin" in p.stdout


@pytest.mark.parametrize("packer", [gzip.compress, bz2.compress, lzma.compress])
def test_compressed_sources_detected_by_content(incident: Path, tmp_path: Path, packer) -> None:
    odd = tmp_path / "mail.log.1"  # no telling extension
    odd.write_bytes(packer(incident.read_bytes()))
    plain = json.loads(rg("analyze", str(incident), "--format", "json", "--year", "2026").stdout)
    packed = json.loads(rg("analyze", str(odd), "--format", "json", "--year", "2026").stdout)
    assert packed["totals"] == plain["totals"]
    assert packed["findings"] == plain["findings"]


def test_stdin(incident: Path) -> None:
    p = rg("analyze", "-", "--format", "json", "--year", "2026", stdin=incident.read_bytes())
    assert json.loads(p.stdout)["totals"]["auth_failures"] == 12


def test_rotated_set_read_oldest_first(incident: Path, tmp_path: Path) -> None:
    lines = incident.read_text().splitlines(keepends=True)
    third = len(lines) // 3
    (tmp_path / "mail.log.2.gz").write_bytes(gzip.compress("".join(lines[:third]).encode()))
    (tmp_path / "mail.log.1").write_text("".join(lines[third:2 * third]))
    (tmp_path / "mail.log").write_text("".join(lines[2 * third:]))
    names = [str(tmp_path / n) for n in ("mail.log", "mail.log.2.gz", "mail.log.1")]  # any order
    whole = json.loads(rg("analyze", str(incident), "--format", "json", "--year", "2026").stdout)
    parts = json.loads(rg("analyze", *names, "--format", "json", "--year", "2026").stdout)
    assert parts["findings"] == whole["findings"]
    assert parts["period"] == whole["period"]


def test_garbage_and_binary_lines_are_counted(tmp_path: Path, incident: Path) -> None:
    bad = tmp_path / "bad.log"
    bad.write_bytes(incident.read_bytes() + b"\x00\x01\x02 binary\n\xff\xfe not utf-8\ntruncated li")
    p = rg("analyze", str(bad), "--format", "json", "--year", "2026")
    doc = json.loads(p.stdout)
    assert doc["totals"]["unparsed"] == 3
    assert "Traceback" not in p.stderr


def test_missing_file_is_one_line_error() -> None:
    p = rg("analyze", "/nonexistent/mail.log")
    assert p.returncode == 2
    assert p.stderr.strip() == "relayguard: error: /nonexistent/mail.log: no such file"


def test_bad_config_is_one_line_error(tmp_path: Path, incident: Path) -> None:
    cfg = tmp_path / "rg.toml"
    cfg.write_text("[detect.compromised_account]\nno_such_key = 1\n")
    p = rg("analyze", str(incident), "--config", str(cfg))
    assert p.returncode == 2
    assert "detect.compromised_account.no_such_key: unknown setting (known: min_messages" in p.stderr
    cfg.write_text("[detect.compromised_account\n")
    p = rg("analyze", str(incident), "--config", str(cfg))
    assert p.returncode == 2 and "invalid TOML" in p.stderr and "Traceback" not in p.stderr


def test_config_changes_thresholds(tmp_path: Path, incident: Path) -> None:
    cfg = tmp_path / "rg.toml"
    cfg.write_text("[detect.auth_bruteforce]\nmin_failures = 50\n")
    doc = json.loads(rg("analyze", str(incident), "--format", "json", "--year", "2026",
                        "--config", str(cfg)).stdout)
    assert "auth_bruteforce" not in {f["kind"] for f in doc["findings"]}


def test_clean_log_exits_zero(tmp_path: Path) -> None:
    log = LogBuilder()
    log.message("203.0.113.5", user="alice", sender="alice@ourdomain.example")
    p = rg("analyze", str(log.write(tmp_path / "ok.log")), "--year", "2026")
    assert p.returncode == 0
    assert "No findings" in p.stdout


def test_parse_jsonl_and_stats(incident: Path) -> None:
    p = rg("parse", str(incident), "--stats", "--year", "2026")
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(rows) == len(incident.read_text().splitlines())
    assert {"ts", "host", "syslog_name", "service", "pid", "queue_id", "event"} <= set(rows[0])
    assert "lines=" in p.stderr and "unparsed=0" in p.stderr


def test_messages_jsonl(incident: Path) -> None:
    p = rg("messages", str(incident), "--year", "2026")
    msgs = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(msgs) == 61
    m = msgs[0]
    assert m["sasl_username"] == "admin" and m["client_ip"].startswith("46.48.")
    assert m["recipients"][0]["status"] in ("sent", "deferred")
    # deferred messages never got `removed`: they come last, still open
    assert msgs[-1]["removed"] is False


def test_help_everywhere() -> None:
    for cmd in ([], ["analyze"], ["parse"], ["messages"], ["simulate"]):
        p = rg(*cmd, "--help")
        assert p.returncode == 0 and "Usage:" in p.stdout


def test_simulate_then_analyze_finds_the_labels(tmp_path: Path) -> None:
    log, labels = tmp_path / "sim.log", tmp_path / "sim.json"
    p = rg("simulate", "--scenario", "all", "--lines", "20000", "--seed", "3", "-o", str(log),
           "--labels", str(labels))
    assert p.returncode == 0, p.stderr
    truth = json.loads(labels.read_text())
    doc = json.loads(rg("analyze", str(log), "--format", "json", "--year", "2026").stdout)
    found = {(f["kind"], f["subject"]): f["severity"] for f in doc["findings"]}
    for c in truth["culprits"]:
        if c.get("distributed"):
            assert c["subject"] in {u["username"] for u in doc["top"]["targeted_users"]}
            continue
        assert (c["kind"], c["subject"]) in found, c
    for b in truth["benign"]:
        assert found.get((b["kind"], b["subject"])) not in ("high", "critical"), b
