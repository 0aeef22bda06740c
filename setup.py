"""Build hook: compile the hot path (parse → correlate → aggregate) with mypyc when possible.

The modules stay plain, type-annotated Python; mypyc turns them into C extensions, which roughly
halves the time `analyze` spends per line. If the compiler is unavailable, or
RELAYGUARD_PURE=1 is set (useful with `pip install -e .` while editing), the pure-Python modules
are installed instead and everything works, only slower.
"""

import os
import sys

from setuptools import setup

HOT = [
    "src/relayguard/parse/__init__.py",
    "src/relayguard/parse/event.py",
    "src/relayguard/parse/postfix.py",
    "src/relayguard/parse/syslog.py",
    "src/relayguard/correlate/messages.py",
    "src/relayguard/aggregate.py",
    "src/relayguard/pipeline.py",
    "src/relayguard/sources/files.py",
]

ext_modules = []
if os.environ.get("RELAYGUARD_PURE") != "1":
    try:
        from mypyc.build import mypycify

        ext_modules = mypycify(HOT, opt_level="3")
    except (Exception, SystemExit) as exc:  # noqa: BLE001 — any failure: install pure Python
        print(f"relayguard: not compiling the hot path ({exc}); pure Python", file=sys.stderr)

setup(ext_modules=ext_modules)
