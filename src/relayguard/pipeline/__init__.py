"""sources → parse → correlate (`run`, compiled) → aggregate → detect (`core.Pipeline`).

`run.Feed` is the per-line step shared by the batch loop and `watch`; `core.Pipeline` is the
assembly every command uses (aggregates with geo, trusted networks, detectors). Import it from
`pipeline.core`: this package's own namespace is the compiled loop's only, so that type-checking
the compiled path does not pull in the detectors.
"""

from .run import QUEUE_IDLE, Feed, Run, run

__all__ = ["QUEUE_IDLE", "Feed", "Run", "run"]
