"""Timestamps in output: one format, in one zone, for every command.

JSON carries ISO 8601 with an explicit offset (`2026-06-21T08:34:30+00:00`); text shows the
same instant as `2026-06-21 08:34:30` with the zone named once (a header, a column title). The
zone is `[ui] timezone`: "UTC" (the default: output that is compared across machines and
days must not shift with DST or the host's TZ), "local" (the machine's zone, the one
traditional syslog timestamps are written in), or an IANA name ("Europe/Paris").
Loading the configuration sets it (`config.load`), for the whole process.

Compiled with mypyc (setup.py HOT: the parser and correlator use `iso`): fully typed, standard
library only.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, tzinfo
from typing import Final, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT = "UTC"

# The instants a log line may carry: 1970-01-01T00:00:00Z ≤ ts < 9999-01-01T00:00:00Z. Parsers
# reject stamps outside (the line is unparsed), so `iso` and `text` never meet a time that
# `datetime` cannot show: any zone's offset, and the few hours a report adds to a log time,
# stay inside its years 1..9999.
EARLIEST: Final = 0.0
LATEST: Final = 253370764800.0


def in_range(ts: float) -> bool:
    """Is `ts` a time a log line may carry (see EARLIEST, LATEST)? False for NaN too."""
    return EARLIEST <= ts < LATEST

_name = DEFAULT
_zone: tzinfo | None = UTC  # None: the machine's local zone, DST rules included


def zone_named(name: str) -> tzinfo | None:
    """The zone `name` stands for ("UTC", "local", an IANA name), None for local;
    ValueError, for the user, when there is no such zone."""
    if name == "UTC":
        return UTC
    if name == "local":
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use \"UTC\", \"local\" or an IANA name "
                         "such as \"Europe/Paris\")") from None


def set_zone(name: str) -> None:
    """Show every timestamp from now on in `name` (see `zone_named`)."""
    global _name, _zone
    _zone = zone_named(name)
    _name = name


def _datetime(ts: float) -> datetime:
    if _zone is None:
        return datetime.fromtimestamp(ts).astimezone()
    return datetime.fromtimestamp(ts, _zone)


@overload
def iso(ts: float, timespec: str = "auto") -> str: ...
@overload
def iso(ts: None, timespec: str = "auto") -> None: ...
@overload
def iso(ts: float | None, timespec: str = "auto") -> str | None: ...
def iso(ts: float | None, timespec: str = "auto") -> str | None:
    """Epoch seconds → ISO 8601 with the offset of the configured zone; None stays None.
    "auto" keeps the fraction of a second when there is one (log times, as precise as the
    log); "seconds" for the instants relayguard takes itself (a ban's start, a report's)."""
    if ts is None:
        return None
    return _datetime(ts).isoformat(timespec=timespec)


def text(ts: float | None) -> str:
    """Epoch seconds → `2026-06-21 08:34:30` in the configured zone (name it with `label`);
    "-" for no time."""
    if ts is None:
        return "-"
    return _datetime(ts).strftime("%Y-%m-%d %H:%M:%S")


def label() -> str:
    """The configured zone, for a header or a column title: "UTC", "Europe/Paris". For
    "local", the machine's zone by name ($TZ, /etc/localtime), not today's abbreviation:
    "EST" in December would mislabel times from June."""
    if _zone is not None:
        return _name
    tz = os.environ.get("TZ", "").lstrip(":")
    path = tz if tz.startswith("/") else "" if tz else "/etc/localtime"
    if path:
        target = os.path.realpath(path)
        tz = target.split("/zoneinfo/", 1)[1] if "/zoneinfo/" in target else ""
    return tz or "local time"
