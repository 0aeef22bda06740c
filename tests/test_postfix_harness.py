"""The real-Postfix harness itself: the private instance relays what it should, refuses what it
should, logs where we read, talks to a fake internet we control, and leaves nothing behind."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

from harness import (
    BLOCKLIST,
    DEFER,
    REJECT,
    AuthError,
    FakeInternet,
    PostfixCase,
    PostfixError,
    PostfixInstance,
    reap_stale_instances,
    recipients_in,
)
from harness import postfix as harness_postfix

# Tests using the postfix fixtures are marked "postfix" by conftest.py; the others here only
# need Python.

TRUSTED_IP = "127.0.0.9"
UNTRUSTED_IP = "127.0.1.20"


def test_instance_is_private_and_configured(postfix: PostfixCase) -> None:
    pf = postfix.instance
    conf = pf.postconf(
        "config_directory", "queue_directory", "maillog_file", "mynetworks", "relayhost",
        "syslog_name", "inet_interfaces", "smtpd_sasl_auth_enable",
    )
    assert conf["config_directory"] == str(pf.config_dir)
    assert not conf["queue_directory"].startswith("/var/spool/postfix")
    assert conf["maillog_file"] == str(pf.maillog)
    assert conf["mynetworks"] == "127.0.0.0/28"
    assert conf["relayhost"] == f"[127.0.0.1]:{postfix.internet.port}"
    assert conf["inet_interfaces"] == "127.0.0.1"
    assert pf.master_pid in pf.pids()
    assert pf.queue() == []
    # The maillog is written by postlogd and carries the distinctive syslog_name.
    assert f" {conf['syslog_name']}/master[" in pf.maillog.read_text()


def test_untrusted_client_may_send_to_local_domain_only(postfix: PostfixCase) -> None:
    [local] = postfix.send(
        source_ip=UNTRUSTED_IP, sender="friend@outside.example",
        recipients=[f"alice@{postfix.domain}", f"nobody-here@{postfix.domain}"],
    )
    assert local.queue_id and local.accepted == [f"alice@{postfix.domain}"]
    assert local.refused[f"nobody-here@{postfix.domain}"][0] == 550
    [relay] = postfix.send(
        source_ip=UNTRUSTED_IP, sender="friend@outside.example",
        recipients=["someone@victim.example"],
    )
    assert relay.queue_id is None
    code, text = relay.refused["someone@victim.example"]
    assert code == 554 and "Relay access denied" in text
    postfix.settle()
    postfix.instance.wait_for_log(
        rf"NOQUEUE: reject: RCPT from unknown\[{UNTRUSTED_IP}\]: 554 5\.7\.1 "
        r"<someone@victim\.example>: Relay access denied", since=postfix.window,
    )
    postfix.instance.wait_for_log(
        rf"{local.queue_id}: to=<alice@{postfix.domain}>, relay=local, .*status=sent",
        since=postfix.window,
    )
    assert postfix.internet.received == []


def test_trusted_client_relays_without_auth(postfix: PostfixCase) -> None:
    rcpts = recipients_in(["one.example", "two.example"], 3)
    [res] = postfix.send(source_ip=TRUSTED_IP, sender="app@intranet.example",
                         recipients=rcpts, message_id=False)
    assert res.ok, res
    postfix.settle()
    assert sorted(postfix.internet.recipients()) == sorted(rcpts)
    lines = postfix.lines()
    assert any(f"{res.queue_id}: client=unknown[{TRUSTED_IP}]" in ln
               and "sasl_username" not in ln for ln in lines)
    assert any(f"{res.queue_id}: message-id=<>" in ln for ln in lines)
    assert sum(f"{res.queue_id}: to=<" in ln and "status=sent" in ln for ln in lines) == 3


def test_authenticated_user_relays(postfix: PostfixCase) -> None:
    user = "bob"
    results = postfix.send(
        source_ip=UNTRUSTED_IP, sender=f"{user}@{postfix.domain}", user=user,
        password=postfix.instance.password(user), recipients=["pal@friends.example"], count=2,
    )
    assert all(r.ok for r in results)
    postfix.settle()
    assert len(postfix.internet.received) == 2
    login = postfix.instance.login_name(user)
    for r in results:
        postfix.instance.wait_for_log(
            rf"{r.queue_id}: client=unknown\[{UNTRUSTED_IP}\], sasl_method=LOGIN, "
            rf"sasl_username={login}$", since=postfix.window,
        )
    # The same with PLAIN and the full login name.
    [plain] = postfix.send(
        source_ip="127.0.1.21", sender=f"{user}@{postfix.domain}", user=login,
        password=postfix.instance.password(user), mechanism="PLAIN", recipients=["x@y.example"],
    )
    assert plain.ok
    postfix.instance.wait_for_log(
        rf"{plain.queue_id}: client=unknown\[127\.0\.1\.21\], sasl_method=PLAIN, "
        rf"sasl_username={login}$", since=postfix.window,
    )


def test_wrong_password_is_refused_and_logged(postfix: PostfixCase) -> None:
    with pytest.raises(AuthError) as err:
        postfix.send(source_ip="127.0.1.22", sender="x@outside.example", user="carol",
                     password="not-her-password", recipients=["a@b.example"])
    assert err.value.smtp_code == 535
    assert not postfix.try_login(user="nosuchuser", password="x", source_ip="127.0.1.22")
    postfix.instance.wait_for_log(
        r"warning: unknown\[127\.0\.1\.22\]: SASL LOGIN authentication failed: "
        r"authentication failure, sasl_username=(carol|nosuchuser)@", since=postfix.window,
        count=2,
    )


def test_fake_internet_modes(postfix: PostfixCase) -> None:
    net = postfix.internet
    net.set_mode(DEFER, domains=["slow.example"])
    net.set_mode(REJECT, domains=["strict.example"])
    net.set_mode(BLOCKLIST, domains=["listed.example"])
    [res] = postfix.send(
        source_ip=TRUSTED_IP, sender=f"alerts@{postfix.domain}",
        recipients=["a@slow.example", "b@strict.example", "c@listed.example", "d@fine.example"],
    )
    assert res.ok
    queue = postfix.settle()
    # The deferred recipient keeps the message in the deferred queue, visible in postqueue -j.
    assert [m["queue_id"] for m in queue] == [res.queue_id]
    assert queue[0]["queue_name"] == "deferred"
    [rcpt] = queue[0]["recipients"]
    assert rcpt["address"] == "a@slow.example" and "451 4.7.1" in rcpt["delay_reason"]
    assert net.recipients() == ["d@fine.example"]
    lines = postfix.lines()

    def status(rcpt: str) -> str:  # the first delivery attempt's line
        return next(ln for ln in lines if f"{res.queue_id}: to=<{rcpt}>" in ln)

    assert "status=deferred" in status("a@slow.example")
    assert "status=bounced" in status("b@strict.example")
    listed = status("c@listed.example")
    assert "status=bounced" in listed and "blocked using zen.spamhaus.org" in listed
    assert "status=sent" in status("d@fine.example")

    # Switching back to accept lets the deferred mail go on the next retry.
    net.reset()
    postfix.instance.flush()
    postfix.settle(allow=())
    assert net.recipients() == ["a@slow.example"]


def test_missing_requirements_messages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    plugins = tmp_path / "sasl2"
    plugins.mkdir()
    for name in ("libsasldb.so.2", "libplain.so.2", "liblogin.so.2"):
        (plugins / name).touch()
    monkeypatch.setattr(harness_postfix, "_sasl_plugin_dirs", lambda: [plugins])
    monkeypatch.setattr(harness_postfix, "_which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert harness_postfix.missing_requirements() == "postfix tests need root"

    monkeypatch.setattr(harness_postfix, "_which",
                        lambda name: None if name == "postfix" else f"/usr/sbin/{name}")
    assert harness_postfix.missing_requirements() == (
        "postfix not installed: apt-get install postfix sasl2-bin libsasl2-modules"
    )

    monkeypatch.setattr(harness_postfix, "_which", lambda name: f"/usr/sbin/{name}")
    (plugins / "libsasldb.so.2").unlink()
    reason = harness_postfix.missing_requirements()
    assert reason is not None and "libsasldb" in reason and "apt-get install" in reason


def test_fake_internet_global_mode() -> None:
    with FakeInternet() as net:
        assert net.reply_for("x@any.example").startswith("250")
        net.set_mode(DEFER)
        assert net.reply_for("x@any.example").startswith("451")
        net.set_mode(REJECT, reply="550 5.7.0 custom", domains=["c.example"])
        assert net.reply_for("y@c.example") == "550 5.7.0 custom"
        assert net.reply_for("y@d.example").startswith("451")
        with pytest.raises(ValueError):
            net.set_mode("explode")
        # It is a real SMTP server.
        with socket.create_connection(net.address, timeout=5) as s:
            assert s.recv(100).startswith(b"220")


def _instance_processes(config_dir: Path) -> list[int]:
    """Live processes whose environment names this config directory (master and children).

    Zombies do not count: they are dead and only wait for init to reap them (here init reaps
    slowly, so the intermediate ``master`` of ``master -w``'s fork can linger as a zombie).
    """
    want = f"MAIL_CONFIG={config_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if want not in (entry / "environ").read_bytes().split(b"\0"):
                    continue
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                found.append(int(entry.name))
    return found


def _master_processes(config_dir: Path) -> list[int]:
    found = []
    for pid in _instance_processes(config_dir):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "master":
                found.append(pid)
        except OSError:  # exited meanwhile
            continue
    return found


def test_second_instance_leaves_nothing_behind(fake_internet: FakeInternet) -> None:
    """A separate instance in its own directory: after stop(), no master or child process with
    its config directory remains and the directory is gone."""
    parent = Path(tempfile.mkdtemp(prefix="relayguard-harness-test-"))
    os.chmod(parent, 0o755)
    pf = PostfixInstance(relayhost=fake_internet.address, parent_dir=parent,
                         syslog_name="relayguard-second")
    try:
        pf.start()
        base, config_dir, master = pf.base, pf.config_dir, pf.master_pid
        assert base is not None and base.parent == parent
        assert _master_processes(config_dir) == [master]
        assert len(_instance_processes(config_dir)) >= 2  # master, qmgr, pickup, postlogd...
        pf.stop()
        assert _master_processes(config_dir) == []
        assert _instance_processes(config_dir) == []
        assert not base.exists()
        assert list(parent.iterdir()) == []
        pf.stop()  # idempotent
    finally:
        pf.stop()  # when an assertion failed before the stop above
        os.rmdir(parent)


def test_stale_instance_of_a_killed_run_is_reaped(fake_internet: FakeInternet) -> None:
    """An instance whose starting process died (a killed test run) is stopped and deleted by
    reap_stale_instances(); live instances (like the session's) are left alone."""
    parent = Path(tempfile.mkdtemp(prefix="relayguard-harness-test-"))
    os.chmod(parent, 0o755)
    pf = PostfixInstance(relayhost=fake_internet.address, parent_dir=parent, reapable=True)
    try:
        pf.start()
        base, config_dir = pf.base, pf.config_dir
        assert base is not None
        assert reap_stale_instances(parent) == []  # its owner (this process) is alive
        (base / harness_postfix.OWNER_FILE).write_text("reapable 999999999 1")
        assert reap_stale_instances(parent) == [base]
        assert _instance_processes(config_dir) == []
        assert not base.exists()
    finally:
        if pf.base is not None and pf.base.exists():
            pf.stop()  # the test failed before the reaper did its job
        pf.base = None
        os.rmdir(parent)


def test_start_failure_names_the_cause(postfix_requirements: None) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        pf = PostfixInstance(port=port, syslog_name="relayguard-busy")
        with pytest.raises(PostfixError) as err:
            pf.start()
    text = str(err.value)
    assert f"port 127.0.0.1:{port} is already in use" in text
    assert f"fatal: bind 127.0.0.1 port {port}: Address already in use" in text  # maillog tail
    assert "postfix check said" in text
    assert pf.base is None  # cleaned up after the failure
