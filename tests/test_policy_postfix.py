"""The policy server behind a real Postfix 3.7 (its own private instance, never the shared one).

main.cf of the instance, as docs/policy.md recommends:

    smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:PORT
    smtpd_end_of_data_restrictions = check_policy_service inet:127.0.0.1:PORT

(relay control stays in the harness's smtpd_relay_restrictions, which Postfix evaluates first,
so the policy check comes after reject_unauth_destination.)

What an SMTP client sees: a user past the limit gets 450 4.7.1 at RCPT, or at the end of DATA
when sessions raced; a locked user and a banned address get 554 5.7.1; past a HOLD limit mail
is accepted into the hold queue; and with the policy
server killed, Postfix answers 451 4.3.5 ("Server configuration problem") unless the service
is declared `{ inet:..., default_action=DUNNO }`, where mail flows without it.
"""

from __future__ import annotations

import signal
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import FakeInternet, PostfixInstance, make_message, send_mail
from relayguard.state.shared import Ban, Lock, SqliteShared
from relayguard.state.store import Store
from test_policy_server import RELAYGUARD, free_tcp_port, wait_answer, wait_listening

pytestmark = pytest.mark.postfix

CONFIG = """
[policy]
refresh_interval = "0.2s"
[[policy.limits]]
key = "sasl_username"
max_messages = 3
window = "1h"
action = "DEFER_IF_PERMIT"
message = "Rate limit exceeded, try later"
"""


class PolicyProcess:
    """`relayguard policy serve` as a real process (so that it can be killed for real)."""

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        self.tmp = tmp
        self.port = port or free_tcp_port()
        self.state = tmp / "state.db"
        self.config = tmp / "relayguard.toml"
        self.config.write_text(CONFIG)
        self.log = tmp / f"policy-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> PolicyProcess:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [RELAYGUARD, "policy", "serve", "--listen", f"127.0.0.1:{self.port}",
                 "--config", str(self.config), "--state", str(self.state)],
                stdout=out, stderr=subprocess.STDOUT)
        wait_listening(self.port, self.proc)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def shared(self) -> SqliteShared:
        return SqliteShared(Store(self.state))

    def wait(self, prefix: str, **request: str) -> None:
        """Until the server answers `prefix` (it rereads bans and locks every 0.2 s)."""
        got = wait_answer(f"127.0.0.1:{self.port}", prefix, **request)
        assert got.startswith(prefix), got


def restrictions(service: str) -> dict[str, str]:
    return {"smtpd_recipient_restrictions": f"check_policy_service {service}",
            "smtpd_end_of_data_restrictions": f"check_policy_service {service}"}


@pytest.fixture(scope="module")
def policy_server(tmp_path_factory: pytest.TempPathFactory,
                  postfix_requirements: None) -> Iterator[PolicyProcess]:
    server = PolicyProcess(tmp_path_factory.mktemp("policy")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mta(policy_server: PolicyProcess, fake_internet: FakeInternet) -> Iterator[PostfixInstance]:
    pf = PostfixInstance(relayhost=fake_internet.address, syslog_name="relayguard-policy",
                         main_cf=restrictions(f"inet:127.0.0.1:{policy_server.port}"),
                         reapable=True)
    pf.start()
    try:
        yield pf
    finally:
        pf.stop()


def send(pf: PostfixInstance, user: str | None, *, count: int = 1, source_ip: str = "127.0.1.5",
         recipients: tuple[str, ...] = ("friend@example.com",)) -> list:
    return send_mail(pf, sender=f"{user or 'someone'}@{pf.domain}", recipients=list(recipients),
                     source_ip=source_ip, user=user,
                     password=pf.password(user) if user else None, count=count)


def test_user_past_the_limit_gets_4xx_on_the_smtp_session(mta: PostfixInstance) -> None:
    results = send(mta, "alice", count=5)
    assert [r.code for r in results[:3]] == [250, 250, 250]
    for r in results[3:]:  # refused at RCPT: no DATA at all
        assert r.code is None
        code, text = r.refused["friend@example.com"]
        assert code == 450 and "4.7.1" in text and "Rate limit exceeded, try later" in text
    assert [r.code for r in send(mta, "bob", count=2)] == [250, 250]  # others unaffected
    mta.wait_for_log(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.1\.5\]: 450 4\.7\.1 "
                     r"<friend@example\.com>: Recipient address rejected: Rate limit exceeded",
                     count=2)


def test_racing_sessions_are_deferred_at_end_of_data(mta: PostfixInstance) -> None:
    """Four sessions pass RCPT together; END-OF-MESSAGE lets only three messages through."""
    sessions = []
    try:
        for i in range(4):
            s = smtplib.SMTP(*mta.address, timeout=20, source_address=(f"127.0.1.{20 + i}", 0))
            s.ehlo("racer.example")
            s.login("carol", mta.password("carol"))
            assert s.mail(f"carol@{mta.domain}")[0] == 250
            assert s.rcpt("friend@example.com")[0] == 250
            sessions.append(s)
        codes = []
        for s in sessions:
            try:
                code, text = s.data(make_message(f"carol@{mta.domain}", ["friend@example.com"]))
            except smtplib.SMTPDataError as exc:
                code, text = exc.smtp_code, exc.smtp_error
            codes.append((code, text.decode(errors="replace")))
    finally:
        for s in sessions:
            s.close()
    assert [c for c, _ in codes] == [250, 250, 250, 450]
    assert "4.7.1" in codes[3][1] and "Rate limit exceeded" in codes[3][1]


