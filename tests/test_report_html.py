"""The HTML incident report in a real browser: renders without console errors, has its charts,
and shows a hostile sender address as text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from browser import chromium, console_errors
from logbuilder import LogBuilder
from pfguard import system_env

HOSTILE = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>@evil.example'


def _incident(tmp_path: Path) -> Path:
    log = LogBuilder()
    for i in range(10):
        log.auth_failure("91.200.12.7", ["admin", "info"][i % 2])
        log.advance(5)
    for i in range(80):
        log.message(f"46.48.{i % 16}.9", user="admin", sender=HOSTILE if i % 4 == 0 else f"x{i}@spam.example",
                    rcpts=[f"v{i}@t{i % 30}.example"], status="deferred" if i % 2 else "sent")
        log.advance(20)
    for i in range(30):
        log.message("192.168.1.20", name="news", sender="news@ourdomain.example", rcpts=[f"r{i}@isp.example"])
        log.advance(120)
    return log.write(tmp_path / "mail.log")


def test_html_report_renders_in_chromium(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    p = subprocess.run([sys.executable, "-m", "relayguard", "analyze", str(_incident(tmp_path)), "--year", "2026",
                        "--format", "html", "-o", str(report)],
                       capture_output=True, text=True, env=system_env(TZ="UTC"), timeout=120)
    assert p.returncode == 1, p.stderr
    text = report.read_text()
    assert "<script" not in text.replace("&lt;script", "")  # self-contained, no script of ours either
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched
    with chromium() as driver:
        driver.get(report.as_uri())
        assert driver.title.startswith("relayguard incident report")  # no injected title
        assert console_errors(driver) == []
        charts = driver.find_elements("css selector", "svg.bars")
        assert len(charts) >= 3  # timeline, auth failures, per-finding activity
        assert driver.find_elements("css selector", "svg.bars rect")
        assert driver.find_elements("css selector", 'section.finding[data-kind="compromised_account"]')
        body = driver.find_element("tag name", "body").text
        assert HOSTILE in body  # shown as text, verbatim
        assert driver.execute_script("return document.querySelectorAll('main script, main img').length") == 0
        assert "relayguard lock admin" in body
