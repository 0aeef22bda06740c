"""Queue control on the real private Postfix: hold by SASL user through the log, release,
requeue, delete by sender with a backup, restore with the original envelope, hostile sender
addresses, --dry-run, a refused unconfirmed run, and `queue check` against the real queue.

The fake internet is put in "defer" mode so that mail stays queued; every test puts it back and
purges the queue when it ends, whatever happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from harness import ACCEPT, DEFER, PostfixCase
from relayguard.cli.history import history
from relayguard.cli.queue import queue
from relayguard.queue.tools import PostfixTools
from relayguard.state import Store

pytestmark = pytest.mark.postfix

HOSTILE = ['"x;touch /tmp/pwned"@evil.example', "x`touch${IFS}/tmp/pwned`@evil.example"]
CANARY = Path("/tmp/pwned")


@dataclass
class QueueCase:
    """The `postfix` fixture in defer mode, plus paths for the state database and backups."""

    pf: PostfixCase
    state: Path
    backups: Path

    @property
    def config_dir(self) -> str:
        return str(self.pf.instance.config_dir)

    def cli(self, *args: str, cmd: Any = queue, expect: int | None = 0) -> Result:
        """Run `relayguard queue ARGS` (or `history`) in-process against the instance."""
        argv = list(args)
        name = argv[0] if argv else ""
        if cmd is queue:
            argv += ["--config-dir", self.config_dir]
            if name in ("hold", "release", "requeue", "delete", "export", "restore"):
                argv += ["--state", str(self.state)]
            if name in ("delete", "export"):
                argv += ["--backup-dir", str(self.backups)]
        else:
            argv += ["--state", str(self.state)]
        result = CliRunner().invoke(cmd, argv, catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, (
                f"relayguard {' '.join(argv)} exited {result.exit_code}\n{result.output}")
        return result

    def json(self, *args: str, expect: int | None = 0, cmd: Any = queue) -> Any:
        out = self.cli(*args, "--format", "json", cmd=cmd, expect=expect).stdout
        return json.loads(out)

    def queue(self) -> list[dict[str, Any]]:
        return self.pf.instance.queue()

    def by_sender(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for m in self.queue():
            out.setdefault(m["sender"], []).append(m)
        return out

    def send(self, sender: str, recipients: list[str], *, user: str | None = None,
             source_ip: str = "127.0.0.5", count: int = 1, subject: str | None = None) -> list[str]:
        kw: dict[str, Any] = {"sender": sender, "recipients": recipients, "source_ip": source_ip,
                              "count": count}
        if user is not None:
            kw |= {"user": user, "password": self.pf.instance.password(user)}
        if subject is not None:
            kw["subject"] = subject
        results = self.pf.send(**kw)
        assert all(r.ok and r.queue_id for r in results), results
        return [r.queue_id for r in results if r.queue_id]

    def settle(self) -> list[dict[str, Any]]:
        return self.pf.settle(allow=("deferred", "hold"))

    def wait_for(self, pred: Any, timeout: float = 20.0, what: str = "") -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            q = self.queue()
            if pred(q):
                return q
            if time.monotonic() > deadline:
                pytest.fail(f"queue never reached: {what}\n{json.dumps(q, indent=1)[:3000]}", False)
            time.sleep(0.2)


@pytest.fixture
def qc(postfix: PostfixCase, tmp_path: Path) -> Iterator[QueueCase]:
    postfix.internet.set_mode(DEFER)
    try:
        yield QueueCase(postfix, tmp_path / "state.db", tmp_path / "backups")
    finally:
        # Leave the shared instance as the next test expects it: accepting, empty queue.
        postfix.internet.reset()
        if postfix.instance.queue():
            postfix.instance.purge()


def ids_in(q: list[dict[str, Any]], queue_name: str | None = None) -> set[str]:
    return {m["queue_id"] for m in q if queue_name is None or m["queue_name"] == queue_name}


def test_hold_by_sasl_user_through_the_log_then_release(qc: QueueCase) -> None:
    """admin's mail (the seeds' compromised login) is held; bob's and a trusted host's are not."""
    d = qc.pf.domain
    spam = qc.send(f"admin@{d}", ["a@victim1.example", "b@victim2.example"], user="admin",
                   source_ip="127.0.1.21", count=3)
    spam += qc.send(f"ceo@{d}", ["c@victim3.example"], user="admin", source_ip="127.0.1.22")
    ham = qc.send(f"bob@{d}", ["friend@partner.example"], user="bob", source_ip="127.0.1.23")
    ham += qc.send("monitor@intranet.example", ["ops@partner.example"], source_ip="127.0.0.7")
    qc.settle()
    log = str(qc.pf.instance.maillog)

    listed = qc.json("list", "--sasl-user", "admin", "--log", log)
    assert {m["queue_id"] for m in listed} == set(spam)
    assert {m["origin_source"] for m in listed} == {"log"}
    assert {m["sasl_username"] for m in listed} == {qc.pf.instance.login_name("admin")}

    res = qc.json("hold", "--sasl-user", "admin", "--log", log, "--yes")
    assert set(res["done"]) == set(spam) and res["gone"] == []
    q = qc.queue()
    assert ids_in(q, "hold") == set(spam)
    assert not ids_in(q, "hold") & set(ham)

    # Holding again: nothing left to hold (already on hold is not an error).
    again = qc.json("hold", "--sasl-user", "admin", "--log", log, "--yes")
    assert again["matched"] == 0 and again["on_hold_skipped"] == len(spam)

    held_list = qc.json("list", "--queue", "hold")
    assert {m["queue_id"] for m in held_list} == set(spam)

    # Release one sender's share: it leaves hold, the rest stays.
    rel = qc.json("release", "--sender", f"ceo@{d}", "--yes")
    assert len(rel["done"]) == 1
    q = qc.queue()
    assert ids_in(q, "hold") == set(spam) - set(rel["done"])
    assert set(rel["done"]) <= ids_in(q)  # still queued (deferred/active), not lost

    with Store(qc.state) as store:
        entries = store.history()
    # The second hold matched nothing and did nothing: not an entry.
    assert [e["action"] for e in entries] == ["release", "hold"]
    hold_entry = entries[1]
    assert set(hold_entry["queue_ids"]) == set(spam)
    assert hold_entry["selector"] == {"sasl_users": ["admin"]}
    assert hold_entry["uid"] == os.getuid() and hold_entry["count"] == len(spam)


def test_select_by_client_ip_from_queue_files(qc: QueueCase) -> None:
    """Without any log, --client-ip and --sasl-user read the queue files (postcat)."""
    d = qc.pf.domain
    a = qc.send(f"carol@{d}", ["x@far.example"], user="carol", source_ip="127.0.2.31", count=2)
    b = qc.send(f"dave@{d}", ["y@far.example"], user="dave", source_ip="127.0.2.32")
    c = qc.send("app@intranet.example", ["z@far.example"], source_ip="127.0.0.9")
    qc.settle()
    got = qc.json("list", "--client-ip", "127.0.2.0/24")
    assert {m["queue_id"] for m in got} == set(a + b)
    assert {m["origin_source"] for m in got} == {"queue"}
    assert {m["queue_id"] for m in qc.json("list", "--sasl-user", "carol")} == set(a)
    assert {m["queue_id"] for m in qc.json("list", "--client-ip", "127.0.0.9")} == set(c)
    # AND: carol's login from an address she did not use matches nothing.
    assert qc.json("list", "--sasl-user", "carol", "--client-ip", "127.0.2.32") == []


def test_delete_by_sender_with_backup_then_restore_original_envelope(qc: QueueCase) -> None:
    d = qc.pf.domain
    spammer = f"newsletter@{d}"
    rcpts = ["one@dest1.example", "two@dest2.example", "three@dest1.example"]
    victims = qc.send(spammer, rcpts, user="erin", source_ip="127.0.1.41", count=2,
                      subject="Cheap watches")
    keep = qc.send(f"erin@{d}", ["boss@dest1.example"], user="erin", source_ip="127.0.1.41")
    before = {m["queue_id"]: m for m in qc.settle()}

    res = qc.json("delete", "--sender", spammer, "--yes")
    assert set(res["done"]) == set(victims) and not res["failed"]
    backup = Path(res["backup_dir"])
    assert backup.parent == qc.backups and oct(backup.stat().st_mode & 0o777) == "0o700"
    q = qc.queue()
    assert not ids_in(q) & set(victims)
    assert set(keep) <= ids_in(q)

    # The backup: full message + envelope for each deleted message, and a manifest.
    manifest = json.loads((backup / "manifest.json").read_text())
    assert set(manifest["queue_ids"]) == set(victims)
    for qid in victims:
        env = json.loads((backup / f"{qid}.json").read_text())
        assert env["sender"] == spammer
        assert sorted(r["address"] for r in env["recipients"]) == sorted(rcpts)
        assert env["arrival_time"] == before[qid]["arrival_time"]
        assert env["queue_name"] == before[qid]["queue_name"]
        assert env["sasl_username"] == qc.pf.instance.login_name("erin")
        content = (backup / f"{qid}.eml").read_bytes()
        assert b"Subject: Cheap watches" in content and b"this is a test message" in content
        assert (backup / f"{qid}.eml").stat().st_mode & 0o077 == 0

    with Store(qc.state) as store:
        [entry] = store.history(action="delete")
    assert entry["backup_dir"] == str(backup) and set(entry["queue_ids"]) == set(victims)

    # Restore: same sender, same recipients, new queue IDs.
    restored = qc.json("restore", str(backup), "--yes")
    assert set(restored["done"]) == set(victims)
    q = qc.wait_for(lambda q: len([m for m in q if m["sender"] == spammer]) == 2,
                    what="two restored messages")
    back = [m for m in q if m["sender"] == spammer]
    assert not ids_in(back) & set(victims)
    for m in back:
        assert sorted(r["address"] for r in m["recipients"]) == sorted(rcpts)

    # A second restore of the same directory re-injects nothing.
    again = qc.json("restore", str(backup), "--yes")
    assert again["matched"] == 0 and sorted(again["already_restored"]) == sorted(victims)

    # And the restored mail really goes out with its envelope once the internet accepts.
    qc.pf.internet.set_mode(ACCEPT)
    qc.pf.instance.flush()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = [m for m in qc.pf.internet.received if m.mail_from == spammer]
        if len(got) >= 2 and sum(len(m.rcpt_tos) for m in got) >= 2 * len(rcpts):
            break
        time.sleep(0.2)
    got = [m for m in qc.pf.internet.received if m.mail_from == spammer]
    assert sorted(r for m in got for r in m.rcpt_tos) == sorted(rcpts * 2)
    assert all(b"Subject: Cheap watches" in m.data for m in got)


def test_hostile_senders_deleted_by_exact_match_and_restored(qc: QueueCase) -> None:
    """Shell metacharacters in addresses are data: exact match, no command run, no file made."""
    CANARY.unlink(missing_ok=True)
    hostile = {s: qc.send(s, ["target@victim.example"], source_ip="127.0.0.11") for s in HOSTILE}
    # Look-alikes that a substring or pattern match would also catch.
    near = qc.send("x@evil.example", ["target@victim.example"], source_ip="127.0.0.11")
    near += qc.send('"x;touch /tmp/pwned"@evil.example.org', ["target@victim.example"],
                    source_ip="127.0.0.11")
    q = qc.settle()
    assert set(HOSTILE) <= {m["sender"] for m in q}, "Postfix rewrote a hostile sender"

    for sender, ids in hostile.items():
        res = qc.json("delete", "--sender", sender, "--yes")
        assert res["done"] == ids, sender
        backup = Path(res["backup_dir"])
        assert json.loads((backup / f"{ids[0]}.json").read_text())["sender"] == sender
        restored = qc.json("restore", str(backup), "--yes")
        assert restored["done"] == ids
    q = qc.wait_for(lambda q: sum(m["sender"] in HOSTILE for m in q) == 2, what="restored")
    assert set(near) <= ids_in(q), "a look-alike sender was deleted"
    assert {m["sender"] for m in q} >= set(HOSTILE)
    # Listing, summary and history print them without running anything either.
    qc.cli("list")
    qc.cli("summary", "--origins")
    qc.cli(cmd=history)
    assert not CANARY.exists(), "a hostile sender address was executed"


def test_requeue_gives_new_queue_id_and_leaves_held_mail_alone(qc: QueueCase) -> None:
    d = qc.pf.domain
    sender = f"frank@{d}"
    old, held = qc.send(sender, ["r@requeue.example"], user="frank", source_ip="127.0.1.51",
                        count=2)
    qc.settle()
    qc.json("hold", "--queue-id", held, "--yes")
    res = qc.json("requeue", "--sender", sender, "--yes")
    assert res["done"] == [old] and res["on_hold_skipped"] == 1
    q = qc.wait_for(lambda q: any(m["sender"] == sender and m["queue_id"] not in (old, held)
                                  and m["queue_name"] != "maildrop" for m in q),
                    what="the requeued message under a new ID")
    assert old not in ids_in(q) and held in ids_in(q, "hold")
    # The queue file keeps its origin through requeue: still selectable by login.
    assert {m["sender"] for m in qc.json("list", "--sasl-user", "frank")} == {sender}
    # Held mail is requeued only when asked for by name.
    res = qc.json("requeue", "--queue", "hold", "--sender", sender, "--yes")
    assert res["done"] == [held]
    qc.wait_for(lambda q: held not in ids_in(q) and sum(m["sender"] == sender for m in q) == 2
                and not ids_in(q, "maildrop"), what="both requeued")


def test_dry_run_and_refused_run_change_nothing(qc: QueueCase) -> None:
    d = qc.pf.domain
    ids = qc.send(f"grace@{d}", ["g@dry.example"], user="grace", source_ip="127.0.1.61", count=3)
    before = ids_in(qc.settle())
    for action in ("hold", "delete", "requeue", "export"):
        res = qc.json(action, "--sender", f"grace@{d}", "--dry-run", "--yes")
        assert res["dry_run"] and res["matched"] == 3 and res["done"] == []
    text = qc.cli("delete", "--sender", f"grace@{d}", "--dry-run").stdout
    assert "Dry run: nothing changed" in text and "grace@" in text
    assert ids_in(qc.queue()) == before and not ids_in(qc.queue(), "hold")
    assert not qc.backups.exists() and not qc.state.exists()

    # No terminal and no --yes: refused, exit 2, one clear line, nothing changed.
    for action in ("delete", "hold", "requeue"):
        res = qc.cli(action, "--sender", f"grace@{d}", expect=2)
        assert "refusing to" in res.stderr and "--yes" in res.stderr
        assert "Traceback" not in res.output
    assert ids_in(qc.queue()) == before == set(ids)
    assert not ids_in(qc.queue(), "hold") and not qc.backups.exists()
    assert not qc.state.exists() or Store(qc.state).history() == []


def test_messages_gone_between_listing_and_acting_are_reported(qc: QueueCase) -> None:
    from relayguard.queue import postsuper, select
    from relayguard.queue.select import Selector

    d = qc.pf.domain
    ids = qc.send(f"heidi@{d}", ["h@gone.example"], user="heidi", source_ip="127.0.1.71", count=3)
    qc.settle()
    tools = PostfixTools(qc.config_dir)
    sel = select(tools, Selector(senders=(f"heidi@{d}",)))
    assert set(sel.ids) == set(ids)
    subprocess.run(["postsuper", "-c", qc.config_dir, "-d", ids[0]], check=True,
                   capture_output=True)
    res = postsuper(tools, "hold", sel.ids)
    assert res.gone == [ids[0]] and sorted(res.done) == sorted(ids[1:])


def test_queue_check_over_and_under_threshold(qc: QueueCase) -> None:
    d = qc.pf.domain
    qc.send(f"ivan@{d}", ["i@check.example"], user="ivan", source_ip="127.0.1.81", count=4)
    n = len(qc.settle())
    assert n == 4
    over = qc.json("check", "--threshold", "3", expect=1)
    assert over["over"] is True and over["messages"] == 4
    under = qc.json("check", "--threshold", "5", expect=0)
    assert under["over"] is False
    qc.cli("check", "--threshold", "4", expect=1)  # reaching the threshold is an alarm
    # A narrower count: only the hold queue (empty).
    qc.cli("check", "--threshold", "1", "--queue", "hold", expect=0)
    summ = qc.json("summary")
    assert summ["messages"] == 4 and summ["recipient_domains"][0]["key"] == "check.example"

    # The same through the installed command line (wiring into `relayguard`).
    r = subprocess.run([sys.executable, "-m", "relayguard", "queue", "check", "--config-dir",
                        qc.config_dir, "--threshold", "3", "--format", "json"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["messages"] == 4


def _refusing_audit(path: Path) -> None:
    """A real state database whose audit table refuses every new entry (a full disk, a broken
    file): the trigger is SQLite's own, nothing is faked in relayguard."""
    with Store(path) as store:
        store.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON audit "
                         "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")


