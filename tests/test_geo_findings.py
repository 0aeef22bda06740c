"""Where logins come from: with a MaxMind-format database (built by the test), findings and
`show` count countries and networks, and the compromised-account detector uses the spread."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from logbuilder import LogBuilder
from pfguard import system_env

geodb = pytest.importorskip("geodb", reason="test database builder (mmdb-writer) not installed")

ADDRESSES = ["46.48.1.9", "81.2.69.160", "216.160.83.56", "89.160.20.129", "2.125.160.216", "1.128.0.9"]


def _run(*args: str) -> dict:
    p = subprocess.run([sys.executable, "-m", "relayguard", *args, "--format", "json"],
                       capture_output=True, text=True, timeout=120, env=system_env(TZ="UTC"))
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout)


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path]:
    country_db, asn_db = geodb.build_geo_dbs(tmp_path)
    cfg = tmp_path / "relayguard.toml"
    cfg.write_text(f'[geo]\ncountry_db = "{country_db}"\nasn_db = "{asn_db}"\n')
    log = LogBuilder()
    for i in range(30):  # a login used from six addresses in five countries, a modest volume
        log.message(ADDRESSES[i % 6], user="mallory", sender="mallory@ourdomain.example",
                    rcpts=[f"x{i}@d{i % 7}.example"])
        log.advance(900)
    return log.write(tmp_path / "mail.log"), cfg


def test_countries_in_findings_and_show(setup: tuple[Path, Path], tmp_path: Path) -> None:
    log, cfg = setup
    doc = _run("analyze", str(log), "--year", "2026", "--config", str(cfg))
    f = next(x for x in doc["findings"] if x["kind"] == "compromised_account")
    assert f["evidence"]["countries"] == 4  # RU, GB (twice), US, SE; Telstra's address has no country
    assert "4 countries / 6 networks" in f["summary"]
    assert dict(f["evidence"]["top_countries"])["GB"] == 2
    without = _run("analyze", str(log), "--year", "2026")
    g = next((x for x in without["findings"] if x["kind"] == "compromised_account"), None)
    assert g is None or g["score"] < f["score"]  # the spread is what made it stand out
    shown = _run("show", "user", "mallory", str(log), "--year", "2026", "--config", str(cfg),
                 "--no-queue", "--state", str(tmp_path / "s.db"))
    assert shown["geo"]["46.48.1.9"]["country"] == "RU"
    assert shown["geo"]["46.48.1.9"]["asn"] == 12389
    assert len(shown["geo_spread"]["countries"]) == 4


def test_missing_database_is_one_line_error(setup: tuple[Path, Path], tmp_path: Path) -> None:
    log, _ = setup
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[geo]\ncountry_db = "/nonexistent/GeoLite2-Country.mmdb"\n')
    p = subprocess.run([sys.executable, "-m", "relayguard", "analyze", str(log), "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60, env=system_env())
    assert p.returncode == 2 and "Traceback" not in p.stderr and "country_db" in p.stderr
