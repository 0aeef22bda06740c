"""`relayguard simulate`: deterministic, labeled synthetic Postfix traffic."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import fail


@click.command()
@click.option("--scenario", default="all", show_default=True,
              help="baseline, compromised-account, trusted-relay, bruteforce, direct-smtp, blocklisted, all")
@click.option("--lines", "nlines", type=click.IntRange(min=1), default=20000, show_default=True,
              help="Approximate number of log lines.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              show_default=True, help="Log file to write.")
@click.option("--labels", type=click.Path(dir_okay=False), help="Write the ground truth (JSON) here.")
def simulate(scenario: str, nlines: int, seed: int, out: str, labels: str | None) -> None:
    """Write deterministic, labeled synthetic Postfix traffic (for demos, tests, benchmarks)."""
    from ..simulate import write_simulation

    try:
        if out == "-":
            write_simulation(scenario, nlines, sys.stdout, seed=seed,
                             labels=Path(labels) if labels else None)
        else:
            write_simulation(scenario, nlines, Path(out), seed=seed,
                             labels=Path(labels) if labels else None)
    except ValueError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write: {exc}")
