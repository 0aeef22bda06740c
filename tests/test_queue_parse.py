"""Pure tests of the queue readers: `postqueue -j` records, the `postqueue -p` listing,
`postcat -e` envelopes, addresses and queue-ID validation (no Postfix needed)."""

from __future__ import annotations

import json
import time

import pytest

from relayguard.queue.postqueue import (
    normalize_sender,
    parse_json_lines,
    parse_json_record,
    parse_mailq,
    parse_postcat_envelopes,
    quote_address,
    unquote_address,
)
from relayguard.queue.tools import valid_queue_id

# Seen with Postfix 3.7.11 (`postqueue -j`), one object per line.
JSON_LINES = [
    '{"queue_name": "deferred", "queue_id": "4ADC4212251", "arrival_time": 1795573559, '
    '"message_size": 514, "forced_expire": false, "sender": "\\"x;touch /tmp/pwned\\"@evil.example", '
    '"recipients": [{"address": "z@ext.example", "delay_reason": "connect to 127.0.0.1[127.0.0.1]:47161: '
    'Connection refused"}]}',
    '{"queue_name": "hold", "queue_id": "480C3212231", "arrival_time": 1795573559, '
    '"message_size": 502, "forced_expire": false, "sender": "alice@relayguard.test", '
    '"recipients": [{"address": "x@ext.example"}, {"address": "y@ext2.example"}]}',
    '{"queue_name": "deferred", "queue_id": "D37A42121D9", "arrival_time": 1795573653, '
    '"message_size": 258, "forced_expire": false, "sender": "MAILER-DAEMON", '
    '"recipients": [{"address": "q2@ext.example"}]}',
]


def test_json_records_as_postfix_prints_them() -> None:
    msgs = list(parse_json_lines(JSON_LINES))
    assert [m.queue_id for m in msgs] == ["4ADC4212251", "480C3212231", "D37A42121D9"]
    hostile, held, bounce = msgs
    assert hostile.sender == '"x;touch /tmp/pwned"@evil.example'
    assert hostile.sender_domain == "evil.example"
    assert hostile.recipients[0].delay_reason.startswith("connect to")
    assert held.queue_name == "hold" and held.size == 502 and held.arrival_time == 1795573559
    assert [r.address for r in held.recipients] == ["x@ext.example", "y@ext2.example"]
    assert held.recipients[0].delay_reason is None
    assert bounce.sender == ""  # showq prints the null sender as MAILER-DAEMON


@pytest.mark.parametrize("member", ["forced_expire", "force_expired"])
def test_both_spellings_of_forced_expiry(member: str) -> None:
    rec = {"queue_name": "deferred", "queue_id": "ABCDEF123", "sender": "a@b.example",
           "recipients": [], member: True}
    assert parse_json_record(rec).forced_expire is True


def test_unknown_members_are_ignored_and_types_tolerated() -> None:
    rec = {"queue_name": "active", "queue_id": "ABCDEF123", "arrival_time": "soon",
           "message_size": 10.0, "sender": "a@b.example", "future_member": {"x": [1, 2]},
           "recipients": [{"address": "c@d.example", "delay_reason": 7, "orcpt": "x"}]}
    m = parse_json_record(rec)
    assert m.arrival_time == 0 and m.size == 10
    assert m.recipients[0].address == "c@d.example" and m.recipients[0].delay_reason is None


def test_damaged_lines_are_skipped_and_reported() -> None:
    errors: list[str] = []
    lines = [JSON_LINES[1], "{not json", "[1, 2]", '{"queue_name": "x"}', "", JSON_LINES[0]]
    msgs = list(parse_json_lines(lines, errors))
    assert [m.queue_id for m in msgs] == ["480C3212231", "4ADC4212251"]
    assert len(errors) == 3 and all("postqueue -j line" in e for e in errors)


def test_bytes_lines_and_invalid_utf8() -> None:
    rec = json.dumps({"queue_name": "deferred", "queue_id": "ABCDEF123",
                      "sender": "caf\u00e9@b.example", "recipients": []}).encode()
    [m] = parse_json_lines([rec.replace(b"caf\\u00e9", b"caf\xff")])
    assert m.sender.startswith("caf") and m.sender.endswith("@b.example")


MAILQ = """\
-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------
4ADC4212251     514 Wed Nov 25 02:25:59  "x;touch /tmp/pwned"@evil.example
                   (connect to 127.0.0.1[127.0.0.1]:47161: Connection refused)
                                         z@ext.example

480C3212231!    502 Wed Nov 25 02:25:59  alice@relayguard.test
                                         x@ext.example
                                         y@ext2.example

1C205316C411*     233 Sat Jun 21 08:34:48  MAILER-DAEMON
                                         user2@anotherdomain.net

2F10238#     900 Mon Jun 22 10:00:00  bob@relayguard.test
    (host mx.far.example[203.0.113.9] said: 450 4.7.1 <u@far.example>: Recipient address
    rejected: Greylisted (in reply to RCPT TO command))
                                         u@far.example
                                         v@far.example

7E079B666CC     100 Tue Nov 24 23:59:00  fresh@relayguard.test
                                         new@far.example

-- 2 Kbytes in 5 Requests.
"""


