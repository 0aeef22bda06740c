"""The policy server's slots against slow and hostile clients, and its unix socket's access.

Issue 14: each byte reset the idle clock, so 50 connections dripping a byte a second kept
max_connections=50 full for good, and the 51st connection was reset; the unix socket was 0666,
so any local user could spend another login's rate limit. Now a request must be complete
`request_timeout` after its first byte, a connection past max_connections waits for a slot and
otherwise gets the fail answer (never a reset), and the socket is 0660 with group `unix_group`.
"""

from __future__ import annotations

import grp
import os
import random
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness import FakeInternet, PostfixInstance, send_mail
from relayguard.policy.server import SLOT_WAIT
from test_policy_server import (
    RELAYGUARD,
    PolicyClient,
    ServerThread,
    free_tcp_port,
    policy_request,
    policy_settings,
    wait_listening,
)

#: Every RCPT is over this limit: a real decision (DEFER_IF_PERMIT) tells itself apart from the
#: fail-open answer (DUNNO) given to a connection without a slot.
NONE_ALLOWED = {"key": "sasl_username", "max_messages": 0, "window": "1m",
                "message": "Rate limit exceeded"}
REAL = "DEFER_IF_PERMIT Rate limit exceeded"
FAIL_CLOSED = "DEFER_IF_PERMIT Policy service temporarily unavailable, try again later"


