"""sources → parse → correlate (`run`, compiled) → aggregate → detect (`Pipeline`).

`run.Feed` is the per-line step shared by the batch loop and `watch`; `core.Pipeline` is the
assembly every command uses (aggregates with geo, trusted networks, detectors).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .run import QUEUE_IDLE, Feed, Run, run

if TYPE_CHECKING:
    from .core import Pipeline

__all__ = ["QUEUE_IDLE", "Feed", "Pipeline", "Run", "run"]


def __getattr__(name: str) -> Any:
    # Lazy: `Pipeline` pulls in the detectors and geo; `relayguard parse` needs only `run`.
    if name == "Pipeline":
        from .core import Pipeline

        return Pipeline
    raise AttributeError(name)
