"""`relayguard probe-relay` against the suite's real Postfix, from trusted and untrusted sources.

The instance trusts 127.0.0.0/28 (conftest.POSTFIX_MYNETWORKS): 127.0.0.5 may relay, 127.0.1.5
may not.  The probe stops at RCPT TO, so the queue must stay empty and the fake internet must
receive nothing, whatever the verdict.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from harness import free_port
from relayguard.audit.probe import ProbeError, probe_relay

TRUSTED = "127.0.0.5"
UNTRUSTED = "127.0.1.5"


def rg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relayguard", *args], capture_output=True,
                          text=True, timeout=60)


def _assert_nothing_queued(postfix) -> None:
    # Give cleanup/qmgr a moment: a message accepted by mistake would show up here.
    time.sleep(0.3)
    assert postfix.instance.queue() == []
    assert postfix.internet.received == []


def test_trusted_source_relays_without_queueing(postfix) -> None:
    host, port = postfix.address
    assert postfix.instance.queue() == []
    result = probe_relay(host, port, source=TRUSTED, timeout=10)
    assert result.verdict == "open", result.transcript
    assert result.open_relay is True
    assert result.reply and result.reply.startswith("250")
    commands = [line[3:].split()[0].upper() for line in result.transcript if line.startswith("C: ")]
    assert commands == ["EHLO", "MAIL", "RCPT", "RSET", "QUIT"]
    assert "DATA" not in commands
    _assert_nothing_queued(postfix)


def test_untrusted_source_is_refused(postfix) -> None:
    host, port = postfix.address
    result = probe_relay(host, port, source=UNTRUSTED, timeout=10)
    assert result.verdict == "closed", result.transcript
    assert result.open_relay is False
    assert "Relay access denied" in (result.reply or "")
    assert not any(line.startswith("C: DATA") for line in result.transcript)
    _assert_nothing_queued(postfix)
    # Postfix logged the refusal for the untrusted address: the probe really came from there.
    postfix.instance.wait_for_log(rf"NOQUEUE: reject: RCPT from unknown\[{UNTRUSTED}\]",
                                  postfix.window)


def test_cli_json_and_exit_codes(postfix) -> None:
    target = "{}:{}".format(*postfix.address)
    opened = rg("probe-relay", target, "--source", TRUSTED, "--format", "json",
                "--rcpt-to", "someone@victim.example", "--timeout", "10")
    assert opened.returncode == 1, opened.stderr
    data = json.loads(opened.stdout)
    assert data["open_relay"] is True
    assert any(line.startswith("C: RCPT TO:<someone@victim.example>")
               for line in data["transcript"])
    closed = rg("probe-relay", target, "--source", UNTRUSTED, "--timeout", "10")
    assert closed.returncode == 0, closed.stderr
    assert "not relaying" in closed.stdout
    assert "RSET" in closed.stdout  # the transcript is shown to people too
    _assert_nothing_queued(postfix)


def test_audit_of_the_running_instance(postfix) -> None:
    """The harness's own configuration, read through the real postconf -c."""
    r = rg("audit", "--config-dir", str(postfix.instance.config_dir), "--no-dovecot",
           "--format", "json")
    data = json.loads(r.stdout)
    port = postfix.address[1]
    assert {"service": f"127.0.0.1:{port}/inet", "listen": f"127.0.0.1:{port}",
            "role": "other", "exposure": "local", "sasl": True} in data["services"]
    assert not [f for f in data["findings"] if f["id"] == "open_relay"]
    assert r.returncode == 0, r.stdout


def test_connection_refused_is_a_usage_error() -> None:
    port = free_port()
    with pytest.raises(ProbeError, match="cannot connect"):
        probe_relay("127.0.0.1", port, timeout=2)
    r = rg("probe-relay", f"127.0.0.1:{port}", "--timeout", "2")
    assert r.returncode == 2
    assert r.stderr.startswith("relayguard: error: cannot connect to 127.0.0.1:")
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (["mx.example:notaport"], "bad target"),
    (["127.0.0.1:25", "--source", "not-an-ip"], "--source"),
    (["127.0.0.1:25", "--rcpt-to", "a@b>\r\nDATA"], "--rcpt-to"),
])
def test_bad_arguments(args: list[str], message: str) -> None:
    r = rg("probe-relay", *args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------- TLS (no Postfix needed)
class _Recorder:
    """An aiosmtpd handler that accepts every recipient and notes any DATA (there must be none)."""

    def __init__(self) -> None:
        self.data_calls = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.data_calls += 1
        return "250 2.0.0 Ok"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip(f"openssl cannot make a test certificate: {r.stderr.strip()}")
    return str(cert), str(key)


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_probe_speaks_tls(mode: str, tls_files: tuple[str, str]) -> None:
    import ssl

    from aiosmtpd.controller import Controller

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*tls_files)
    handler = _Recorder()
    port = free_port()
    kw = ({"tls_context": ctx, "require_starttls": True} if mode == "starttls"
          else {"ssl_context": ctx})
    server = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10, **kw)
    server.start()
    try:
        # "auto" must find STARTTLS by itself; implicit TLS has to be asked for off port 465.
        result = probe_relay("127.0.0.1", port, timeout=10,
                             tls="auto" if mode == "starttls" else "implicit")
    finally:
        server.stop()
    assert result.tls is True
    assert result.verdict == "open", result.transcript
    assert ("C: STARTTLS" in result.transcript) == (mode == "starttls")
    assert handler.data_calls == 0
