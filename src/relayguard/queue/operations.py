"""Acting on the queue: `plan()` says what an action would touch, `execute()` does it.

The one implementation of hold, release, requeue, delete and export, used by
`relayguard queue …`, the dashboard and the automatic response (respond/auto.py) alike:

* the audit entry is written BEFORE anything changes (state/audit_trail.py): when it cannot be
  written, StateError is raised and nothing is done; afterwards it is completed with the outcome;
* delete freezes first (hold), backs up what is frozen, then deletes only what is safely on
  disk, only from hold — an interrupted delete leaves the mail on hold, never lost;
* export writes the same backup and deletes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..state import Store, audit_trail
from .actions import ACTIONS, postsuper
from .backup import backup_messages, new_backup_dir
from .postqueue import QueuedMessage
from .select import Selection, Selector, select
from .tools import PostfixTools, QueueError

OPERATIONS = ("hold", "release", "requeue", "delete", "export")
BACKUP_ACTIONS = ("delete", "export")
DEFAULT_BACKUP_DIR = "/var/lib/relayguard/backups"


class PlanError(ValueError):
    """The action cannot apply to this selector (e.g. release outside hold)."""


@dataclass
class QueuePlan:
    """What an action would affect. `messages` is None for a plan made from queue IDs alone
    (the dashboard acts on the IDs its preview showed): enough for postsuper, not for a backup."""

    action: str
    selector: Selector
    ids: list[str]
    messages: list[QueuedMessage] | None = None
    selection: Selection | None = None
    on_hold_skipped: int = 0
    record_selector: dict[str, Any] | None = None  # what the audit entry names; default: selector

    @property
    def matched(self) -> int:
        return len(self.ids)

    @property
    def warnings(self) -> list[str]:
        return self.selection.warnings if self.selection is not None else []

    @property
    def gone(self) -> list[str]:
        """Messages that left the queue while it was being inspected."""
        return list(self.selection.gone) if self.selection is not None else []

    def preview(self, n: int) -> list[QueuedMessage]:
        return (self.messages or [])[:n]

    def summary(self) -> dict[str, Any]:
        """The plan as the JSON of `queue ACTION --format json` shows it."""
        sel = self.selection
        return {"selector": self.selector.describe(), "matched": self.matched,
                "by_queue": sel.by_queue() if sel else {},
                "top_senders": [{"sender": s, "messages": n}
                                for s, n in (sel.top_senders() if sel else [])],
                "queue_ids": list(self.ids), "on_hold_skipped": self.on_hold_skipped}


@dataclass
class QueueResult:
    action: str
    done: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # not backed up, left in place
    backup_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)
    audit_id: int = 0
    status: str = "ok"
    error: str | None = None  # the action failed as a whole (postsuper, the backup directory)
    audit_warning: str | None = None  # the outcome could not be added to the audit entry


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during execute(), after the audit entry recorded it; `result` is what was done."""

    def __init__(self, result: QueueResult) -> None:
        super().__init__()
        self.result = result


def backup_base(cfg: dict[str, Any], override: str | None = None) -> str:
    """Where backups go: the option, else [queue] backup_dir, else the default."""
    if override:
        return override
    return str((cfg.get("queue") or {}).get("backup_dir") or DEFAULT_BACKUP_DIR)


def plan(tools: PostfixTools, action: str, selector: Selector, logs: list[str] | None = None,
         year: int | None = None) -> QueuePlan:
    """Select what `action` would touch. Raises PlanError, QueueError (Postfix tools) and
    sources.InputError (unreadable --log files)."""
    if action not in OPERATIONS:
        raise PlanError(f"unknown queue action {action!r}")
    if action == "release":
        if selector.queues and set(selector.queues) != {"hold"}:
            raise PlanError("release applies to held mail only (--queue hold)")
        selector = replace(selector, queues=("hold",))
    selection = select(tools, selector, logs, year)
    skipped = 0
    if action == "hold" or (action == "requeue" and "hold" not in selector.queues):
        # Holding held mail does nothing; requeueing it would release quarantined mail, so
        # that needs an explicit --queue hold.
        before = len(selection.messages)
        selection.messages = [m for m in selection.messages if m.queue_name != "hold"]
        skipped = before - len(selection.messages)
    return QueuePlan(action, selector, selection.ids, selection.messages, selection, skipped)