def connect(address: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True when the server closes `sock` (EOF or reset) within `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


class Drippers:
    """Connections sending a plausible request one byte per second, never finishing it."""

    def __init__(self, address: str, count: int) -> None:
        self.socks = [connect(address) for _ in range(count)]
        self.data = policy_request().rstrip(b"\n")  # no blank line, ever
        self.closed_at: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set() and i < len(self.data):
            for n, s in enumerate(self.socks):
                if n in self.closed_at:
                    continue
                try:
                    s.send(self.data[i:i + 1])
                except OSError:
                    self.closed_at[n] = time.monotonic()
            i += 1
            self.stop.wait(1.0)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for s in self.socks:
            s.close()


def test_slow_drip_cannot_hold_the_slots() -> None:
    settings = policy_settings(NONE_ALLOWED, max_connections=50, request_timeout="2s")
    with ServerThread(settings) as srv:
        drip = Drippers(srv.address, 50)
        try:
            deadline = time.monotonic() + 5
            while len(srv.server.connections) < 50 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(srv.server.connections) == 50  # every slot held by a dripper
            time.sleep(1.0)  # they have dripped a byte or two
            t = time.monotonic()
            c = PolicyClient(srv.address)
            assert c.ask() == "DUNNO"  # no slot: the fail-open answer, not a reset…
            assert time.monotonic() - t < 1.0  # …within a second
            assert c.closed(2)
            # The deadline closes the drippers 2 s after their first byte (whatever trickles
            # in); then new clients get real decisions again, on a kept connection.
            for s in drip.socks:
                assert closed_by_server(s, 4)
            assert len(srv.server.connections) == 0
            c = PolicyClient(srv.address)
            t = time.monotonic()
            assert [c.ask(), c.ask()] == [REAL, REAL]
            assert time.monotonic() - t < 1.0
            assert srv.server.protocol_errors >= 50
        finally:
            drip.close()


def test_random_bytes_without_a_blank_line_are_closed_at_the_deadline() -> None:
    rng = random.Random(14)
    with ServerThread(policy_settings(request_timeout="1s")) as srv:
        s = connect(srv.address)
        t = time.monotonic()
        closed = None
        while time.monotonic() - t < 5:  # a piece every 0.1 s: never idle, never complete
            try:
                s.sendall(bytes(rng.choice(range(11, 256)) for _ in range(20)))  # no "\n"
            except OSError:
                closed = time.monotonic() - t
                break
            if closed_by_server(s, 0.1):
                closed = time.monotonic() - t
                break
        assert closed is not None and 1.0 <= closed < 2.5, closed
        assert PolicyClient(srv.address).ask() == "DUNNO"  # the server itself is fine
        s.close()


@pytest.mark.parametrize("fail_closed, expected", [(False, "DUNNO"), (True, FAIL_CLOSED)])
def test_past_max_connections_an_answer_then_a_clean_close(fail_closed: bool,
                                                           expected: str) -> None:
    settings = policy_settings(NONE_ALLOWED, max_connections=2, fail_closed=fail_closed)
    with ServerThread(settings) as srv:
        held = [PolicyClient(srv.address) for _ in range(2)]
        assert [c.ask() for c in held] == [REAL, REAL]
        extra = PolicyClient(srv.address)
        t = time.monotonic()
        assert extra.ask() == expected  # what fail_closed says for our own failures
        assert SLOT_WAIT * 0.9 <= time.monotonic() - t < SLOT_WAIT + 0.5  # after the wait
        extra.sock.settimeout(2)
        assert extra.sock.recv(1) == b""  # closed by FIN, not reset (recv would raise)
        assert srv.server.overflowed == 1
        assert [c.ask() for c in held] == [REAL, REAL]  # the served ones are untouched


def test_a_slot_freed_during_the_wait_serves_the_waiting_client() -> None:
    with ServerThread(policy_settings(NONE_ALLOWED, max_connections=1)) as srv:
        first = PolicyClient(srv.address)
        assert first.ask() == REAL
        waiting = PolicyClient(srv.address)
        waiting.sock.sendall(policy_request())  # arrives while no slot is free
        time.sleep(SLOT_WAIT / 3)
        first.close()
        assert waiting.raw(b"").decode() == "action=" + REAL  # a real decision
        assert [waiting.ask(), waiting.ask()] == [REAL, REAL]  # and a kept connection
        assert srv.server.overflowed == 0


def test_keep_alive_pauses_between_requests_are_not_deadlines() -> None:
    with ServerThread(policy_settings(NONE_ALLOWED, request_timeout="0.5s",
                                      idle_timeout="20s")) as srv:
        c = PolicyClient(srv.address)
        answers = []
        for i in range(4):  # as Postfix does: a request, an answer, then a pause
            answers.append(c.ask(instance=f"k{i}"))
            time.sleep(0.8)  # longer than request_timeout
        req = policy_request(instance="split")
        c.sock.sendall(req[:40])  # one request in two pieces, 0.2 s apart
        time.sleep(0.2)
        answers.append(c.raw(req[40:]).decode().removeprefix("action="))
        assert answers == [REAL] * 5
        assert not c.closed(0.3)  # still open, and served
        assert c.ask() == REAL
        assert srv.server.protocol_errors == 0


def _some_group() -> grp.struct_group:
    """A group this process is not in by default, so the chown is observable."""
    for name in ("postfix", "nogroup", "mail"):
        with __import__("contextlib").suppress(KeyError):
            g = grp.getgrnam(name)
            if g.gr_gid != os.getegid():
                return g
    pytest.skip("no group other than our own to give the socket")


def test_unix_socket_is_0660_with_the_chosen_group(tmp_path: Path) -> None:
    group = _some_group()
    sock = tmp_path / "policy.sock"
    with ServerThread(policy_settings(NONE_ALLOWED, unix_group=group.gr_name),
                      listen=[f"unix:{sock}"]) as srv:
        st = sock.stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert oct(stat.S_IMODE(st.st_mode)) == "0o660"  # the default now
        assert st.st_gid == group.gr_gid
        assert PolicyClient(f"unix:{sock}").ask() == REAL
        assert srv.address == f"unix:{sock}"


def test_unknown_unix_group_is_one_line_and_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "rg.toml"
    cfg.write_text('[policy]\nunix_group = "no-such-group-rg"\n')
    sock = tmp_path / "policy.sock"
    r = subprocess.run([RELAYGUARD, "policy", "serve", "--listen", f"unix:{sock}", "--config",
                        str(cfg), "--state", str(tmp_path / "state.db")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and r.stderr.splitlines()[-1] == errors[0]  # after the start log
    assert errors[0].startswith("relayguard: error: cannot listen on unix:")
    assert errors[0].endswith("[policy] unix_group: no group named 'no-such-group-rg'")
    assert "Traceback" not in r.stderr
    assert not sock.exists()


@pytest.mark.postfix
def test_real_postfix_reaches_the_0660_postfix_group_socket(
        tmp_path: Path, fake_internet: FakeInternet, postfix_requirements: None) -> None:
    """smtpd runs as user postfix: the socket's group, not a 0666 mode, lets it in."""
    service = "unix:private/relayguard"  # relative to the queue directory, as README says
    pf = PostfixInstance(relayhost=fake_internet.address, syslog_name="relayguard-unixsock",
                         main_cf={"smtpd_recipient_restrictions": f"check_policy_service {service}",
                                  "smtpd_end_of_data_restrictions":
                                      f"check_policy_service {service}"},
                         reapable=True)
    pf.start()
    proc = None
    try:
        sock = pf.queue_dir / "private" / "relayguard"
        cfg = tmp_path / "rg.toml"
        cfg.write_text('[[policy.limits]]\nkey = "sasl_username"\nmax_messages = 2\n'
                       'window = "1h"\nmessage = "Rate limit exceeded, try later"\n')
        proc = subprocess.Popen([RELAYGUARD, "policy", "serve", "--listen", f"unix:{sock}",
                                 "--config", str(cfg), "--state", str(tmp_path / "state.db")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout
            time.sleep(0.05)
        st = sock.stat()
        assert (oct(stat.S_IMODE(st.st_mode)), st.st_gid) == ("0o660", grp.getgrnam("postfix").gr_gid)
        user = "carol"
        results = send_mail(pf, sender=f"{user}@{pf.domain}", recipients=["friend@example.com"],
                            source_ip="127.0.1.9", user=user, password=pf.password(user),
                            count=3)
        assert [r.code for r in results[:2]] == [250, 250]
        code, text = results[2].refused["friend@example.com"]
        assert code == 450 and "Rate limit exceeded, try later" in text  # we were asked
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        pf.stop()


@pytest.mark.postfix
def test_real_postfix_past_max_connections_gets_an_answer_not_451(
        tmp_path: Path, fake_internet: FakeInternet, postfix_requirements: None) -> None:
    """A reset costs Postfix a retry, then its own 451 4.3.5; the fail-open answer lets mail
    flow, and once a slot is free the limits apply again on smtpd's next connection."""
    port = free_tcp_port()
    cfg = tmp_path / "rg.toml"
    cfg.write_text('[policy]\nmax_connections = 1\n[[policy.limits]]\nkey = "sasl_username"\n'
                   'max_messages = 0\nwindow = "1h"\nmessage = "Rate limit exceeded, try later"\n')
    proc = subprocess.Popen([RELAYGUARD, "policy", "serve", "--listen", f"127.0.0.1:{port}",
                             "--config", str(cfg), "--state", str(tmp_path / "state.db")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    service = f"inet:127.0.0.1:{port}"
    pf = PostfixInstance(relayhost=fake_internet.address, syslog_name="relayguard-overflow",
                         main_cf={"smtpd_recipient_restrictions": f"check_policy_service {service}"},
                         reapable=True)
    try:
        wait_listening(port, proc)
        time.sleep(0.3)  # wait_listening's probe connection has left its slot
        hog = connect(f"127.0.0.1:{port}")  # the one slot, held silently
        pf.start()
        [r] = send_mail(pf, sender=f"dave@{pf.domain}", recipients=["friend@example.com"],
                        source_ip="127.0.1.10", user="dave", password=pf.password("dave"))
        assert r.code == 250 and not r.refused  # the fail-open answer, not 451 4.3.5
        hog.close()
        time.sleep(0.3)
        [r] = send_mail(pf, sender=f"dave@{pf.domain}", recipients=["friend@example.com"],
                        source_ip="127.0.1.10", user="dave", password=pf.password("dave"))
        code, text = r.refused["friend@example.com"]
        assert code == 450 and "Rate limit exceeded, try later" in text  # served again
        assert not pf.maillog.exists() or "problem talking to server" not in pf.maillog.read_text()
    finally:
        pf.stop()
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "no free connection slot" in out
