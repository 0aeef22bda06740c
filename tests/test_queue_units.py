"""Queue control without a real Postfix: selectors, the summary, the state store, backup
validation, command-line errors, and whole commands run against fake Postfix tools (scripts on
PATH that record how they were called) — the `postqueue -p` fallback, postsuper on stdin."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from relayguard.queue.backup import SCHEMA, load_backup, write_durable
from relayguard.queue.postqueue import QueuedMessage, Recipient
from relayguard.queue.select import Selector, parse_domain, parse_ip_or_cidr, user_matches
from relayguard.queue.summary import QueueSummary, bucket
from relayguard.queue.tools import QueueError
from relayguard.state import SCHEMA_VERSION, StateError, Store, resolve_path

NOW = 1_800_000_000.0


def msg(qid: str = "ABCDEF123", sender: str = "a@one.example", rcpts: tuple[str, ...] = ("r@two.example",),
        queue: str = "deferred", age: float = 600, size: int = 1000) -> QueuedMessage:
    return QueuedMessage(qid, queue, NOW - age, size, sender, [Recipient(r) for r in rcpts])


# ------------------------------------------------------------------------------ selectors

def test_sender_is_an_exact_match_not_a_pattern() -> None:
    hostile = '"x;touch /tmp/pwned"@evil.example'
    sel = Selector(senders=(hostile,))
    assert sel.matches_envelope(msg(sender=hostile), NOW)
    assert sel.matches_envelope(msg(sender='"X;TOUCH /tmp/pwned"@Evil.Example'), NOW)
    assert sel.matches_envelope(msg(sender="x;touch /tmp/pwned@evil.example"), NOW)  # unquoted
    for other in ("x@evil.example", '"x;touch /tmp/pwned"@evil.example.org', "pwned@evil.example",
                  '"y;x;touch /tmp/pwned"@evil.example'):
        assert not sel.matches_envelope(msg(sender=other), NOW), other


def test_null_sender_selector() -> None:
    for spelling in ("<>", "MAILER-DAEMON", ""):
        sel = Selector(senders=(spelling,))
        assert sel.matches_envelope(msg(sender=""), NOW)
        assert not sel.matches_envelope(msg(sender="a@b.example"), NOW)


def test_selectors_and_across_or_within() -> None:
    sel = Selector(senders=("a@one.example", "b@one.example"), recipient_domains=("two.example",),
                   older_than=300)
    assert sel.matches_envelope(msg(sender="b@one.example"), NOW)
    assert not sel.matches_envelope(msg(sender="c@one.example"), NOW)
    assert not sel.matches_envelope(msg(rcpts=("r@three.example",)), NOW)
    assert not sel.matches_envelope(msg(age=60), NOW)


def test_domains_ages_sizes_queues_ids() -> None:
    assert Selector(sender_domains=("one.example",)).matches_envelope(msg(), NOW)
    assert not Selector(sender_domains=("ne.example",)).matches_envelope(msg(), NOW)
    sub = Selector(recipient_domains=(".two.example",))
    assert sub.matches_envelope(msg(rcpts=("x@mx.two.example",)), NOW)
    assert sub.matches_envelope(msg(rcpts=("x@two.example",)), NOW)
    assert not sub.matches_envelope(msg(rcpts=("x@nottwo.example",)), NOW)
    assert Selector(recipients=("R@two.example",)).matches_envelope(msg(), NOW)
    assert Selector(newer_than=3600).matches_envelope(msg(age=600), NOW)
    assert not Selector(newer_than=60).matches_envelope(msg(age=600), NOW)
    assert Selector(min_size=1000).matches_envelope(msg(size=1000), NOW)
    assert not Selector(min_size=1001).matches_envelope(msg(size=1000), NOW)
    assert not Selector(queues=("hold",)).matches_envelope(msg(), NOW)
    assert Selector(queue_ids=("ABCDEF123",)).matches_envelope(msg(), NOW)
    assert Selector().is_empty() and not Selector(min_size=0).is_empty()


def test_origin_selectors() -> None:
    sel = Selector(sasl_users=("admin",), client_ips=(parse_ip_or_cidr("46.48.0.0/16"),))
    assert sel.needs_origin
    assert sel.matches_origin("admin", "46.48.93.60")
    assert sel.matches_origin("Admin@domain.net", "46.48.93.60")
    assert not sel.matches_origin("admin", "10.0.0.1")
    assert not sel.matches_origin(None, "46.48.93.60")
    assert not sel.matches_origin("administrator", "46.48.93.60")
    assert not Selector(client_ips=(parse_ip_or_cidr("::1"),)).matches_origin(None, "garbage")
    assert user_matches("admin@a.example", "admin@a.example")
    assert not user_matches("admin@a.example", "admin@b.example")


def test_selector_value_errors() -> None:
    assert parse_domain("@Example.COM.") == "example.com"
    for bad in ("", "a b", "x@y"):
        with pytest.raises(ValueError):
            parse_domain(bad)
    with pytest.raises(ValueError):
        parse_ip_or_cidr("300.1.1.1")


# --------------------------------------------------------------------------------- summary

def test_summary_buckets_like_qshape() -> None:
    assert [bucket(s * 60) for s in (0, 4.9, 5, 19, 1279, 1280, 99999)] == [0, 0, 1, 2, 8, 9, 9]
    s = QueueSummary(NOW, top=5)
    s.add(msg("A1B2C3D4", rcpts=("a@x.example", "b@x.example", "c@y.example"), age=30))
    s.add(msg("A1B2C3D5", sender="", queue="hold", age=7200))
    d = s.to_dict()
    assert d["messages"] == 2 and d["recipients"] == 4
    rd = {r["key"]: r for r in d["recipient_domains"]}
    assert rd["x.example"]["messages"] == 1 and rd["x.example"]["recipients"] == 2
    assert {r["key"] for r in d["queues"]} == {"deferred", "hold"}
    assert {r["key"] for r in d["senders"]} == {"a@one.example", "<>"}
    assert "sasl_users" not in d


# ----------------------------------------------------------------------------------- state

def test_store_schema_wal_and_audit(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION and store.journal_mode == "wal"
        n = store.record("hold", selector={"sasl_users": ["admin"]}, matched=3,
                         queue_ids=["A1B2C3D4", "A1B2C3D5"], gone=["A1B2C3D6"])
        store.record("delete", matched=1, queue_ids=["A1B2C3D7"], backup_dir=tmp_path / "b")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with Store(path) as store:  # reopening does not migrate again
        entries = store.history()
        assert [e["action"] for e in entries] == ["delete", "hold"]
        hold = entries[1]
        assert hold["id"] == n and hold["count"] == 2 and hold["matched"] == 3
        assert hold["queue_ids"] == ["A1B2C3D4", "A1B2C3D5"] and hold["gone"] == ["A1B2C3D6"]
        assert hold["uid"] == os.getuid() and hold["when"].endswith("+00:00")
        assert store.history(action="delete")[0]["backup_dir"] == str(tmp_path / "b")
        assert store.history(limit=1)[0]["action"] == "delete"


def test_store_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    db.close()
    with pytest.raises(StateError, match="newer"):
        Store(path)


def test_state_path_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAYGUARD_STATE", raising=False)
    assert str(resolve_path(None, {})) == "/var/lib/relayguard/state.db"
    assert str(resolve_path(None, {"state": {"path": "/x/s.db"}})) == "/x/s.db"
    monkeypatch.setenv("RELAYGUARD_STATE", "/env/s.db")
    assert str(resolve_path(None, {"state": {"path": "/x/s.db"}})) == "/env/s.db"
    assert str(resolve_path("/cli/s.db", {})) == "/cli/s.db"
    monkeypatch.delenv("RELAYGUARD_STATE")
    # A fleet shares bans and locks in Redis; the audit trail stays in the local database.
    assert str(resolve_path(None, {"state": {"path": "/x/s.db", "url": "redis://x"}})) == "/x/s.db"


def test_unwritable_state_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match="--state"):
        Store(blocker / "state.db")


# ---------------------------------------------------------------------------------- backup

def _entry(d: Path, qid: str, **meta: Any) -> None:
    body = b"Subject: x\n\nhello\n"
    m = {"schema": SCHEMA, "queue_id": qid, "sender": "a@b.example",
         "recipients": [{"address": "c@d.example"}], "arrival_time": 1} | meta
    write_durable(d / f"{qid}.eml", body)
    write_durable(d / f"{qid}.json", json.dumps(m).encode())


def test_load_backup_validates(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    _entry(good, "A1B2C3D4")
    [e] = load_backup(good)
    assert e.sender == "a@b.example" and e.recipients == ["c@d.example"] and not e.restored
    assert e.content() == b"Subject: x\n\nhello\n"
    with pytest.raises(QueueError, match="no such"):
        load_backup(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(QueueError, match="not a relayguard backup"):
        load_backup(empty)
    for name, meta in {"schema": {"schema": "other/1"}, "qid": {"queue_id": "../../x"},
                       "rcpt": {"recipients": "c@d.example"}}.items():
        d = tmp_path / name
        d.mkdir()
        _entry(d, "A1B2C3D4", **meta)
        with pytest.raises(QueueError):
            load_backup(d)


def test_damaged_backup_content_is_refused(tmp_path: Path) -> None:
    _entry(tmp_path, "A1B2C3D4", content_sha256="0" * 64)
    [e] = load_backup(tmp_path)
    with pytest.raises(QueueError, match="checksum"):
        e.content()


# ---------------------------------------------------------------- commands on fake Postfix

FAKE = r'''#!{python}
"""Fake {name}: answers from state.json next to it, records argv and stdin in calls.jsonl."""
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
state = json.load(open(os.path.join(here, "state.json")))
name = os.path.basename(sys.argv[0])
data = sys.stdin.read() if name in ("postsuper", "sendmail") else ""
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "stdin": data}}) + "\n")
queue = state["queue"]
if name == "postqueue":
    if "-j" in sys.argv:
        if state.get("old"):
            sys.stderr.write("postqueue: invalid option -- 'j'\n")
            sys.exit(64)
        for m in queue:
            print(json.dumps(m))
    else:
        print(state["mailq"])
elif name == "postsuper":
    ids = [ln for ln in data.split() if ln]
    for q in ids:
        if any(m["queue_id"] == q for m in queue) and q not in state.get("vanish", []):
            sys.stderr.write("postsuper: %s: placed on hold\n" % q)
    sys.stderr.write("postsuper: Placed on hold: N messages\n")
elif name == "postcat":
    if state.get("denied"):
        sys.stderr.write("postcat: fatal: open queue file %s: Permission denied\n" % sys.argv[-1])
    sys.exit(1)
'''


@pytest.fixture
def fake_postfix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("postqueue", "postsuper", "postcat", "postkick", "postconf", "sendmail"):
        p = bin_dir / name
        p.write_text(FAKE.format(python=sys.executable, name=name))
        p.chmod(0o755)
    queue = [
        {"queue_name": "deferred", "queue_id": "A1B2C3D4E5", "arrival_time": time.time() - 60,
         "message_size": 100, "sender": '"x;touch /tmp/pwned"@evil.example',
         "recipients": [{"address": "t@victim.example"}]},
        {"queue_name": "deferred", "queue_id": "B1B2C3D4E5", "arrival_time": time.time() - 60,
         "message_size": 100, "sender": "ok@good.example",
         "recipients": [{"address": "t@victim.example"}]},
    ]
    (bin_dir / "state.json").write_text(json.dumps({"queue": queue, "mailq": ""}))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def _state(bin_dir: Path, **changes: Any) -> None:
    st = json.loads((bin_dir / "state.json").read_text())
    st.update(changes)
    (bin_dir / "state.json").write_text(json.dumps(st))


def _calls(bin_dir: Path) -> list[dict[str, Any]]:
    p = bin_dir / "calls.jsonl"
    return [json.loads(ln) for ln in p.read_text().splitlines()] if p.exists() else []


def invoke(*args: str) -> Result:
    from relayguard.queue.cli import queue

    return CliRunner().invoke(queue, list(args), catch_exceptions=False)


def test_postsuper_gets_validated_ids_on_stdin(fake_postfix: Path, tmp_path: Path) -> None:
    r = invoke("hold", "--sender", '"x;touch /tmp/pwned"@evil.example', "--yes", "--format",
               "json", "--state", str(tmp_path / "s.db"))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["done"] == ["A1B2C3D4E5"]
    [call] = [c for c in _calls(fake_postfix) if c["argv"][:1] == ["-h"]]
    assert call["argv"] == ["-h", "-"] and call["stdin"] == "A1B2C3D4E5\n"


def test_gone_messages_are_reported_not_errors(fake_postfix: Path, tmp_path: Path) -> None:
    _state(fake_postfix, vanish=["B1B2C3D4E5"])
    r = invoke("hold", "--recipient-domain", "victim.example", "--yes", "--format", "json",
               "--state", str(tmp_path / "s.db"))
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["done"] == ["A1B2C3D4E5"] and out["gone"] == ["B1B2C3D4E5"]
    with Store(tmp_path / "s.db") as store:
        [e] = store.history()
    assert e["gone"] == ["B1B2C3D4E5"] and e["count"] == 1 and e["matched"] == 2


def test_mailq_fallback_for_old_postfix(fake_postfix: Path) -> None:
    _state(fake_postfix, old=True, mailq=(
        "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
        "C1B2C3D4E5!    321 Wed Nov 25 02:25:59  old@postfix.example\n"
        "                                         r@far.example\n\n"
        "-- 0 Kbytes in 1 Request.\n"))
    r = invoke("list", "--format", "json")
    assert r.exit_code == 0, r.output
    [m] = json.loads(r.stdout)
    assert m["queue_id"] == "C1B2C3D4E5" and m["queue_name"] == "hold" and m["message_size"] == 321
    assert [c["argv"] for c in _calls(fake_postfix)] == [["-j"], ["-p"]]


@pytest.mark.parametrize("args", [
    ("hold", "--older-than", "2 hours"),
    ("hold", "--client-ip", "999.1.1.1"),
    ("delete", "--sender-domain", "a b"),
    ("hold", "--queue-id", "../../etc"),
    ("hold", "--min-size", "lots"),
    ("delete",),  # no selector: must say --all
    ("release", "--queue", "deferred"),
    ("restore", "/nonexistent/backup"),
    ("list", "--config-dir", "/nonexistent"),
])
def test_bad_input_is_one_line_and_exit_2(fake_postfix: Path, args: tuple[str, ...]) -> None:
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith(("relayguard: error:", "Usage:", "Error:")), err
    assert not [c for c in _calls(fake_postfix) if c["argv"][:1] in (["-h"], ["-d"])]


def test_history_json_and_empty(tmp_path: Path) -> None:
    from relayguard.queue.cli import history

    runner = CliRunner()
    r = runner.invoke(history, ["--state", str(tmp_path / "none.db"), "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["entries"] == []
    assert not (tmp_path / "none.db").exists()  # reading history creates nothing
    with Store(tmp_path / "s.db") as store:
        store.record("delete", matched=1, queue_ids=["A1B2C3D4"], backup_dir="/b/x",
                     selector={"senders": ["[red]x[/red]"]})
    r = runner.invoke(history, ["--state", str(tmp_path / "s.db")], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "[red]x[/red]" in r.stdout  # data, not markup
    r = runner.invoke(history, ["--state", str(tmp_path / "s.db"), "--format", "json"])
    [e] = json.loads(r.stdout)["entries"]
    assert e["action"] == "delete" and e["queue_ids"] == ["A1B2C3D4"]


def test_interactive_confirmation(fake_postfix: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from relayguard.queue import cli as qcli

    monkeypatch.setattr(qcli, "_interactive", lambda: True)
    args = ["hold", "--sender-domain", "good.example", "--state", str(tmp_path / "s.db")]
    r = CliRunner().invoke(qcli.queue, args, input="n\n")
    assert r.exit_code == 0 and "Nothing changed" in r.stderr
    assert not [c for c in _calls(fake_postfix) if c["argv"][:1] == ["-h"]]
    r = CliRunner().invoke(qcli.queue, args, input="y\n")
    assert r.exit_code == 0 and "Held 1 message(s)" in r.stdout
    assert [c["stdin"] for c in _calls(fake_postfix) if c["argv"][:1] == ["-h"]] == ["B1B2C3D4E5\n"]


def test_unreadable_log_is_an_input_error(fake_postfix: Path, tmp_path: Path) -> None:
    r = invoke("hold", "--sasl-user", "admin", "--log", str(tmp_path / "missing.log"), "--yes",
               "--state", str(tmp_path / "s.db"))
    assert r.exit_code == 2 and "missing.log: no such file" in r.stderr


def test_log_and_queue_file_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The log decides where it knows the message, unless the queue file contradicts it."""
    import importlib

    from relayguard.queue.postqueue import Envelope

    # The module, not the function of the same name that relayguard.queue re-exports.
    qselect = importlib.import_module("relayguard.queue.select")

    envs = {
        "A0000001": Envelope("A0000001", "deferred", attributes={
            "sasl_username": "admin@x.example", "client_address": "46.48.93.60"}),
        "A0000002": Envelope("A0000002", "deferred", attributes={
            "sasl_username": "bob@x.example", "client_address": "10.0.0.2"}),
        "A0000003": Envelope("A0000003", "deferred", attributes={
            "sasl_username": "admin@x.example", "client_address": "46.48.93.61"}),
        "A0000004": Envelope("A0000004", "deferred"),  # local submission: nothing recorded
    }
    monkeypatch.setattr(qselect, "read_envelopes",
                        lambda tools, ids: ({i: envs[i] for i in ids if i in envs},
                                            {i for i in ids if i not in envs}))
    logs = {"A0000001": qselect.LogOrigin("admin@x.example", "46.48.93.60"),
            "A0000002": qselect.LogOrigin("admin@x.example", "46.48.93.60"),  # ID reused
            "A0000004": qselect.LogOrigin("admin@x.example", "46.48.93.62")}
    msgs = [msg(q) for q in ("A0000001", "A0000002", "A0000003", "A0000004", "A0000005")]
    sel = Selector(sasl_users=("admin",))
    warnings: list[str] = []
    gone: list[str] = []
    got = list(qselect.iter_selected(None, sel, logs, NOW, source=msgs, gone=gone,  # type: ignore[arg-type]
                                     warnings=warnings))
    assert {m.queue_id: m.origin_source for m in got} == {
        "A0000001": "log", "A0000003": "queue", "A0000004": "log"}
    assert gone == ["A0000005"]
    assert len(warnings) == 1 and warnings[0].startswith("A0000002: left out")
    # Without logs the queue file alone decides.
    got = list(qselect.iter_selected(None, sel, None, NOW, source=msgs[:4]))  # type: ignore[arg-type]
    assert [m.queue_id for m in got] == ["A0000001", "A0000003"]


def test_unreadable_queue_files_are_an_error_not_gone(fake_postfix: Path) -> None:
    """Not root: postcat cannot open queue files. That must not look like an empty selection."""
    _state(fake_postfix, denied=True)
    r = invoke("list", "--sasl-user", "admin")
    assert r.exit_code == 2 and "run as root" in r.stderr


def test_delete_never_deletes_what_was_not_backed_up(fake_postfix: Path, tmp_path: Path) -> None:
    """The fake postcat cannot read anything: every backup fails, so nothing may be deleted;
    the messages stay on hold, the run says so and exits 2, the audit trail says partial."""
    r = invoke("delete", "--recipient-domain", "victim.example", "--yes", "--state",
               str(tmp_path / "s.db"), "--backup-dir", str(tmp_path / "b"))
    assert r.exit_code == 2
    assert "could not be backed up and were left on hold" in r.stderr
    calls = [c["argv"] for c in _calls(fake_postfix) if c["argv"][:1] in (["-h"], ["-d"])]
    assert calls == [["-h", "-"]]  # frozen, never deleted
    with Store(tmp_path / "s.db") as store:
        [e] = store.history()
    assert e["status"] == "partial" and e["count"] == 0
