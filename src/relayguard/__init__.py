"""relayguard: find who is sending spam through a Postfix server, stop it, prevent it.

The Python API (the commands are built on it)::

    import relayguard

    result = relayguard.analyze("/var/log/mail.log", {"detect": {"auth_bruteforce": {"min_failures": 50}}})
    for f in result.findings:
        print(f.severity, f.kind, f.subject, f.summary)

Everything is imported on first use: `import relayguard` itself loads nothing else.
"""

from __future__ import annotations

import sys
import types
from typing import Any

# No import of the rest here, not even for type checking: every module mypyc compiles sits in
# this package, so what this file imports is type-checked with the compiled path (in a build
# environment without the third-party packages).
__all__ = ["Analysis", "ConfigError", "Finding", "InputError", "Investigation", "analyze",
           "investigate", "load_config"]

_LAZY = {
    "analyze": ("api", "analyze"),
    "investigate": ("api", "investigate"),
    "load_config": ("api", "load_config"),
    "Analysis": ("analysis", "Analysis"),
    "ConfigError": ("config", "ConfigError"),
    "Finding": ("detect.finding", "Finding"),
    "InputError": ("sources", "InputError"),
    "Investigation": ("investigate", "Investigation"),
}


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # Importing the submodule `relayguard.investigate` binds it on the package, which would
        # hide the API's `investigate` (served by __getattr__): the function stays reachable.
        if name == "investigate" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
