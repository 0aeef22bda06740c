"""The dashboard in a real browser: token, findings and bans shown (hostile text stays text),
and one action end to end — unban, confirmed, with its audit entry."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from selenium.webdriver.support.wait import WebDriverWait

from browser import chromium, console_errors
from relayguard.state.shared import Ban, Lock, SqliteShared
from relayguard.state.store import Store

TOKEN = "test-token-0123456789"
HOSTILE = '<script>alert(1)</script>"x;touch /tmp/pwned"@evil.example'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def dashboard(tmp_path: Path):
    db = tmp_path / "state.db"
    store = Store(db)
    shared = SqliteShared(store)
    now = time.time()
    shared.add_ban(Ban("91.200.12.7", "auth_bruteforce: 12 failures", now, now + 1200))
    shared.add_ban(Ban("198.51.100.0/24", "direct_smtp", now, None, source="admin"))
    shared.add_lock(Lock("admin", "compromised_account", now))
    store.save_finding({"kind": "compromised_account", "subject": HOSTILE, "severity": "critical",
                        "score": 95, "summary": f"Account {HOSTILE}: password guessed"})
    store.close()
    port = _free_port()
    # Bans and locks live in the state only: the test must not write maps under /etc/postfix.
    conf = tmp_path / "relayguard.toml"
    conf.write_text('[bruteforce]\nban_backend = "state"\n[respond]\nsasl_access_map = ""\n')
    proc = subprocess.Popen([sys.executable, "-m", "relayguard", "serve", "--listen", f"127.0.0.1:{port}",
                             "--token", TOKEN, "--state", str(db), "--config-dir", str(tmp_path / "nope"),
                             "--config", str(conf)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{base}/?token={TOKEN}", timeout=1)
            break
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None:
                pytest.fail(f"relayguard serve exited: {proc.stderr.read()}")
            time.sleep(0.1)
    yield base, db
    proc.terminate()
    proc.wait(timeout=10)


def test_token_required(dashboard) -> None:
    base, _ = dashboard
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/", timeout=5)
    assert err.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/?token=wrong", timeout=5)
    assert err.value.code == 401
    req = urllib.request.Request(f"{base}/unban", data=b"network=91.200.12.7",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as err:  # no CSRF value: refused
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 403


def test_unban_end_to_end_in_chromium(dashboard) -> None:
    base, db = dashboard
    with chromium() as driver:
        driver.get(f"{base}/?token={TOKEN}")
        body = driver.find_element("tag name", "body").text
        assert HOSTILE in body  # the finding's hostile subject, shown as text
        assert "91.200.12.7" in body and "198.51.100.0/24" in body and "admin" in body
        assert "queue not read" in body  # no Postfix at that config dir: said, not a crash
        assert console_errors(driver) == []
        row = driver.find_element("xpath", "//table[@id='bans']//tr[td[1][text()='91.200.12.7']]")
        row.find_element("link text", "Unban…").click()
        # A click that navigates can return before the next page is there: wait for it.
        question = WebDriverWait(driver, 10).until(lambda d: d.find_element("id", "question"))
        assert "Lift the ban on 91.200.12.7" in question.text
        driver.find_element("id", "confirm").click()
        message = WebDriverWait(driver, 10).until(lambda d: d.find_element("id", "message"))
        assert "Unbanned 91.200.12.7" in message.text
        bans = driver.find_element("id", "bans").text
        assert "91.200.12.7" not in bans and "198.51.100.0/24" in bans
        assert "unban" in driver.find_element("id", "history").text
        assert console_errors(driver) == []
    store = Store(db)
    try:
        assert [b.network for b in SqliteShared(store).bans()] == ["198.51.100.0/24"]
        entry = store.history(limit=1)[0]
        assert entry["action"] == "unban" and json.loads(json.dumps(entry["selector"]))["network"] == "91.200.12.7"
    finally:
        store.close()


def test_unlock_with_csrf_over_http(dashboard) -> None:
    import hashlib
    import hmac
    import urllib.parse

    base, db = dashboard
    csrf = hmac.new(TOKEN.encode(), b"relayguard-csrf", hashlib.sha256).hexdigest()
    page = urllib.request.urlopen(urllib.request.Request(
        f"{base}/unlock?user=admin", headers={"Authorization": f"Bearer {TOKEN}"}), timeout=5).read().decode()
    assert "Unlock the account admin?" in page and csrf in page
    body = urllib.parse.urlencode({"csrf": csrf, "user": "admin"}).encode()
    resp = urllib.request.urlopen(urllib.request.Request(
        f"{base}/unlock", data=body, headers={"Authorization": f"Bearer {TOKEN}"}), timeout=10)
    assert "Unlocked admin" in resp.read().decode()  # the redirect target shows the outcome
    store = Store(db)
    try:
        assert SqliteShared(store).locks() == []
        assert store.history(limit=1)[0]["action"] == "unlock"
    finally:
        store.close()
