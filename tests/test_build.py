"""The package the suite imports is the compiled build whenever it could have been.

`make test` installs relayguard regularly (not editable) with a C compiler at hand, so the hot
path must be compiled there: a silent fallback to pure Python (say, a hot module that starts
importing an optional dependency mypyc cannot see at build time) fails here.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig

import pytest

from relayguard import buildinfo


def compiler() -> str | None:
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    return shutil.which(cc[0]) if cc else None


def version_line() -> str:
    p = subprocess.run([sys.executable, "-m", "relayguard", "--version"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    return p.stdout.strip()


def test_installed_package_is_compiled_when_it_can_be() -> None:
    if os.environ.get("RELAYGUARD_PURE") == "1":
        pytest.skip("RELAYGUARD_PURE=1: a pure-Python build was asked for")
    if compiler() is None:
        pytest.skip("no C compiler: the hot path cannot be compiled here")
    reason = buildinfo.recorded_reason()
    if reason is not None and reason.startswith(("not installed by", "RELAYGUARD_PURE=1")):
        pytest.skip(f"pure Python by choice: {reason}")
    assert buildinfo.pure_modules() == [], f"the hot path fell back to pure Python: {reason}"
    assert version_line().endswith("(compiled with mypyc)")


def test_version_says_how_the_hot_path_runs() -> None:
    line = version_line()
    assert line.startswith("relayguard "), line
    if buildinfo.pure_modules():
        reason = buildinfo.recorded_reason() or ""
        assert line.endswith(f"(pure Python: {reason})") or "imported from source" in line, line
    else:
        assert line.endswith("(compiled with mypyc)"), line
