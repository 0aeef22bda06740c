"""`relayguard setup postfix`: apply (and undo) the main.cf edits planned by enforcement.plan().

The same sequence as `trusted add|remove` (relayguard.changes): the maps Postfix will consult
are built first (a table that does not exist fails every lookup), main.cf is backed up, changed
with `postconf -e`, read back and re-planned (nothing may be left to do, postconf may not
complain more than before) — any doubt puts the backup back — and a running Postfix is
reloaded. The backup directory is named in the audit entry, which is how `--undo` finds it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..changes import backup_files, backup_name, restore_files, sha256
from ..postfix.instance import Postfix
from ..postfix.programs import PostfixError
from ..state.store import Store
from .bans import Banner
from .common import RespondError
from .enforcement import Plan, Wanted, plan, read_current
from .locks import Locker

DEFAULT_BACKUP_DIR = "/var/lib/relayguard/backups/setup"
ACTION = "setup-postfix"
UNDO = "setup-postfix-undo"


class SetupError(Exception):
    """The change was refused or failed (rolled back); the message is for people."""


@dataclass
class Applied:
    backup_dir: Path | None = None
    reloaded: bool | None = None  # None: Postfix not running
    created: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _postconf_complaints(pf: Postfix) -> list[str]:
    r = pf.run("postconf", "-n")
    return [ln.strip() for ln in r.stderr.splitlines() if ln.strip()]


def _reload(pf: Postfix, result: Applied) -> None:
    result.reloaded, warning = pf.reload_if_running()
    if warning:
        result.warnings.append(warning)


def create_maps(cfg: dict[str, Any], w: Wanted, p: Plan, state_path: str | None) -> list[str]:
    """Build the tables main.cf is about to name, from the active locks and bans."""
    now = time.time()
    done: list[str] = []
    if w.lock_map and p.create and str(w.lock_index) in p.create:
        with Locker.from_config(cfg, state_path, w.config_dir) as lk:
            assert lk.map is not None
            lk.map.write(lambda: lk.shared.locks(now), now, force=True)
        done.append(str(w.lock_index))
    if w.access_map and w.access_map in p.create:
        with Banner.from_config(cfg, state_path, w.config_dir) as b:
            b.sync(now)
        done.append(w.access_map)
    return done


def _maps(cfg: dict[str, Any], w: Wanted, p: Plan, state_path: str | None) -> list[str]:
    try:
        return create_maps(cfg, w, p, state_path)
    except (RespondError, OSError) as exc:
        raise SetupError(f"cannot create the maps: {exc}; main.cf was not changed") from None


def apply(pf: Postfix, w: Wanted, p: Plan, cfg: dict[str, Any], backup_base: str,
          state_path: str | None = None) -> Applied:
    """Backup, maps, postconf -e, verification (restore on failure), reload."""
    assert pf.config_dir is not None
    main_cf = Path(pf.config_dir) / "main.cf"
    files = [main_cf] + ([Path(pf.config_dir) / "master.cf"] if any(e.service for e in p.edits)
                         else [])
    result = Applied()
    if not p.edits:  # only a map was missing
        result.created = _maps(cfg, w, p, state_path)
        return result
    complaints = _postconf_complaints(pf)
    meta = {"schema": "relayguard.setup-backup/1", "config_dir": pf.config_dir,
            "main_cf": str(main_cf), "edits": [e.to_dict() for e in p.edits]}
    try:
        backup_dir, saved = backup_files(backup_base, backup_name(
            "setup-postfix", Path(pf.config_dir).name), files, meta)
    except OSError as exc:
        raise SetupError(f"cannot write the backup in {backup_base}: {exc.strerror or exc} "
                         "(nothing was changed; --backup-dir DIR)") from None
    result.backup_dir = backup_dir
    # The maps before main.cf names them: a table that does not exist fails every lookup.
    result.created = _maps(cfg, w, p, state_path)
    try:
        for e in p.edits:
            r = pf.run("postconf", *e.args())
            if r.returncode != 0:
                raise SetupError(f"postconf {' '.join(e.args()[:-1])} {e.param}: "
                                 f"{r.stderr.strip() or r.returncode}")
        cur = read_current(pf)
        left = plan(w, cur)
        if left.edits:
            raise SetupError(f"after the change, {left.edits[0].param} is still not as needed")
        new = [c for c in _postconf_complaints(pf) if c not in complaints]
        if new:
            raise SetupError(f"postconf complains after the change: {new[0]}")
    except (SetupError, PostfixError, OSError) as exc:
        why = str(exc) if not isinstance(exc, OSError) else (exc.strerror or str(exc))
        problems = restore_files(saved, backup_dir)
        if problems:
            raise SetupError(f"{why}; restoring from {backup_dir} FAILED for "
                             f"{'; '.join(problems)}: copy main.cf back by hand") from None
        raise SetupError(f"{why}; main.cf was restored from {backup_dir}") from None
    # What undo checks before it restores: main.cf as this change left it.
    meta_path = backup_dir / "meta.json"
    doc = json.loads(meta_path.read_text())
    doc["after_sha256"] = {str(f): sha256(f) for f in files}
    meta_path.write_text(json.dumps(doc, indent=2) + "\n")
    _reload(pf, result)
    return result


@dataclass
class Undo:
    backup_dir: Path
    saved: list[dict[str, Any]]
    edited_since: bool  # changed after the setup: undo drops those changes too
    audit_id: int


def find_undo(store: Store, config_dir: str) -> Undo | None:
    """The newest setup of this instance that was not undone yet (from the audit trail)."""
    undone = {e.get("backup_dir") for e in store.history(None, UNDO)
              if e.get("status") == "ok" and e.get("config_dir") == config_dir}
    for e in store.history(None, ACTION):
        if e.get("status") != "ok" or e.get("config_dir") != config_dir or not e.get("backup_dir"):
            continue
        if e["backup_dir"] in undone:
            return None
        d = Path(e["backup_dir"])
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, ValueError) as exc:
            raise SetupError(f"backup {d} of audit entry #{e['id']} is unreadable: {exc}") from None
        after = meta.get("after_sha256") or {}
        edited = any(Path(f).exists() and sha256(Path(f)) != h for f, h in after.items())
        return Undo(d, meta["files"], edited, int(e["id"]))
    return None


def undo(pf: Postfix, u: Undo) -> Applied:
    """Put main.cf back byte for byte, verify, reload."""
    problems = restore_files(u.saved, u.backup_dir)
    if problems:
        raise SetupError(f"restoring from {u.backup_dir} failed for {'; '.join(problems)}")
    for rec in u.saved:
        original = Path(rec["original"])
        if rec.get("sha256") and sha256(original) != rec["sha256"]:
            raise SetupError(f"{original} differs from its backup after the restore")
    result = Applied(u.backup_dir)
    _reload(pf, result)
    return result


def default_backup_dir(cfg: dict[str, Any]) -> str:
    return str((cfg.get("setup") or {}).get("backup_dir") or DEFAULT_BACKUP_DIR)


__all__ = ["ACTION", "UNDO", "Applied", "SetupError", "apply", "create_maps",
           "default_backup_dir", "find_undo", "undo"]
