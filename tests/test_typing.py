"""The modules mypyc compiles (setup.py HOT) are the ones `make test` type-checks strictly and
keeps free of third-party imports: adding a module to HOT without the checks must fail here."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def hot_modules() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "HOT" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no HOT list")


def covered(path: str, entries: list[str]) -> bool:
    """Is `path` one of `entries`, or inside one of them (a directory, or a package)?"""
    return any(path == e or path.startswith(e.rstrip("/") + "/") for e in entries)


def test_every_compiled_module_is_strictly_type_checked() -> None:
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert mypy["strict"] is True
    missing = [m for m in hot_modules() if not covered(m, mypy["files"])]
    assert missing == [], f"compiled but not in [tool.mypy] files: {missing}"


def test_every_compiled_module_is_held_to_the_standard_library() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (hot,) = [c for c in contracts if c["name"].startswith("Hot path")]
    packages = ["src/" + m.replace(".", "/") for m in hot["source_modules"]]
    missing = [m for m in hot_modules()
               if not covered(m.removesuffix(".py"), packages)]
    assert missing == [], f"compiled but not in the hot-path import contract: {missing}"


def test_version_checks_every_compiled_module() -> None:
    """`relayguard --version` says "compiled" only if every HOT module is: its list is HOT's."""
    from relayguard.buildinfo import HOT_MODULES

    names = [m.removeprefix("src/").removesuffix(".py").removesuffix("/__init__").replace("/", ".")
             for m in hot_modules()]
    assert sorted(HOT_MODULES) == sorted(names)


def test_compiled_modules_type_check_without_third_party_packages() -> None:
    """setup.py's build environment holds mypy and nothing else: what the compiled modules import
    (their packages' __init__ included) must type-check there, or the install quietly falls back
    to pure Python (a TYPE_CHECKING import in relayguard/__init__.py once did that)."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "mypy", "--no-site-packages", "--no-incremental",
                        *hot_modules()], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
