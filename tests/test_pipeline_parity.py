"""`relayguard analyze` and `relayguard watch --once` are one pipeline: on the same log, with
the same configuration (geo databases included) and a window wide enough to hold the whole log,
they report the same findings — kind, subject, severity, score, summary and evidence — and count
the same messages. analyze's findings are read from its JSON, watch's from the state database
(where the dashboard reads them)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from logbuilder import LogBuilder
from pfguard import system_env
from relayguard.state import Store

geodb = pytest.importorskip("geodb", reason="test database builder (mmdb-writer) not installed")

EXAMPLE = Path(__file__).parent.parent / "examples" / "incident.log"
ADDRESSES = ["46.48.1.9", "81.2.69.160", "216.160.83.56", "89.160.20.129", "2.125.160.216", "1.128.0.9"]


def rg(*args: str) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", "relayguard", *args], capture_output=True, text=True,
                       env=system_env(TZ="UTC"), timeout=300)
    assert p.returncode in (0, 1), p.stderr
    return p


def config(tmp_path: Path, extra: str = "") -> Path:
    country_db, asn_db = geodb.build_geo_dbs(tmp_path / "geo")
    conf = tmp_path / "relayguard.toml"
    conf.write_text(
        f'[geo]\ncountry_db = "{country_db}"\nasn_db = "{asn_db}"\n'
        '[analyze]\ntrusted = ["127.0.0.0/8", "192.168.0.0/16", "10.0.0.0/8"]\n'
        # The whole log in the window, however old it is; no queue poll, no /metrics.
        '[watch]\nwindow = "1000d"\nignore_older = "0"\nqueue_poll = "0"\nmetrics_listen = ""\n'
        '[respond]\nsasl_access_map = ""\nauth_bruteforce = "alert"\n' + extra)
    return conf


def both(log: Path, conf: Path, tmp_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """analyze's JSON; watch's findings (state database) and the messages it counted."""
    # No --year: both infer it the same way (analyze from the file's mtime, watch from now).
    doc = json.loads(rg("analyze", str(log), "--format", "json", "--config", str(conf)).stdout)
    state = tmp_path / "state.db"
    out = rg("watch", "--once", "--config", str(conf), "--state", str(state), "--log", str(log)).stdout
    with Store(state) as store:
        found = store.findings()
    messages = re.search(r"messages (\d+)", out)
    assert messages, out
    return doc, found, int(messages.group(1))


def same(doc: dict[str, Any], watched: list[dict[str, Any]]) -> None:
    def key(f: dict[str, Any]) -> tuple[Any, ...]:
        return (f["kind"], f["subject"], f["severity"], f["score"], f["summary"])

    assert [key(f) for f in watched] == [key(f) for f in doc["findings"]]
    for w, a in zip(watched, doc["findings"], strict=True):
        assert w["evidence"] == a["evidence"], (w["kind"], w["subject"])


def test_geo_spread_and_queue_surge(tmp_path: Path) -> None:
    """The account seen from 4 countries / 6 networks (watch had no geo: 45 instead of 50), and
    a queue surge from the log (watch never saw one)."""
    log = LogBuilder()
    for i in range(30):
        log.message(ADDRESSES[i % 6], user="mallory", sender="mallory@ourdomain.example",
                    rcpts=[f"x{i}@d{i % 7}.example"])
        log.advance(900)
    for i in range(12):  # deferred, still in the queue at the end
        log.message("81.2.69.161", user="bob", sender="bob@ourdomain.example",
                    rcpts=[f"y{i}@slow.example"], status="deferred")
        log.advance(5)
    path = log.write(tmp_path / "mail.log")
    conf = config(tmp_path, "[detect.queue_surge]\nthreshold = 10\n")
    doc, watched, messages = both(path, conf, tmp_path)
    spread = next(f for f in doc["findings"] if f["kind"] == "compromised_account")
    assert "4 countries / 6 networks" in spread["summary"] and spread["evidence"]["countries"] == 4
    assert any(f["kind"] == "queue_surge" for f in doc["findings"])
    same(doc, watched)
    assert messages == doc["totals"]["messages"] == 42


def test_bundled_incident(tmp_path: Path) -> None:
    """The simulated incident: watch counted 151 messages for admin where analyze counted 132
    (messages counted when still queued were counted again when swept)."""
    log = tmp_path / "incident.log"
    shutil.copyfile(EXAMPLE, log)
    doc, watched, messages = both(log, config(tmp_path), tmp_path)
    admin = next(f for f in doc["findings"] if f["kind"] == "compromised_account")
    assert admin["subject"] == "admin" and admin["evidence"]["messages"] == 132
    assert {f["kind"] for f in doc["findings"]} >= {"compromised_account", "trusted_host_relay",
                                                     "auth_bruteforce", "direct_smtp", "blocklisted"}
    same(doc, watched)
    assert messages == doc["totals"]["messages"]