def test_no_audit_entry_no_action(qc: QueueCase) -> None:
    """The one failure policy: when the audit entry cannot be written, nothing is held or
    deleted, and the user gets one line and exit 2."""
    d = qc.pf.domain
    ids = qc.send(f"spam@{d}", ["a@victim1.example"], user="admin", count=2)
    qc.settle()
    _refusing_audit(qc.state)
    for action in ("hold", "delete"):
        r = qc.cli(action, "--sender", f"spam@{d}", "--yes", expect=2)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"relayguard: error: {action} not done: the audit trail cannot be written: ")
        assert "disk is full" in lines[0] and "Traceback" not in r.output
        assert {m["queue_id"]: m["queue_name"] for m in qc.queue()} == dict.fromkeys(ids, "deferred")
    assert not qc.backups.exists() or not any(qc.backups.iterdir())


def test_dashboard_hold_writes_its_audit_entry_before_postsuper(qc: QueueCase) -> None:
    """Through the real dashboard over HTTP and the real postsuper: when the entry is written
    the mail is not on hold yet (status "started"); when it is completed, it is."""
    import hashlib
    import hmac
    import socket
    import threading
    import urllib.parse
    import urllib.request

    import uvicorn

    from relayguard import config
    from relayguard.dashboard.app import Dashboard, create_app

    d = qc.pf.domain
    ids = qc.send(f"admin@{d}", ["a@victim1.example"], user="admin", count=2)
    qc.settle()
    writes: list[tuple[str, str | None, dict[str, str]]] = []

    def queue_now() -> dict[str, str]:
        return {m["queue_id"]: m["queue_name"] for m in qc.queue() if m["queue_id"] in ids}

    class Witness(Store):
        """The real state database; at each audit write it notes what the real queue holds."""

        def record(self, action: str, **kw: Any) -> int:
            writes.append(("record", kw.get("status"), queue_now()))
            return super().record(action, **kw)

        def update_audit(self, entry_id: int, **kw: Any) -> None:
            writes.append(("update", kw.get("status"), queue_now()))
            super().update_audit(entry_id, **kw)

    class WitnessDashboard(Dashboard):
        def store(self) -> Store:
            return Witness(qc.state)

    token = "t" * 32
    dash = WitnessDashboard(config.defaults(), token, str(qc.state), qc.config_dir)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(dash), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "dashboard did not start"
            time.sleep(0.05)
        csrf = hmac.new(token.encode(), b"relayguard-csrf", hashlib.sha256).hexdigest()
        body = urllib.parse.urlencode({"csrf": csrf, "ids": ",".join(ids),
                                       "selector": "sasl_user=admin"}).encode()
        resp = urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/queue/hold", data=body,
            headers={"Authorization": f"Bearer {token}"}), timeout=30)
        page_url = urllib.parse.unquote(resp.geturl())
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert "Hold: 2 message(s)" in page_url
    assert writes == [("record", "started", dict.fromkeys(ids, "deferred")),
                      ("update", "ok", dict.fromkeys(ids, "hold"))]
    with Store(qc.state) as store:
        [entry] = store.history(None, "hold")
    assert entry["status"] == "ok" and sorted(entry["queue_ids"]) == sorted(ids)
    assert entry["detail"] == "dashboard: hold" and f"(audit entry {entry['id']})" in page_url
