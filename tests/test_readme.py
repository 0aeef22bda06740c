"""README.md stays true: its Python examples run (from the repository root, as a reader would
paste them), and every command of `relayguard` has help text and is mentioned in it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from pfguard import system_env
from relayguard.cli import main

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text("utf-8")
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)


def test_there_are_python_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_python_example_runs(code: str, tmp_path: Path) -> None:
    # A fresh interpreter per block, as a reader pasting it; from the root, where the examples'
    # relative paths (examples/incident.log) lead.
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env=system_env(TZ="UTC", HOME=str(tmp_path)))
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr


def commands(cmd: click.Command, path: tuple[str, ...] = (),
             ctx: click.Context | None = None) -> Iterator[tuple[str, click.Command]]:
    """Every command and subcommand, the lazily loaded ones included."""
    if path:
        yield " ".join(path), cmd
    if isinstance(cmd, click.Group):
        sub = click.Context(cmd, info_name=path[-1] if path else "relayguard", parent=ctx)
        for name in cmd.list_commands(sub):
            child = cmd.get_command(sub, name)
            assert child is not None, f"`relayguard {' '.join((*path, name))}` does not load"
            yield from commands(child, (*path, name), sub)


ALL = dict(commands(main))


def mentioned(path: str) -> bool:
    """`relayguard queue export`, or `relayguard queue hold|release|export` (one usage line)."""
    *parent, leaf = path.split()
    words = r"\s+".join(map(re.escape, ["relayguard", *parent]))
    alternatives = rf"(?:[\w-]+\|)*{re.escape(leaf)}(?![\w-])"
    return re.search(rf"{words}\s+{alternatives}", README) is not None


def test_the_walk_finds_the_lazy_commands() -> None:
    assert {"analyze", "watch", "queue hold", "ban add", "firewall log-smtp enable"} <= set(ALL)


@pytest.mark.parametrize("path", sorted(ALL))
def test_command_has_help_and_is_in_the_readme(path: str) -> None:
    cmd = ALL[path]
    assert (cmd.help or "").strip() or cmd.short_help, f"`relayguard {path}` has no help text"
    assert mentioned(path), f"`relayguard {path}` is not mentioned in README.md"