def test_locked_user_is_rejected(mta: PostfixInstance, policy_server: PolicyProcess) -> None:
    shared = policy_server.shared()
    try:
        # Postfix sends the login with its realm, exactly as its log shows it.
        shared.add_lock(Lock(mta.login_name("dave"), "password guessed", time.time(),
                             source="test"))
        policy_server.wait("REJECT", user=mta.login_name("dave"))  # reloaded every 0.2 s
        [r] = send(mta, "dave")
        code, text = r.refused["friend@example.com"]
        assert code == 554 and "5.7.1" in text and "account is locked" in text
        assert send(mta, "erin")[0].code == 250
        shared.remove_lock(mta.login_name("dave"))
        policy_server.wait("DUNNO", user=mta.login_name("dave"))
        assert send(mta, "dave")[0].code == 250
    finally:
        shared.close()


def test_banned_client_address_is_rejected(mta: PostfixInstance,
                                           policy_server: PolicyProcess) -> None:
    shared = policy_server.shared()
    try:
        shared.add_ban(Ban("127.0.2.0/24", "brute force from this range", time.time(),
                           time.time() + 600, source="test"))
        policy_server.wait("REJECT", client="127.0.2.9", user="")
        # Even mail for a local address, even authenticated: the address is banned.
        [r] = send(mta, None, source_ip="127.0.2.9", recipients=(f"postmaster@{mta.domain}",))
        code, text = r.refused[f"postmaster@{mta.domain}"]
        assert code == 554 and "client address is blocked" in text
        [r] = send(mta, "frank", source_ip="127.0.2.10")
        assert r.refused["friend@example.com"][0] == 554
        assert send(mta, "frank", source_ip="127.0.3.10")[0].code == 250
    finally:
        shared.remove_ban("127.0.2.0/24")
        shared.close()


def test_killed_policy_server_postfix_default_vs_default_action_dunno(
        tmp_path: Path, fake_internet: FakeInternet, postfix_requirements: None) -> None:
    """Postfix's own answer when the policy server is unreachable is 451 4.3.5 (3.0+); with
    `default_action=DUNNO` in the service definition, mail flows without the server."""
    policy = PolicyProcess(tmp_path).start()
    service = f"inet:127.0.0.1:{policy.port}"
    pf = PostfixInstance(relayhost=fake_internet.address, syslog_name="relayguard-failopen",
                         main_cf=restrictions(service), reapable=True)
    pf.start()
    try:
        assert send(pf, "grace")[0].code == 250  # server up: mail flows
        policy.kill()
        [r] = send(pf, "grace")
        code, text = r.refused["friend@example.com"]
        assert code == 451 and "4.3.5" in text and "Server configuration problem" in text
        pf.wait_for_log(r"warning: problem talking to server 127\.0\.0\.1:\d+")
        # The fail-open form of the service: Postfix answers DUNNO itself when we are gone.
        for name, value in restrictions(f"{{ {service}, default_action=DUNNO }}").items():
            subprocess.run(["postconf", "-c", str(pf.config_dir), "-e", f"{name}={value}"],
                           check=True, capture_output=True)
        subprocess.run(["postfix", "-c", str(pf.config_dir), "reload"], check=True,
                       capture_output=True)
        time.sleep(1.0)  # smtpd processes started after the reload read the new main.cf
        before = len(fake_internet.recipients())
        [r] = send(pf, "grace")
        assert r.code == 250 and not r.refused
        pf.wait_queue_settled(allow=())
        assert len(fake_internet.recipients()) == before + 1  # really delivered
        # And enforcement comes back with the server (same state database, same port).
        policy.start()
        shared = policy.shared()
        shared.add_lock(Lock(pf.login_name("heidi"), "compromised", time.time()))
        shared.close()
        policy.wait("REJECT", user=pf.login_name("heidi"))
        assert send(pf, "heidi")[0].refused["friend@example.com"][0] == 554
    finally:
        pf.stop()
        policy.stop()


def test_hold_limit_accepts_and_holds(tmp_path: Path, fake_internet: FakeInternet,
                                      postfix_requirements: None) -> None:
    """A HOLD limit: past it, mail is accepted (250) but waits in the hold queue."""
    policy = PolicyProcess(tmp_path)
    policy.config.write_text('[[policy.limits]]\nkey = "client_address"\nmax_messages = 1\n'
                             'window = "1h"\naction = "HOLD"\nmessage = "held for review"\n')
    policy.start()
    pf = PostfixInstance(relayhost=fake_internet.address, syslog_name="relayguard-hold",
                         main_cf=restrictions(f"inet:127.0.0.1:{policy.port}"), reapable=True)
    pf.start()
    try:
        results = send(pf, None, count=3, source_ip="127.0.0.3")  # a trusted host, no AUTH
        assert [r.code for r in results] == [250, 250, 250]
        queue = pf.wait_queue_settled(allow=("hold",))
        assert sorted(m["queue_id"] for m in queue) == sorted(r.queue_id for r in results[1:])
        assert all(m["queue_name"] == "hold" for m in queue)
        pf.wait_for_log(r"NOQUEUE: hold: RCPT from unknown\[127\.0\.0\.3\]: <friend@example\.com>: "
                        r"Recipient address held for review")
    finally:
        pf.stop()
        policy.stop()
