"""`relayguard password-check`: the password comes from standard input, never from argv."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from relayguard.audit.password import check_password

STRONG = "Glacier-Umbrella-Tractor-93"


def rg(*args: str, stdin: str | None = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relayguard", "password-check", *args],
                          input=stdin, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("password, user, reason", [
    ("Sh0rt!x", None, "too short"),
    ("password123", None, "most common passwords"),
    ("P@ssw0rd2024!", None, "guessable"),
    ("alice.smith-Rocks-2024", "alice.smith@example.com", "contains the login"),
    ("Smith-Family-Holidays-77", "alice.smith@example.com", "part of the login ('smith')"),
    ("aaaaaaaaaaaaaaaaaaaaaaaa", None, "repetitive"),
    ("lowercaseonlyxyzq", None, "variety"),
])
def test_weak_passwords_with_reasons(password: str, user: str | None, reason: str) -> None:
    verdict = check_password(password, user)
    assert not verdict.ok
    assert any(reason in r for r in verdict.reasons), verdict.reasons
    assert password not in json.dumps(verdict.to_dict())  # never echoed back


def test_strong_password_and_passphrase() -> None:
    assert check_password(STRONG, "alice@example.com").ok
    passphrase = check_password("correct horse battery staple lamp", "bob")
    assert passphrase.ok, passphrase.reasons  # 30+ characters: variety not required
    assert passphrase.score is not None and passphrase.score >= 3


def test_cli_reads_stdin() -> None:
    ok = rg("--user", "alice@example.com", "--format", "json", stdin=STRONG + "\n")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["ok"] is True and data["length"] == len(STRONG) and data["reasons"] == []
    weak = rg("--user", "alice", stdin="alice2024\n")
    assert weak.returncode == 1
    assert "WEAK" in weak.stdout and "contains the login" in weak.stdout
    assert "alice2024" not in weak.stdout + weak.stderr


def test_cli_min_length_from_config(tmp_path) -> None:
    conf = tmp_path / "relayguard.toml"
    conf.write_text("[password]\nmin_length = 40\n")
    r = rg("--config", str(conf), "--format", "json", stdin=STRONG + "\n")
    assert r.returncode == 1
    assert any("at least 40" in x for x in json.loads(r.stdout)["reasons"])


@pytest.mark.parametrize("args", [
    ["hunter2-Secret-Pass"],
    ["--user", "alice", "hunter2-Secret-Pass"],
    ["--password", "hunter2-Secret-Pass"],
    ["--password=hunter2-Secret-Pass"],
])
def test_password_on_the_command_line_is_refused(args: list[str]) -> None:
    r = rg(*args, stdin=STRONG + "\n")
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("relayguard: error: the password is never taken from the command")
    assert "standard input" in r.stderr
    assert "hunter2" not in r.stderr  # not even in the error message
    assert "Traceback" not in r.stderr


def test_empty_stdin_is_an_input_error() -> None:
    r = rg(stdin="")
    assert r.returncode == 2
    assert r.stderr.strip() == "relayguard: error: no password on standard input (one line expected)"


def test_help_explains_stdin() -> None:
    r = rg("--help", stdin=None)
    assert r.returncode == 0
    assert "standard input" in r.stdout and "never from the command line" in r.stdout
