"""The policy protocol: reading name=value blocks (whole, split, glued, hostile) and answering."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relayguard.policy.protocol import ProtocolError, RequestReader, answer, clean_text, decode

# What Postfix 3.7 sends at RCPT (SMTPD_POLICY_README, every attribute up to 3.2 and later).
POSTFIX_RCPT = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
    b"helo_name=client.example.net\nqueue_id=\nsender=alice@example.org\n"
    b"recipient=bob@example.com\nrecipient_count=0\nclient_address=192.0.2.7\n"
    b"client_name=unknown\nreverse_client_name=unknown\ninstance=1a2b.6543210.0.0\n"
    b"sasl_method=LOGIN\nsasl_username=alice@example.org\nsasl_sender=\nsize=0\n"
    b"ccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n"
    b"encryption_protocol=\nencryption_cipher=\nencryption_keysize=0\netrn_domain=\nstress=\n"
    b"client_port=40123\npolicy_context=\nserver_address=127.0.0.1\nserver_port=25\n"
    b"compatibility_level=3.6\nmail_version=3.7.11\n\n"
)


def test_one_request_all_attributes() -> None:
    [req] = RequestReader().feed(POSTFIX_RCPT)
    assert req[b"request"] == b"smtpd_access_policy"
    assert req[b"protocol_state"] == b"RCPT"
    assert req[b"sasl_username"] == b"alice@example.org"
    assert req[b"queue_id"] == b""  # empty values are values
    assert len(req) == 31


def test_split_at_every_byte_and_glued() -> None:
    """Requests arrive in arbitrary pieces; two may come in one read."""
    for cut in range(1, len(POSTFIX_RCPT)):
        r = RequestReader()
        got = r.feed(POSTFIX_RCPT[:cut]) + r.feed(POSTFIX_RCPT[cut:])
        assert len(got) == 1 and got[0][b"client_address"] == b"192.0.2.7", cut
        assert r.pending == 0
    two = RequestReader().feed(POSTFIX_RCPT + POSTFIX_RCPT.replace(b"=RCPT", b"=DATA"))
    assert [q[b"protocol_state"] for q in two] == [b"RCPT", b"DATA"]


def test_value_with_equals_sign_and_repeated_names() -> None:
    [req] = RequestReader().feed(b"request=smtpd_access_policy\n"
                                 b"sender=SRS0=HHH=TT=example.org=bob@fwd.example\n"
                                 b"sasl_username=first\nsasl_username=last\n\n")
    assert req[b"sender"] == b"SRS0=HHH=TT=example.org=bob@fwd.example"
    assert req[b"sasl_username"] == b"last"  # either is allowed; we keep the last


def test_crlf_and_stray_blank_lines_are_tolerated() -> None:
    r = RequestReader()
    got = r.feed(b"\n\nrequest=smtpd_access_policy\r\nprotocol_state=RCPT\r\n\r\n\n")
    got += r.feed(b"request=smtpd_access_policy\nprotocol_state=DATA\n\n")
    assert [q[b"protocol_state"] for q in got] == [b"RCPT", b"DATA"]


@pytest.mark.parametrize("data, why", [
    (b"hello world\n\n", "name=value"),
    (b"GET / HTTP/1.1\nHost: x\n\n", "name=value"),
    (b"request=smtpd_access_policy\n=value\n\n", "name=value"),
    (b"request=smtpd_access_policy\nsender=a\0b\n\n", "NUL"),
    (b"".join(b"a%d=1\n" % i for i in range(101)) + b"\n", "attributes"),
    (b"x=" + b"y" * 9000 + b"\n\n", "larger"),
])
def test_malformed_requests_raise(data: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        RequestReader().feed(data)


def test_huge_request_without_end_is_refused_early() -> None:
    r = RequestReader(max_request=8192)
    r.feed(b"sender=" + b"a" * 8000)
    with pytest.raises(ProtocolError, match="larger than 8192"):
        r.feed(b"a" * 500)  # the buffer never grows past the limit


def test_limits_are_configurable() -> None:
    assert RequestReader(max_attributes=200).feed(
        b"".join(b"a%d=1\n" % i for i in range(150)) + b"\n")
    with pytest.raises(ProtocolError):
        RequestReader(max_request=64).feed(POSTFIX_RCPT)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=600), max_size=8))
def test_arbitrary_bytes_only_ever_raise_protocol_error(chunks: list[bytes]) -> None:
    r = RequestReader(max_request=1024)
    try:
        for c in chunks:
            for req in r.feed(c):
                assert all(k and b"\n" not in k and b"=" not in k for k in req)
                assert all(b"\n" not in v and b"\0" not in v for v in req.values())
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20),
                       st.text(max_size=40).filter(lambda v: "\n" not in v and "\r" not in v
                                                   and "\0" not in v),
                       min_size=1, max_size=40),
       st.integers(min_value=1, max_value=50))
def test_roundtrip_of_any_wellformed_request(attrs: dict[str, str], piece: int) -> None:
    data = ("".join(f"{k}={v}\n" for k, v in attrs.items()) + "\n").encode()
    r = RequestReader()
    got = []
    for i in range(0, len(data), piece):
        got += r.feed(data[i:i + piece])
    assert len(got) == 1
    assert {decode(k): decode(v) for k, v in got[0].items()} == attrs


def test_answers() -> None:
    assert answer("DUNNO") == b"action=DUNNO\n\n"
    assert answer("DEFER_IF_PERMIT", "Rate limit exceeded") == \
        b"action=DEFER_IF_PERMIT Rate limit exceeded\n\n"
    # Text from anywhere can never end the answer early or smuggle a second one.
    assert answer("REJECT", "bad\n\naction=OK\r\x00é") == b"action=REJECT bad action=OK\n\n"
    with pytest.raises(ValueError):
        answer("OK\naction=REJECT")
    assert len(clean_text("x" * 1000)) == 400


def test_decode_never_fails() -> None:
    assert decode(b"alice") == "alice"
    assert decode("jörg".encode()) == "jörg"
    assert decode(b"\xff\xfe") == "\udcff\udcfe"
    assert decode(None) == ""
