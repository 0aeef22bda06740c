"""Is the hot path compiled? What `relayguard --version` says about the installed build.

setup.py compiles HOT_MODULES with mypyc when it can and records, in the generated module
`relayguard._build`, why it did not when it fell back to pure Python. Whether the modules are
compiled is checked here at run time (are they extension modules?), never taken from the record
alone: the record says why, the import system says what is in use.
"""

from __future__ import annotations

import importlib
import importlib.machinery

#: The modules setup.py compiles (its HOT list, as module names).
HOT_MODULES = (
    "relayguard.parse",
    "relayguard.parse.event",
    "relayguard.parse.postfix",
    "relayguard.parse.syslog",
    "relayguard.parse.replies",
    "relayguard.correlate.messages",
    "relayguard.aggregate",
    "relayguard.pipeline.run",
    "relayguard.sources.files",
    "relayguard.timefmt",
)


def pure_modules() -> list[str]:
    """The hot modules that are imported as Python source rather than as extension modules."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    out = []
    for name in HOT_MODULES:
        origin = getattr(importlib.import_module(name).__spec__, "origin", None) or ""
        if not origin.endswith(suffixes):
            out.append(name)
    return out


def recorded_reason() -> str | None:
    """Why the build that installed this package fell back to pure Python (None: it compiled)."""
    try:
        from . import _build  # type: ignore[attr-defined]  # written by setup.py at build time
    except ImportError:
        return "not installed by setup.py's build (a source tree or an editable install)"
    reason: str | None = _build.PURE_REASON
    return reason


def describe() -> str:
    """`compiled with mypyc`, or `pure Python: <why>`."""
    pure = pure_modules()
    if not pure:
        return "compiled with mypyc"
    reason = recorded_reason()
    if reason is None:  # built compiled, yet the source modules are the ones imported
        reason = f"{pure[0]} is imported from source, not from the compiled build"
    return f"pure Python: {reason}"
