"""The suite's guard against the system Postfix configuration (a pytest plugin, see conftest.py).

No test may read or write /etc/postfix: every Postfix program run during the tests must address a
private instance with ``-c DIR`` (``-C DIR`` for sendmail) or ``MAIL_CONFIG=DIR``.  At start-up
the plugin puts a directory of shims first on ``PATH``, one per Postfix program found in
/usr/sbin.  A shim execs the real program when it is aimed at a private directory; otherwise it
records its argv, says why on stderr and exits 97 without running anything.  The autouse fixture
``postfix_config_guard`` then fails the test during which the call happened, naming the argv.

Commands whose defaults come from "the system's Postfix" (``analyze`` without ``--trusted`` runs
``postconf -h mynetworks``) are run by the tests with :func:`system_env`: ``MAIL_CONFIG`` then
points at a private stand-in for the system configuration, so the default path is exercised
with a known ``mynetworks`` whatever the machine has.

Library code must look programs up on ``PATH`` first for the shims to see its calls (a lookup
that goes straight to /usr/sbin bypasses them); the relayguard helpers all do.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

GUARDED = ("postalias", "postcat", "postconf", "postdrop", "postfix", "postlog", "postmap",
           "postqueue", "postsuper", "sendmail")
REAL_DIR = Path("/usr/sbin")
SYSTEM_CONFIG = "/etc/postfix"
REFUSED = 97  # the shim's exit status: not one the real programs use
#: The stand-in system configuration: what the tests assume of "the system's" Postfix.
STAND_IN_MAIN_CF = "compatibility_level = 3.6\nmynetworks = 127.0.0.0/8 [::1]/128\n"

SHIM = r"""#!/bin/sh
# relayguard test guard (tests/pfguard.py): run {real} only against a private configuration.
private() {{  # is "$1" a configuration directory other than the system's?
  d=$(cd "$1" 2>/dev/null && pwd -P) || d=$1
  case "$d" in ""|{system}|{system}/|{system_real}|{system_real}/) return 1 ;; esac
  return 0
}}
if [ -n "${{MAIL_CONFIG-}}" ] && private "$MAIL_CONFIG"; then exec {real} "$@"; fi
prev=
for a in "$@"; do
  if [ "$prev" = {opt} ] && private "$a"; then exec {real} "$@"; fi
  case "$a" in {opt}?*) if private "${{a#{opt}}}"; then exec {real} "$@"; fi ;; esac
  prev=$a
done
{{ printf '%s' {name}; for a in "$@"; do printf ' %s' "$a"; done; echo; }} >> {log}
echo "relayguard test guard: refused '{name} $*': no {opt} PRIVATE_DIR (nor MAIL_CONFIG): it would use {system}" >&2
exit {refused}
"""

_KEY = pytest.StashKey["Guard"]()
_active: list[Guard] = []  # the guard of this session, for system_env()


def system_env(**extra: str) -> dict[str, str]:
    """The environment for a command that uses "the system's Postfix": the stand-in."""
    if not _active:
        raise RuntimeError("the pfguard plugin is not loaded (see tests/conftest.py)")
    return {**os.environ, "MAIL_CONFIG": str(_active[-1].stand_in), **extra}


class Guard:
    """The shim directory and the file where the shims record refused calls."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="relayguard-pfguard-"))
        self.bin = self.base / "bin"
        self.log = self.base / "refused"
        self.stand_in = self.base / "system-stand-in"
        self.saved_path = os.environ.get("PATH", "")

    def install(self) -> list[str]:
        """Write the shims and put them first on PATH; returns the names guarded."""
        self.bin.mkdir()
        self.log.touch()
        self.stand_in.mkdir()
        (self.stand_in / "main.cf").write_text(STAND_IN_MAIN_CF)
        system_real = os.path.realpath(SYSTEM_CONFIG)
        names = []
        for name in GUARDED:
            real = REAL_DIR / name
            if not os.access(real, os.X_OK):
                continue
            shim = self.bin / name
            shim.write_text(SHIM.format(
                real=shlex.quote(str(real)), name=shlex.quote(name), log=shlex.quote(str(self.log)),
                opt="-C" if name == "sendmail" else "-c", system=SYSTEM_CONFIG,
                system_real=shlex.quote(system_real), refused=REFUSED))
            shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            names.append(name)
        os.environ["PATH"] = os.pathsep.join([str(self.bin), self.saved_path])
        return names

    def uninstall(self) -> None:
        os.environ["PATH"] = self.saved_path
        shutil.rmtree(self.base, ignore_errors=True)

    def offset(self) -> int:
        return self.log.stat().st_size

    def refused_since(self, offset: int) -> list[str]:
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace").splitlines()


def pytest_configure(config: pytest.Config) -> None:
    # At configure time, not in a fixture: modules look programs up when they are collected.
    guard = Guard()
    guard.install()
    config.stash[_KEY] = guard
    _active.append(guard)


def pytest_unconfigure(config: pytest.Config) -> None:
    guard = config.stash.get(_KEY, None)
    if guard is not None:
        _active.remove(guard)
        guard.uninstall()


@pytest.fixture(autouse=True)
def postfix_config_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test during which a Postfix program was called without a private config."""
    guard = request.config.stash[_KEY]
    start = guard.offset()
    yield
    refused = guard.refused_since(start)
    if refused:
        pytest.fail("Postfix program called without -c PRIVATE_DIR (it would use "
                    f"{SYSTEM_CONFIG}): " + "; ".join(refused), pytrace=False)
