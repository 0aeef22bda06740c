"""The parser against annotated real-shaped lines (tests/data/samples.log), and its promises:
never raise, count what it cannot read, keep years right."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relayguard.parse import LineParser

os.environ["TZ"] = "UTC"
time.tzset()

DATA = Path(__file__).parent / "data"


def annotated_samples() -> list[tuple[int, str, str]]:
    out = []
    lines = (DATA / "samples.log").read_text("utf-8").split("\n")
    for i, line in enumerate(lines):
        if line.startswith("# expect: "):
            out.append((i + 2, line[len("# expect: "):], lines[i + 1]))
    return out


def _expectations(spec: str) -> dict[str, str]:
    """`event=client sasl_username=admin reason=two words` → dict (values run to the next key=)."""
    out: dict[str, str] = {}
    key = None
    for tok in spec.split(" "):
        k, sep, v = tok.partition("=")
        if sep and k.isidentifier():
            key = k
            out[k] = v
        elif key:
            out[key] += " " + tok
    return out


@pytest.mark.parametrize(("lineno", "spec", "line"), annotated_samples(),
                         ids=lambda v: str(v) if isinstance(v, int) else None)
def test_annotated_sample(lineno: int, spec: str, line: str) -> None:
    p = LineParser(year=2026)
    ev = p.parse(line)
    if spec == "unparsed":
        assert ev is None
        assert p.unparsed == 1
        return
    assert ev is not None, f"line {lineno} not parsed"
    got = {k: "" if v is None else str(v) for k, v in ev.to_dict().items()}
    for key, want in _expectations(spec).items():
        assert got.get(key) == want, f"line {lineno}: {key}: {got.get(key)!r} != {want!r}"


def test_samples_cover_every_event_kind() -> None:
    kinds = {_expectations(spec).get("event") for _, spec, _ in annotated_samples()}
    assert {"connect", "disconnect", "client", "message_id", "queued", "delivery", "removed",
            "auth_failure", "auth_error", "reject", "bounce_notice", "firewall", "pickup",
            "remote_reply", "other"} <= kinds


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=400))
def test_parser_never_raises_on_bytes(raw: bytes) -> None:
    p = LineParser(year=2026)
    ev = p.parse_bytes(raw)
    assert p.lines == 1
    assert (ev is None) == (p.unparsed == 1)
    if ev is not None:
        json.dumps(ev.to_dict())  # whatever it read is serialisable


HEADERS = ["Jun 21 08:34:30 mail postfix/smtpd[1]: ", "Jun 21 08:34:30 mail postfix/qmgr[1]: 1C205316C411: ",
           "2026-06-21T08:34:30+02:00 mail postfix/smtp[9]: 4Ltz5b0cP8z9sxn: ",
           "Jun 21 08:34:30 mail kernel: ", "Jun 21 08:34:30 mail postfix/smtpd[1]: NOQUEUE: reject: "]
PREFIXES = ["client=", "to=<", "from=<", "message-id=", "warning: x[1.2.3.4]: SASL LOGIN authentication failed: ",
            "connect from ", "disconnect from ", "RCPT from ", "host ", "uid=", "SRC= DPT=", "lost connection after "]


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(HEADERS), st.sampled_from(PREFIXES), st.text(max_size=120))
def test_parser_never_raises_on_hostile_postfix_text(header: str, prefix: str, tail: str) -> None:
    p = LineParser(year=2026)
    ev = p.parse(header + prefix + tail)
    if ev is not None:
        json.dumps(ev.to_dict())


def test_classic_year_rolls_over_december_to_january() -> None:
    p = LineParser(year=None, reference=time.mktime((2027, 1, 2, 12, 0, 0, 0, 0, -1)))
    dec = p.parse("Dec 31 23:59:59 mail postfix/smtpd[1]: connect from a[1.2.3.4]")
    jan = p.parse("Jan  1 00:00:01 mail postfix/smtpd[1]: connect from a[1.2.3.4]")
    assert dec is not None and jan is not None
    assert dec.to_dict()["ts"].startswith("2026-12-31T23:59:59")
    assert jan.to_dict()["ts"].startswith("2027-01-01T00:00:01")
    assert jan.ts - dec.ts == 2


def test_year_from_reference_time() -> None:
    p = LineParser(reference=time.mktime((2024, 6, 30, 0, 0, 0, 0, 0, -1)))
    ev = p.parse("Jun 21 08:34:30 mail postfix/smtpd[1]: connect from a[1.2.3.4]")
    assert ev is not None and ev.to_dict()["ts"].startswith("2024-06-21")


def test_journald_json_record() -> None:
    rec = {"__REALTIME_TIMESTAMP": "1782030870000000", "_HOSTNAME": "mx1",
           "SYSLOG_IDENTIFIER": "postfix/submission/smtpd", "_PID": "4242",
           "MESSAGE": "ABCDEF1234: client=unknown[46.48.93.60], sasl_method=LOGIN, sasl_username=admin"}
    ev = LineParser().parse(json.dumps(rec))
    assert ev is not None
    d = ev.to_dict()
    assert (d["event"], d["host"], d["pid"], d["sasl_username"]) == ("client", "mx1", 4242, "admin")


def test_binary_and_non_utf8_lines_are_counted_not_fatal() -> None:
    p = LineParser(year=2026)
    assert p.parse_bytes(b"Jun 21 08:34:30 mail postfix/smtpd[1]: connect \x00 from a[1.2.3.4]\n") is None
    assert p.parse_bytes(b"Jun 21 08:34:30 mail postfix/smtpd[1]: connect from \xff\xfe[1.2.3.4]\n") is None
    assert p.parse_bytes(b"Jun 21 08:34:30 mail postfix/smtpd[1]: connect from a[1.2.3.4]\n") is not None
    assert (p.lines, p.unparsed) == (3, 2)
