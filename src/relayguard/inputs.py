"""Was anything in the input understood? The answer every batch command gives before it reports.

A report about a log that held no Postfix line — an empty file, random bytes, an sshd log, a
`--since` past the end of the log — would say "no findings", which cron reads as "all clear".
`InputSummary` holds the pipeline's counters; `problem()` says, on one line, why there is nothing
to report on; `require()` raises it. Callers (the CLI, later `watch`) only print it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .sources.files import NothingUnderstood

__all__ = ["InputSummary", "NothingUnderstood", "when"]


@dataclass
class InputSummary:
    sources: list[str] = field(default_factory=list)
    lines: int = 0  # read
    unparsed: int = 0  # no readable syslog header (or damaged)
    postfix: int = 0  # Postfix lines
    firewall: int = 0  # kernel firewall lines (DPT=)
    before: int = 0  # of those, before `since`
    after: int = 0  # of those, after `until`
    first: float | None = None  # time range of the Postfix and firewall lines
    last: float | None = None
    since: float | None = None
    until: float | None = None

    @property
    def understood(self) -> int:
        return self.postfix + self.firewall

    @property
    def kept(self) -> int:
        """Postfix and firewall lines inside the time window."""
        return self.understood - self.before - self.after

    def to_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "unparsed": self.unparsed, "postfix": self.postfix,
                "firewall": self.firewall, "outside_window": self.before + self.after}

    def problem(self) -> str | None:
        """Why there is nothing to report on, in one line; None when there is something."""
        names = _names(self.sources)
        if self.lines == 0:
            return f"no input: read 0 lines from {names}"
        n = self.understood
        if n == 0:
            return f"no Postfix lines among {self.lines:,} lines read from {names}: is this a mail log?"
        if self.kept > 0:
            return None
        noun = "Postfix" if self.firewall == 0 else "firewall" if self.postfix == 0 else "Postfix and firewall"
        lines = f"{n:,} {noun} line{'s' if n != 1 else ''} in {names}"
        whole = "the" if n == 1 else "all"
        verb = "is" if n == 1 else "are"
        if self.before == n:
            return f"{whole} {lines} {verb} before --since {when(self.since)} (the log ends {when(self.last)})"
        if self.after == n:
            return f"{whole} {lines} {verb} after --until {when(self.until)} (the log starts {when(self.first)})"
        return (f"none of the {lines} {verb} between --since {when(self.since)} and --until "
                f"{when(self.until)} (the log runs from {when(self.first)} to {when(self.last)})")

    def require(self) -> None:
        """Raise NothingUnderstood when there is nothing to report on."""
        message = self.problem()
        if message is not None:
            raise NothingUnderstood(message)


def when(ts: float | None) -> str:
    """Local time as the user types it for --since: minutes, seconds only when there are some."""
    if ts is None:
        return "?"
    dt = datetime.fromtimestamp(ts)
    return dt.strftime("%Y-%m-%dT%H:%M:%S" if dt.second else "%Y-%m-%dT%H:%M")


def _names(paths: list[str]) -> str:
    names = ["stdin" if p == "-" else p for p in paths]
    if not names:
        return "no files"
    if len(names) > 3:
        return f"{len(names)} files"
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
