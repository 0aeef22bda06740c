"""The command layer is on top: no module outside relayguard/cli imports relayguard.cli."""

from __future__ import annotations

import ast
from pathlib import Path

import relayguard

SRC = Path(relayguard.__file__).parent
# `python -m relayguard` is the program itself, the same as the `relayguard` command.
ENTRY_POINT = "relayguard.__main__"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Absolute names of every module an import statement names (relative ones resolved),
    at any depth: imports inside functions count too."""
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{a.name}" for a in node.names)
    return names


def _cli_importers() -> list[str]:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        if module == "relayguard.cli" or module.startswith("relayguard.cli.") or module == ENTRY_POINT:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        hits = {n for n in _imported(tree, module, path.name == "__init__.py")
                if n == "relayguard.cli" or n.startswith("relayguard.cli.")}
        offenders += [f"{module} imports {n}" for n in sorted(hits)]
    return offenders


def test_nothing_outside_the_cli_package_imports_it() -> None:
    assert len(list(SRC.rglob("*.py"))) > 100  # the walk really covers the source tree
    assert _cli_importers() == []


def test_the_walk_sees_relative_and_function_level_imports() -> None:
    """The check would catch the old pattern: `from ..cli import fail` inside a function."""
    tree = ast.parse("def f():\n    from ..cli import fail\n    from .. import cli\n")
    names = _imported(tree, "relayguard.queue.tools", is_package=False)
    assert "relayguard.cli" in names and "relayguard.cli.fail" in names
    assert "relayguard.cli.common" in _imported(ast.parse("import relayguard.cli.common\n"),
                                                "relayguard.queue.tools", is_package=False)


def test_no_sub_package_keeps_a_cli_module() -> None:
    """One command layer: the old */cli.py and *_cli.py modules are gone."""
    stray = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
             if (p.name == "cli.py" or p.stem.endswith("_cli"))]
    assert stray == []