def test_mailq_fallback_parser() -> None:
    now = time.mktime(time.strptime("2026-11-25 03:00:00", "%Y-%m-%d %H:%M:%S"))
    msgs = {m.queue_id: m for m in parse_mailq(MAILQ, now)}
    assert list(msgs) == ["4ADC4212251", "480C3212231", "1C205316C411", "2F10238", "7E079B666CC"]
    h = msgs["4ADC4212251"]
    assert h.queue_name == "deferred" and h.size == 514
    assert h.sender == '"x;touch /tmp/pwned"@evil.example'  # spaces in a quoted local part
    assert [r.address for r in h.recipients] == ["z@ext.example"]
    assert h.recipients[0].delay_reason == "connect to 127.0.0.1[127.0.0.1]:47161: Connection refused"
    assert now - h.arrival_time == pytest.approx(34 * 60 + 1)
    assert msgs["480C3212231"].queue_name == "hold"
    active = msgs["1C205316C411"]
    assert active.queue_name == "active" and active.sender == ""
    # A June stamp read in November belongs to this year, in the past.
    assert time.localtime(active.arrival_time).tm_year == 2026 and active.arrival_time < now
    wrapped = msgs["2F10238"]
    assert wrapped.forced_expire and [r.address for r in wrapped.recipients] == [
        "u@far.example", "v@far.example"]
    assert "Greylisted" in (wrapped.recipients[0].delay_reason or "")
    assert msgs["7E079B666CC"].queue_name == "incoming"  # no marker, no reason


def test_mailq_empty_queue() -> None:
    assert list(parse_mailq("Mail queue is empty\n")) == []
    assert list(parse_mailq("")) == []


def test_mailq_year_boundary() -> None:
    """On January 1st, a message listed as Dec 31 arrived last year."""
    now = time.mktime(time.strptime("2027-01-01 00:10:00", "%Y-%m-%d %H:%M:%S"))
    text = "ABCDEF1234      10 Fri Dec 31 23:50:00  a@b.example\n          c@d.example\n"
    [m] = parse_mailq(text, now)
    assert now - m.arrival_time == pytest.approx(20 * 60)


POSTCAT = """\
*** ENVELOPE RECORDS deferred/F/F3AB22121A1 ***
message_size:             501             804               2               0             501               0
message_arrival_time: Wed Nov 25 02:28:40 2026
create_time: Wed Nov 25 02:28:40 2026
named_attribute: log_ident=F3AB22121A1
named_attribute: rewrite_context=remote
named_attribute: sasl_method=LOGIN
named_attribute: sasl_username=bob@relayguard.test
sender: bob@relayguard.test
named_attribute: client_address=127.0.1.6
named_attribute: dsn_orig_rcpt=rfc822;a@fast.example
original_recipient: a@fast.example
done_recipient: a@fast.example
named_attribute: dsn_orig_rcpt=rfc822;b@slow.example
original_recipient: b@slow.example
recipient: b@slow.example
*** MESSAGE CONTENTS deferred/F/F3AB22121A1 ***
*** HEADER EXTRACTED deferred/F/F3AB22121A1 ***
recipient: extracted@header.example
*** MESSAGE FILE END deferred/F/F3AB22121A1 ***
*** ENVELOPE RECORDS hold/D37A42121D9 ***
message_arrival_time: Wed Nov 25 02:27:33 2026
sender:
named_attribute: rewrite_context=local
recipient: q2@ext.example
*** MESSAGE CONTENTS hold/D37A42121D9 ***
*** HEADER EXTRACTED hold/D37A42121D9 ***
*** MESSAGE FILE END hold/D37A42121D9 ***
"""


def test_postcat_envelopes() -> None:
    envs = parse_postcat_envelopes(POSTCAT)
    bob = envs["F3AB22121A1"]
    assert bob.queue_name == "deferred" and bob.sender == "bob@relayguard.test"
    assert bob.sasl_username == "bob@relayguard.test" and bob.client_address == "127.0.1.6"
    assert bob.recipients == ["b@slow.example", "extracted@header.example"]
    assert bob.done_recipients == ["a@fast.example"]
    assert bob.arrival_time == time.mktime(time.strptime("2026-11-25 02:28:40", "%Y-%m-%d %H:%M:%S"))
    bounce = envs["D37A42121D9"]
    assert bounce.queue_name == "hold" and bounce.sender == ""
    assert bounce.sasl_username is None and bounce.client_address is None


@pytest.mark.parametrize(("external", "internal"), [
    ('"x;touch /tmp/pwned"@evil.example', "x;touch /tmp/pwned@evil.example"),
    ("x`touch${IFS}/tmp/pwned`@evil.example", "x`touch${IFS}/tmp/pwned`@evil.example"),
    ('"a\\"b"@c.example', 'a"b@c.example'),
    ('"user@inner"@outer.example', "user@inner@outer.example"),
    ("plain.user@example.com", "plain.user@example.com"),
])
def test_address_quoting_round_trip(external: str, internal: str) -> None:
    assert unquote_address(external) == internal
    assert quote_address(internal) == external


def test_null_sender_spellings() -> None:
    for s in ("", "<>", "MAILER-DAEMON", "mailer-daemon"):
        assert normalize_sender(s) == ""
    assert normalize_sender("<a@b.example>") == "a@b.example"
    assert normalize_sender("MAILER-DAEMON@b.example") == "MAILER-DAEMON@b.example"


@pytest.mark.parametrize("qid", ["4ADC4212251", "2F10238", "1C205316C411", "4XhZr10x3Kz1Mf",
                                 "4cPbJh6Fzwz9sM7"])
def test_valid_queue_ids(qid: str) -> None:
    assert valid_queue_id(qid)


@pytest.mark.parametrize("qid", ["", "ALL", "-", "../../etc/passwd", "4ADC 4212251", "4ADC4212251\n",
                                 "abc", "4ADC4212251;rm", "-d", "deferred/4ADC4212251",
                                 "AEIOU12345678"])
def test_invalid_queue_ids(qid: str) -> None:
    assert not valid_queue_id(qid)