def plan_ids(action: str, ids: list[str], record_selector: dict[str, Any]) -> QueuePlan:
    """A plan for queue IDs a person already confirmed (hold, release, requeue only)."""
    if action not in OPERATIONS or action in BACKUP_ACTIONS:
        raise PlanError(f"{action} needs a selection, not bare queue IDs")
    return QueuePlan(action, Selector(queue_ids=tuple(ids)), list(dict.fromkeys(ids)),
                     record_selector=record_selector)


def execute(plan: QueuePlan, tools: PostfixTools, store: Store | None,
            backups: str | Path | None = None, *, note: str | None = None,
            command: list[str] | None = None) -> QueueResult:
    """Do what `plan` says. The audit entry is written first: StateError from here means
    nothing was done. `backups`: the base directory for delete and export. `note` goes in the
    entry's detail (who or what asked: "dashboard: hold", "automatic (watch): …").
    A failure of the action itself is in `result.error` (recorded as status "failed")."""
    action = plan.action
    if action in BACKUP_ACTIONS and (plan.messages is None or backups is None):
        raise PlanError(f"{action} needs the selected messages and a backup directory")
    entry = audit_trail.begin(store, action, selector=plan.record_selector or plan.selector.describe(),
                              matched=plan.matched, config_dir=tools.config_dir, detail=note,
                              command=command)
    result = QueueResult(action, gone=plan.gone, audit_id=entry.id)
    try:
        _act(plan, tools, backups, result)
    except (QueueError, OSError, KeyboardInterrupt) as exc:
        if isinstance(exc, KeyboardInterrupt):
            why = "interrupted" + (" (messages being deleted stay on hold)"
                                   if action == "delete" else "")
        else:
            why = str(exc) if isinstance(exc, QueueError) else f"{exc.strerror or exc}"
        result.status, result.error = "failed", why
        _complete(entry, result, note, why)
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(result) from None
        return result
    problem = None
    if result.failed:
        result.status = "partial"
        problem = (f"{len(result.failed)} not backed up "
                   f"(kept{' on hold' if action == 'delete' else ''})")
    _complete(entry, result, note, problem)
    return result


def _act(plan: QueuePlan, tools: PostfixTools, backups: str | Path | None,
         result: QueueResult) -> None:
    action = plan.action
    if action not in BACKUP_ACTIONS:
        res = postsuper(tools, action, plan.ids)
        result.warnings += res.warnings
        result.done, result.gone = res.done, result.gone + res.gone
        return
    assert plan.messages is not None and backups is not None  # checked by execute()
    result.backup_dir = new_backup_dir(backups, action)
    msgs = plan.messages
    to_save = msgs
    if action == "delete":
        # Freeze first: a held message cannot be delivered while it is being saved, so the
        # backup holds exactly the recipients that were still pending.
        held = postsuper(tools, "hold", [m.queue_id for m in msgs if m.queue_name != "hold"])
        result.warnings += held.warnings
        frozen = set(held.done)
        to_save = [m for m in msgs if m.queue_name == "hold" or m.queue_id in frozen]
        result.gone += held.gone
    report = backup_messages(tools, result.backup_dir, to_save, action, plan.selector.describe())
    result.gone += report.gone
    result.failed += report.failed
    if action == "delete":
        # Only what is safely on disk, and only from hold, where it was frozen.
        res = postsuper(tools, "delete", report.saved, queue="hold")
        result.warnings += res.warnings
        result.done, result.gone = res.done, result.gone + res.gone
    else:
        result.done = report.saved


def _complete(entry: audit_trail.Entry, result: QueueResult, note: str | None,
              problem: str | None) -> None:
    detail = "; ".join(x for x in (note, problem) if x) or None
    result.audit_warning = entry.complete(result.status, queue_ids=result.done, gone=result.gone,
                                          backup_dir=result.backup_dir, detail=detail)


def past_tense(action: str) -> str:
    act = ACTIONS.get(action)
    return act.past if act else "exported"


__all__ = ["BACKUP_ACTIONS", "DEFAULT_BACKUP_DIR", "OPERATIONS", "Interrupted", "PlanError",
           "QueuePlan", "QueueResult", "backup_base", "execute", "past_tense", "plan", "plan_ids"]
