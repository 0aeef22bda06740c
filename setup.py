"""Build hook: compile the hot path (parse → correlate → aggregate) with mypyc when possible.

The modules stay plain, type-annotated Python; mypyc turns them into C extensions, which roughly
halves the time `analyze` spends per line. If mypyc or the C compiler is unavailable, or
RELAYGUARD_PURE=1 is set (useful with `pip install -e .` while editing), the pure-Python modules
are installed instead and everything works, only slower.
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

HOT = [
    "src/relayguard/parse/__init__.py",
    "src/relayguard/parse/event.py",
    "src/relayguard/parse/postfix.py",
    "src/relayguard/parse/syslog.py",
    "src/relayguard/correlate/messages.py",
    "src/relayguard/aggregate.py",
    "src/relayguard/pipeline/run.py",
    "src/relayguard/sources/files.py",
]


class OptionalBuildExt(build_ext):
    """All or nothing: if any extension fails to compile, install none (the .py files remain),
    since a module shim without mypyc's shared library would not even import."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 — a compiler problem must not fail the install
            print(f"relayguard: compiling the hot path failed ({exc}); installing pure Python",
                  file=sys.stderr)
            for ext in self.extensions:
                path = self.get_ext_fullpath(ext.name)
                if os.path.exists(path):
                    os.remove(path)
            self.extensions = []


ext_modules = []
if os.environ.get("RELAYGUARD_PURE") != "1":
    try:
        from mypyc.build import mypycify

        ext_modules = mypycify(HOT, opt_level="3")
    except (Exception, SystemExit) as exc:  # noqa: BLE001 — any failure: install pure Python
        print(f"relayguard: not compiling the hot path ({exc}); pure Python", file=sys.stderr)

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
