"""Syslog headers: classic (`Jun 21 08:34:30 host name[pid]: `), RFC 3339, and journald JSON.

The header tells when, where and who; `parse.postfix` reads what Postfix said. Classic stamps
carry no year, so `Clock` infers it: from `--year`, else from the file's modification time,
and it moves to the next year when the month wraps from December to January inside one file.
A stamp outside the times a log may carry (timefmt.in_range: year 0001 with +14:00, 9999 with
-14:00, a journald stamp of 1e23 µs) leaves its line without a header: unparsed, never fatal.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

from ..timefmt import in_range

MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}

# `Jun 21 08:34:30 host postfix/smtpd[16863]: ` — also `Jun  5`, fractional seconds (postlogd),
# and names without a pid (`kernel: `).
CLASSIC = re.compile(
    r"([A-Z][a-z]{2}) +(\d{1,2}) (\d\d:\d\d:\d\d)(?:\.\d+)? (\S+) ([^\s\[:]+)(?:\[(\d+)\])?: ?"
)
RFC3339 = re.compile(
    r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) (\S+) ([^\s\[:]+)(?:\[(\d+)\])?: ?"
)


# ":mm:ss" → seconds into the hour: one dictionary look-up validates and converts (this runs for
# every new second of a log, so about every other line of a busy server's).
MINUTE_SECOND = {f":{m:02d}:{sec:02d}": m * 60 + sec for m in range(60) for sec in range(61)}


class Clock:
    """Turns syslog stamps into epoch seconds, inferring the year of classic stamps."""

    def __init__(self, year: int | None = None, reference: float | None = None) -> None:
        # `reference` is when the source was last written (file mtime): its last lines are from
        # that year, earlier months later in the calendar than it belong to the year before.
        self.fixed_year = year
        if reference is None or not in_range(reference):  # an mtime in year 10000: now
            reference = time.time()
        ref = time.localtime(reference)
        self.ref_year = ref.tm_year
        self.ref_month = ref.tm_mon
        self.year: int | None = year
        self.last_month = 0
        self._cache: dict[tuple[int, str, str], float] = {}
        self.seen: dict[str, float] = {}  # stamp → epoch, for the current year (the fast path)
        self.hours: dict[str, float] = {}  # "Jun 21 08" → epoch of that hour's start

    def stamp(self, stamp: str) -> float | None:
        """A 15-character classic stamp (`Jun 21 08:34:30`) → epoch; cached per second and per
        hour (DST moves whole hours, so an hour's start plus minutes and seconds is exact)."""
        offset = MINUTE_SECOND.get(stamp[9:15])  # ":34:30" → 2070; None when malformed
        if offset is None:
            return None
        hour = stamp[:9]
        base = self.hours.get(hour)
        if base is None:
            if not _TIME_SHAPE.match(stamp):
                return None
            base = self.classic(stamp[:3], stamp[4:6].lstrip(), stamp[7:9] + ":00:00")
            if base is None:
                return None
            self.hours[hour] = base
        ts = base + offset
        if len(self.seen) > 50_000:  # keep memory flat on long logs
            self.seen.clear()
            self.hours.clear()
        self.seen[stamp] = ts
        return ts

    def classic(self, mon: str, day: str, hms: str) -> float | None:
        month = MONTHS.get(mon)
        if month is None:
            return None
        if self.year is None:
            self.year = self.ref_year - 1 if month > self.ref_month else self.ref_year
        elif self.fixed_year is None and month < self.last_month and self.last_month - month > 6:
            self.year += 1  # December → January inside one file
            self.seen.clear()
            self.hours.clear()
        self.last_month = month
        key = (self.year, mon, day + hms)
        ts = self._cache.get(key)
        if ts is None:
            try:
                h, m, s = int(hms[:2]), int(hms[3:5]), int(hms[6:8])
                ts = time.mktime((self.year, month, int(day), h, m, s, 0, 0, -1))
            except (ValueError, OverflowError):
                return None
            if not in_range(ts):  # --year 10000, or a year inferred past 9998
                return None
            if len(self._cache) > 100_000:
                self._cache.clear()
                self.seen.clear()
            self._cache[key] = ts
        return ts

    @staticmethod
    def rfc3339(stamp: str) -> float | None:
        try:
            dt = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            if dt.tzinfo is None:
                ts = time.mktime(dt.timetuple()) + dt.microsecond / 1e6
            else:
                ts = dt.timestamp()
        except (ValueError, OverflowError):
            return None
        return ts if in_range(ts) else None


_TIME_SHAPE = re.compile(r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d\Z")


def _classic_fast(line: str, clock: Clock) -> Header | None:
    """The common case, with no regex: `Mmm dd hh:mm:ss[.ffffff] host tag[pid]: message`."""
    stamp = line[:15]
    ts = clock.seen.get(stamp)
    if ts is None:
        ts = clock.stamp(stamp)
        if ts is None:
            return None
    pos = 16 if line[15] == " " else line.find(" ", 16) + 1
    end = line.find(" ", pos)
    if pos <= 0 or end < 0:
        return None
    host = line[pos:end]
    colon = line.find(": ", end + 1)
    if colon < 0:
        if line.endswith(":"):
            colon = len(line) - 1
        else:
            return None
    tag = line[end + 1:colon]
    if " " in tag or not tag:
        return None
    b = tag.find("[")
    if b >= 0:
        pid = tag[b + 1:-1]
        name = tag[:b]
        return Header(ts, host, name, int(pid) if pid.isdigit() else None, line[colon + 2:])
    return Header(ts, host, tag, None, line[colon + 2:])


class Header:
    __slots__ = ("ts", "host", "name", "pid", "message")

    def __init__(self, ts: float, host: str, name: str, pid: int | None, message: str) -> None:
        self.ts = ts
        self.host = host
        self.name = name
        self.pid = pid
        self.message = message


def read_header(line: str, clock: Clock) -> Header | None:
    """Split a log line into its header and message; None when no header can be read."""
    if not line:
        return None
    first = line[0]
    if "A" <= first <= "Z" and line[9:10] == ":" and line[15:16] in (" ", "."):
        return _classic_fast(line, clock)
    if first == "{":
        return _journald(line)
    if first.isdigit():
        m = RFC3339.match(line)
        if m is None:
            return None
        ts = clock.rfc3339(m.group(1))
        if ts is None:
            return None
        pid = m.group(4)
        return Header(ts, m.group(2), m.group(3), int(pid) if pid else None, line[m.end():])
    m = CLASSIC.match(line)
    if m is None:
        return None
    ts = clock.classic(m.group(1), m.group(2), m.group(3))
    if ts is None:
        return None
    pid = m.group(6)
    return Header(ts, m.group(4), m.group(5), int(pid) if pid else None, line[m.end():])


def _journald(line: str) -> Header | None:
    """`journalctl -o json` records: MESSAGE, SYSLOG_IDENTIFIER, _PID, _HOSTNAME, timestamps."""
    try:
        rec = json.loads(line)
        message = rec["MESSAGE"]
        if isinstance(message, list):  # journald encodes non-UTF-8 messages as byte arrays
            message = bytes(message).decode("utf-8")
        ts = int(rec.get("__REALTIME_TIMESTAMP") or rec["_SOURCE_REALTIME_TIMESTAMP"]) / 1e6
        if not in_range(ts):
            return None
        name = rec.get("SYSLOG_IDENTIFIER") or rec.get("_COMM") or "unknown"
        pid = rec.get("SYSLOG_PID") or rec.get("_PID")
        return Header(ts, rec.get("_HOSTNAME", ""), name, int(pid) if pid else None, message)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return None
