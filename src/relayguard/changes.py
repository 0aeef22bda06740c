"""What every command that edits a Postfix configuration shares: the confirmation, the
timestamped backup of the files it touches, and putting them back.

Used by `relayguard trusted add|remove` and `relayguard setup postfix`; each keeps its own
planning and validation, this module only makes "preview → confirm → back up → change →
validate, roll back on failure" one implementation.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click


def confirm(question: str, yes: bool, what: str, fail: Callable[[str], NoReturn]) -> None:
    """--yes, or a person at a terminal who says yes; otherwise refuse (exit 2) or stop (0)."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"refusing to {what} without confirmation (no terminal): re-run with --yes to do "
             "it, or --dry-run to preview only; nothing was changed")
    if not click.confirm(question, default=False, err=True):
        click.echo("Nothing changed.", err=True)
        sys.exit(0)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def backup_name(kind: str, label: str) -> str:
    """`20260621T083430Z-KIND-LABEL`, safe as a directory name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{stamp}-{kind}-{re.sub(r'[^0-9A-Za-z.]+', '_', label)}"


def backup_files(base: str | os.PathLike[str], name: str, files: Sequence[Path],
                 meta: dict[str, Any]) -> tuple[Path, list[dict[str, Any]]]:
    """Copy `files` into a new directory `base/name` (mode 0700); its ``meta.json`` (`meta`
    plus where each copy came from and its sha256) lets a person put them back with ``cp``."""
    root = Path(base)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    d = root / name
    n = 1
    while True:
        try:
            d.mkdir(mode=0o700)
            break
        except FileExistsError:
            n += 1
            d = root / f"{name}-{n}"
    saved: list[dict[str, Any]] = []
    for i, original in enumerate(files):
        rec: dict[str, Any] = {"original": str(original), "existed": original.exists()}
        if original.exists():
            copy = d / (f"{i}-{original.name}" if i else original.name)
            shutil.copy2(original, copy)
            rec |= {"backup": copy.name, "sha256": sha256(copy)}
        saved.append(rec)
    doc = {**meta, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "files": saved,
           "restore": "copy each backup over its original, then `postfix reload`"}
    (d / "meta.json").write_text(json.dumps(doc, indent=2) + "\n")
    return d, saved


def restore_files(saved: list[dict[str, Any]], backup_dir: Path) -> list[str]:
    """Put every saved file back (byte for byte, through a rename); files that did not exist
    before are removed. Returns the problems, one line each (empty: all restored)."""
    problems = []
    for rec in saved:
        original = Path(rec["original"])
        try:
            if rec.get("backup"):
                tmp = original.with_name(f".{original.name}.relayguard-restore")
                shutil.copy2(backup_dir / rec["backup"], tmp)
                os.replace(tmp, original)
            elif not rec["existed"]:
                original.unlink(missing_ok=True)
        except OSError as exc:
            problems.append(f"{original}: {exc.strerror or exc}")
    return problems
