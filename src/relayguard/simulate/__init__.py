"""Deterministic, labeled synthetic Postfix traffic (`relayguard simulate`).

`generate()` yields syslog lines, `write_simulation()` writes them (and the ground truth as
JSON). Same scenario, size, seed and start → byte-identical output.

`world` is the simulated site, `writers` every shape of log line, `pacing` how a stream spreads
its line budget over time, `scenarios/` one module per stream of traffic (each attack one),
`simulation` the plan and the time-ordered merge.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TextIO

from .scenarios import SCENARIOS
from .simulation import Simulation

__all__ = ["SCENARIOS", "Simulation", "generate", "write_simulation"]

_CHUNK = 4096  # lines per write: few syscalls, little memory


def generate(scenario: str, lines: int, seed: int = 1, start: datetime | None = None,
             host: str = "mail") -> Iterator[str]:
    """Yield the log lines of `scenario` (without newlines), about `lines` of them.

    A few deliberately malformed lines hold a NUL run or lone surrogates (`\\udcXX`, invalid
    UTF-8 once encoded with ``errors="surrogateescape"``). Raises ValueError for an unknown
    scenario (before yielding anything).
    """
    sim = Simulation(scenario, lines, seed, start, host)  # validates eagerly
    return sim.lines()


def write_simulation(scenario: str, lines: int, out: Path | TextIO, seed: int = 1,
                     labels: Path | None = None, start: datetime | None = None) -> dict:
    """Write the log to `out` (a path, ``.gz`` compressed, or an open text stream) and the
    ground truth to `labels` when given; return the ground truth."""
    sim = Simulation(scenario, lines, seed, start)
    if isinstance(out, (str, Path)):
        path = Path(out)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "wb") as fh:
            _write_bytes(sim.lines(), fh)
    elif hasattr(out, "buffer"):
        # a real text stream (stdout): write bytes so invalid UTF-8 stays invalid, not an error
        out.flush()
        _write_bytes(sim.lines(), out.buffer)
        out.buffer.flush()
    else:
        # an in-memory text stream (StringIO): lone surrogates are fine there
        chunk: list[str] = []
        for line in sim.lines():
            chunk.append(line)
            if len(chunk) >= _CHUNK:
                out.write("\n".join(chunk) + "\n")
                chunk.clear()
        if chunk:
            out.write("\n".join(chunk) + "\n")
    result = sim.labels()
    if labels is not None:
        Path(labels).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _write_bytes(lines: Iterator[str], fh) -> None:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= _CHUNK:
            chunk.append("")
            fh.write("\n".join(chunk).encode("utf-8", "surrogateescape"))
            chunk.clear()
    if chunk:
        chunk.append("")
        fh.write("\n".join(chunk).encode("utf-8", "surrogateescape"))
