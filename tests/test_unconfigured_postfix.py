"""Postfix installed without a configuration (Debian's "No configuration" answer leaves no
main.cf): a lock or a postfix-access ban cannot be enforced through maps there, so relayguard
says so, exits 2 and writes nothing into that directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def rg(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relayguard", *args, "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args, extra", [
    (("lock", "bob"), ""),
    (("ban", "add", "192.0.2.9", "--for", "20m"), '[bruteforce]\nban_backend = "postfix-access"\n'),
])
def test_no_main_cf_is_an_error_and_nothing_is_written(tmp_path: Path, args: tuple[str, ...],
                                                       extra: str) -> None:
    etc = tmp_path / "etc-postfix"  # an instance directory without main.cf
    etc.mkdir()
    cfg = tmp_path / "relayguard.toml"
    cfg.write_text(f'[state]\npath = "{tmp_path}/state.db"\n'
                   f'[respond]\npostfix_config_dir = "{etc}"\n{extra}')
    r = rg(cfg, *args)
    assert r.returncode == 2, r
    assert f"{etc}/main.cf does not exist" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert list(etc.iterdir()) == []
