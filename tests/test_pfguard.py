"""The suite's guard (pfguard.py) refuses Postfix programs aimed at the system configuration.

An inner pytest session, with the guard loaded as its plugin, runs tests that call postmap with
and without a private configuration; the outer test reads what that session reported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

POSTMAP = Path("/usr/sbin/postmap")

INNER = '''
import subprocess

def run(*argv, env=None):
    return subprocess.run(argv, capture_output=True, text=True, env=env)

def test_without_c():
    r = run("postmap", "-q", "key", "hash:/nonexistent/table")
    print("EXIT", r.returncode, r.stderr.strip())

def test_mail_config_system(private):
    env = {"PATH": __import__("os").environ["PATH"], "MAIL_CONFIG": "/etc/postfix/"}
    run("postmap", "-q", "key", "hash:/nonexistent/table", env=env)

def test_with_c(private):
    r = run("postmap", "-c", str(private), "-q", "key", f"texthash:{private}/table")
    assert r.returncode == 0 and r.stdout == "value\\n", r.stderr

def test_with_mail_config(private):
    env = {"PATH": __import__("os").environ["PATH"], "MAIL_CONFIG": str(private)}
    r = run("postmap", "-q", "key", f"texthash:{private}/table", env=env)
    assert r.returncode == 0 and r.stdout == "value\\n", r.stderr
'''

CONFTEST = '''
import pytest

@pytest.fixture
def private(tmp_path):
    (tmp_path / "main.cf").write_text("compatibility_level = 3.6\\n")
    (tmp_path / "table").write_text("key value\\n")
    return tmp_path
'''


@pytest.mark.skipif(not os.access(POSTMAP, os.X_OK), reason=f"{POSTMAP} not installed")
def test_guard_fails_the_test_that_calls_postmap_without_c(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "pfguard", "-p", "no:cacheprovider",
                        "-rA", "-s", "test_inner.py"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "4 passed, 2 errors" in out, out  # the guard fails them at teardown
    # The shim refused before the real postmap could open /etc/postfix/main.cf.
    assert "EXIT 97 relayguard test guard: refused 'postmap -q key hash:/nonexistent/table'" in out
    assert "fatal" not in out, out
    errors = [ln for ln in out.splitlines() if ln.startswith("ERROR ")]
    assert len(errors) == 2, out
    assert "test_without_c" in errors[0] and "test_mail_config_system" in errors[1], out
    assert ("Postfix program called without -c PRIVATE_DIR (it would use /etc/postfix): "
            "postmap -q key hash:/nonexistent/table") in out
    assert "PASSED test_inner.py::test_with_c" in out
    assert "PASSED test_inner.py::test_with_mail_config" in out


def test_the_suite_runs_under_the_guard() -> None:
    """This very session has the shims first on PATH (conftest.py loads the guard)."""
    first = os.environ["PATH"].split(os.pathsep)[0]
    assert "relayguard-pfguard-" in first
    if os.access(POSTMAP, os.X_OK):
        assert Path(first, "postmap").is_file()
