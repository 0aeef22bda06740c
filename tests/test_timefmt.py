"""One time format in every output: ISO 8601 with the offset of `[ui] timezone` (UTC by
default) in JSON, whatever the machine's TZ; text names the zone it shows."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from pfguard import system_env

ROOT = Path(__file__).resolve().parent.parent
INCIDENT = ROOT / "examples" / "incident.log"  # first line: "Jun 21 00:00:14", no zone


def rg(*args: str, tz: str, cfg: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--config", str(cfg)] if cfg else []
    return subprocess.run([sys.executable, "-m", "relayguard", *args, *extra], capture_output=True,
                          text=True, env=system_env(TZ=tz), timeout=120)


def config(tmp_path: Path, zone: str) -> Path:
    p = tmp_path / f"{zone.replace('/', '_')}.toml"
    p.write_text(f'[ui]\ntimezone = "{zone}"\n'
                 '[respond]\nsasl_access_map = ""\nqualify_logins = false\n')
    return p


def analyze_json(tz: str, cfg: Path | None = None) -> dict[str, object]:
    r = rg("analyze", str(INCIDENT), "--year", "2026", "--format", "json", tz=tz, cfg=cfg)
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_analyze_json_is_utc_whatever_the_machine_zone() -> None:
    # The log's times are New York wall clock (syslog carries no zone): 00:00:14 EDT is 04:00:14 UTC.
    doc = analyze_json("America/New_York")
    assert doc["period"]["start"] == "2026-06-21T04:00:14+00:00"  # type: ignore[index]
    stamps = [f[k] for f in doc["findings"] for k in ("first_seen", "last_seen")]  # type: ignore[union-attr]
    assert stamps and all(s.endswith("+00:00") for s in stamps)
    assert analyze_json("UTC")["period"]["start"] == "2026-06-21T00:00:14+00:00"  # type: ignore[index]


@pytest.mark.parametrize(("zone", "start"), [("local", "2026-06-21T00:00:14-04:00"),
                                             ("Asia/Kolkata", "2026-06-21T09:30:14+05:30")])
def test_analyze_json_in_the_configured_zone(tmp_path: Path, zone: str, start: str) -> None:
    doc = analyze_json("America/New_York", config(tmp_path, zone))
    assert doc["period"]["start"] == start  # type: ignore[index]
    offset = start[-6:]
    assert all(f["first_seen"].endswith(offset) for f in doc["findings"])  # type: ignore[union-attr]


def test_analyze_text_names_its_zone(tmp_path: Path) -> None:
    r = rg("analyze", str(INCIDENT), "--year", "2026", tz="America/New_York")
    assert "2026-06-21 04:00:14 → " in r.stdout and " UTC " in r.stdout.splitlines()[0], r.stdout
    r = rg("analyze", str(INCIDENT), "--year", "2026", tz="America/New_York",
           cfg=config(tmp_path, "local"))
    assert "2026-06-21 00:00:14 → " in r.stdout and " America/New_York " in r.stdout.splitlines()[0], r.stdout


def test_ban_list_follows_the_same_zone(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    paris = config(tmp_path, "Europe/Paris")
    before = time.time()
    r = rg("ban", "add", "203.0.113.7", "--for", "1h", "--state", str(state), tz="UTC", cfg=paris)
    assert r.returncode == 0, r.stderr
    r = rg("ban", "list", "--format", "json", "--state", str(state), tz="UTC", cfg=paris)
    (row,) = json.loads(r.stdout)
    since = datetime.fromisoformat(row["since"])
    assert row["since"][-6:] in ("+01:00", "+02:00") and abs(since.timestamp() - before) < 60
    assert datetime.fromisoformat(row["expires"]).timestamp() - since.timestamp() == pytest.approx(3600, abs=2)
    r = rg("ban", "list", "--state", str(state), tz="UTC", cfg=paris)
    assert "Since (Europe/Paris)" in r.stdout and since.strftime("%Y-%m-%d %H:%M:%S") in r.stdout
    r = rg("ban", "list", "--format", "json", "--state", str(state), tz="Asia/Tokyo")
    assert json.loads(r.stdout)[0]["since"].endswith("+00:00")  # default: UTC


def test_unknown_zone_is_a_one_line_error(tmp_path: Path) -> None:
    r = rg("analyze", str(INCIDENT), "--year", "2026", tz="UTC", cfg=config(tmp_path, "Mars/Olympus"))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("relayguard: error: [ui] timezone: unknown time zone 'Mars/Olympus'")
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
