"""Decisions and windows, without sockets: counters, limits, bans, locks, allowlists, report."""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path

import pytest

from relayguard import config as config_mod
from relayguard.policy import report as rep
from relayguard.policy.limits import (
    Policy,
    PolicyConfigError,
    PolicySettings,
    StateView,
    parse_seconds,
)
from relayguard.state.counters import (
    Check,
    MemoryCounters,
    SqliteCounters,
    bucket_count,
    bucket_width,
    counter_name,
    over_name,
    parse_counter_name,
    read_sqlite_usage,
)
from relayguard.state.shared import Ban, Lock

T0 = 1_800_000_000.0
_messages = itertools.count()  # a round time (divisible by 60): bucket edges are easy to see


def settings(*limits: dict, **policy: object) -> PolicySettings:
    return PolicySettings.from_config({"policy": {"limits": list(limits), **policy}})


def req(state: str = "RCPT", user: str = "alice@example.org", client: str = "192.0.2.7",
        sender: str = "alice@example.org", rcpts: int = 0, instance: str = "1.1.1") -> dict:
    return {b"request": b"smtpd_access_policy", b"protocol_state": state.encode(),
            b"sasl_username": user.encode(), b"client_address": client.encode(),
            b"sender": sender.encode(), b"recipient_count": str(rcpts).encode(),
            b"instance": instance.encode()}


class Harness:
    """A Policy with memory counters and a settable clock."""

    def __init__(self, s: PolicySettings, view: StateView | None = None) -> None:
        self.policy = Policy(s, view)
        self.counters = MemoryCounters()
        self.now = T0

    def ask(self, r: dict) -> str:
        plan = self.policy.plan(r, self.now)
        if plan.answer is None:
            out = self.policy.conclude(plan, self.counters.apply(plan.checks, self.now), self.now)
        else:
            out = plan.answer
        return out.decode().removeprefix("action=").strip()

    def message(self, user: str = "alice@example.org", rcpts: int = 1, **kw: object) -> list[str]:
        """One message as Postfix asks about it: RCPT per recipient, DATA, END-OF-MESSAGE."""
        inst = f"m{next(_messages)}"
        out = [self.ask(req("RCPT", user=user, instance=inst, **kw)) for _ in range(rcpts)]
        out.append(self.ask(req("DATA", user=user, rcpts=rcpts, instance=inst, **kw)))
        out.append(self.ask(req("END-OF-MESSAGE", user=user, rcpts=rcpts, instance=inst, **kw)))
        return out


# ------------------------------------------------------------------------ window arithmetic
def test_bucket_geometry() -> None:
    assert (bucket_width(60), bucket_count(60)) == (3, 20)
    assert (bucket_width(3600), bucket_count(3600)) == (180, 20)
    assert (bucket_width(86400), bucket_count(86400)) == (4320, 20)
    assert (bucket_width(10), bucket_count(10)) == (1, 10)
    assert (bucket_width(90), bucket_count(90)) == (4, 23)  # ⌈90/4⌉: the window is 92 s at most


def test_sliding_window_forgets_after_57_to_60_seconds() -> None:
    """For a 1-minute window an event is forgotten between 57 and 60 s after it happened."""
    mc = MemoryCounters()
    c = Check("k:v|messages|60", 60, 10, 1, 1, True)
    mc.apply([c], T0 + 0.5)  # in the sub-bucket [T0, T0+3)
    assert mc.usage("k:v|messages|60", T0 + 59.9) == 1
    assert mc.usage("k:v|messages|60", T0 + 60.0) == 0  # 59.5 s later: gone
    mc.apply([c], T0 + 2.9)  # same sub-bucket, late in it
    assert mc.usage("k:v|messages|60", T0 + 59.9) == 1
    assert mc.usage("k:v|messages|60", T0 + 60.0) == 0  # 57.1 s later: gone


def test_short_windows_have_one_second_buckets() -> None:
    mc = MemoryCounters()
    c = Check("k:v|messages|5", 5, 10, 1, 1, True)
    mc.apply([c], T0 + 0.2)
    assert mc.usage(c.counter, T0 + 4.9) == 1
    assert mc.usage(c.counter, T0 + 5.0) == 0


def test_limit_is_exact_and_refusals_are_not_counted() -> None:
    mc = MemoryCounters()
    c = Check("k:v|messages|60", 60, 3, 1, 1, True)
    assert [mc.apply([c], T0 + i).allowed for i in range(5)] == [True, True, True, False, False]
    assert mc.usage(c.counter, T0 + 5) == 3  # the two refused were not counted
    assert mc.usage(over_name(c.counter), T0 + 5) == 2  # but remembered as "over"


def test_all_or_nothing_across_limits() -> None:
    """A message refused by the per-minute limit does not use up the per-day allowance."""
    mc = MemoryCounters()
    minute = Check("u:a|messages|60", 60, 2, 1, 1, True)
    day = Check("u:a|messages|86400", 86400, 100, 1, 1, True)
    for i in range(5):
        mc.apply([minute, day], T0 + i)
    assert mc.usage(minute.counter, T0 + 5) == 2
    assert mc.usage(day.counter, T0 + 5) == 2


def test_non_blocking_checks_count_even_when_over() -> None:
    mc = MemoryCounters()
    shadow = Check("u:a|messages|60", 60, 1, 1, 1, False)
    for i in range(3):
        assert mc.apply([shadow], T0 + i).allowed
    assert mc.usage(shadow.counter, T0 + 3) == 3
    assert mc.usage(over_name(shadow.counter), T0 + 3) == 2


def test_sweep_forgets_idle_counters() -> None:
    mc = MemoryCounters()
    for i in range(50):
        mc.apply([Check(f"u:{i}|messages|60", 60, 5, 1, 1, True)], T0)
    mc.sweep(T0 + 30)
    assert len(mc.snapshot(T0 + 30)) == 50
    mc.sweep(T0 + 120)
    assert mc.snapshot(T0 + 120) == {} and not mc._windows


def test_counter_names_round_trip_hostile_values() -> None:
    name = counter_name("sender", "we|ird:x@example.org", "messages", 60)
    assert parse_counter_name(name) == ("sender", "we|ird:x@example.org", "messages", 60)
    assert parse_counter_name(over_name(name)) == ("sender", "we|ird:x@example.org",
                                                   "over-messages", 60)
    assert parse_counter_name("garbage") is None


# ------------------------------------------------------------------------ configuration
def test_config_file_with_limits_loads_through_relayguard_config(tmp_path: Path) -> None:
    f = tmp_path / "rg.toml"
    f.write_text('[policy]\nfail_closed = true\nallow_users = ["newsletter@example.org"]\n'
                 'allow_clients = ["10.0.0.0/8", "192.0.2.1"]\n\n'
                 '[[policy.limits]]\nkey = "sasl_username"\nmax_messages = 10\nwindow = "1m"\n'
                 'action = "DEFER_IF_PERMIT"\nmessage = "Rate limit exceeded, try later"\n\n'
                 '[[policy.limits]]\nkey = "sasl_username"\nmax_messages = 150\n'
                 'max_recipients = 500\nwindow = "1d"\naction = "hold"\n')
    s = PolicySettings.from_config(config_mod.load(f))
    assert s.fail_closed
    assert [(lim.key, lim.window, lim.action, lim.max_messages, lim.max_recipients)
            for lim in s.limits] == [("sasl_username", 60, "DEFER_IF_PERMIT", 10, None),
                                     ("sasl_username", 86400, "HOLD", 150, 500)]
    assert "newsletter@example.org" in s.allow_users


def test_defaults_are_valid_and_limit_free() -> None:
    s = PolicySettings.from_config(config_mod.defaults())
    assert s.limits == [] and s.listen == ["127.0.0.1:10031"] and not s.fail_closed
    assert s.max_request_size == 8192 and s.idle_timeout == 600 and s.state_timeout == 0.25


@pytest.mark.parametrize("limit, error", [
    ({"key": "recipient", "max_messages": 1, "window": "1m"}, r"limits\[1\]\.key: expected one of \"sasl_username\""),
    ({"key": "sender", "window": "1m"}, "max_messages and/or max_recipients"),
    ({"key": "sender", "max_messages": -1, "window": "1m"}, "max_messages: expected an integer >= 0, found -1"),
    ({"key": "sender", "max_messages": 1}, "window is required"),
    ({"key": "sender", "max_messages": 1, "window": "soon"}, "window: expected a duration"),
    ({"key": "sender", "max_messages": 1, "window": "1.5s"}, "whole seconds"),
    ({"key": "sender", "max_messages": 1, "window": "1m", "action": "OK"}, r"action: expected one of \"DEFER_IF_PERMIT\""),
    ({"key": "sender", "max_messages": 1, "window": "1m", "max_msgs": 3}, "unknown setting"),
])
def test_bad_limits_are_explained(limit: dict, error: str) -> None:
    with pytest.raises(PolicyConfigError, match=error):
        settings(limit)


def test_bad_policy_settings_are_explained() -> None:
    with pytest.raises(PolicyConfigError, match="policy.allow_clients"):
        settings(allow_clients=["not-an-ip"])
    with pytest.raises(PolicyConfigError, match=r"policy.listen_on: unknown setting \(did you mean \"listen\"\?\)"):
        PolicySettings.from_config({"policy": {"listen_on": "x"}})
    with pytest.raises(PolicyConfigError, match="fail_closed"):
        settings(fail_closed="yes")
    assert parse_seconds("250ms", "x") == 0.25 and parse_seconds("1d", "x") == 86400


# ------------------------------------------------------------------------ decisions
LIMIT3 = {"key": "sasl_username", "max_messages": 3, "window": "1m",
          "action": "DEFER_IF_PERMIT", "message": "Slow down"}


def test_messages_counted_at_end_of_message_and_refused_from_rcpt_on() -> None:
    h = Harness(settings(LIMIT3))
    for _ in range(3):
        assert h.message() == ["DUNNO", "DUNNO", "DUNNO"]
    # The 4th message is refused at its first RCPT, with the configured text.
    assert h.ask(req("RCPT")) == "DEFER_IF_PERMIT Slow down"
    assert h.ask(req("DATA", rcpts=1)) == "DEFER_IF_PERMIT Slow down"
    # Other users are not affected; the window frees alice a minute later.
    assert h.message(user="bob@example.org") == ["DUNNO"] * 3
    h.now += 60
    assert h.message() == ["DUNNO"] * 3


def test_rcpt_and_data_do_not_count_messages() -> None:
    h = Harness(settings(LIMIT3))
    for _ in range(10):  # recipients and DATA of messages never finished
        assert h.ask(req("RCPT")) == "DUNNO"
        assert h.ask(req("DATA", rcpts=1)) == "DUNNO"
    assert h.counters.snapshot(h.now) == {}


def test_concurrent_sessions_are_stopped_at_end_of_message() -> None:
    """Sessions that all passed RCPT are counted atomically at END-OF-MESSAGE."""
    h = Harness(settings(LIMIT3))
    for i in range(5):
        assert h.ask(req("RCPT", instance=f"s{i}")) == "DUNNO"
    ends = [h.ask(req("END-OF-MESSAGE", rcpts=1, instance=f"s{i}")) for i in range(5)]
    assert ends == ["DUNNO"] * 3 + ["DEFER_IF_PERMIT Slow down"] * 2


def test_recipients_counted_at_rcpt_once() -> None:
    h = Harness(settings({"key": "sasl_username", "max_recipients": 5, "window": "1h",
                          "action": "REJECT", "message": "Too many recipients"}))
    assert h.message(rcpts=3) == ["DUNNO"] * 5  # RCPT x3, DATA, END-OF-MESSAGE (not recounted)
    answers = h.message(rcpts=3)
    assert answers[:3] == ["DUNNO", "DUNNO", "REJECT Too many recipients"]


def test_recipients_counted_at_end_of_message_when_rcpt_is_not_seen() -> None:
    """check_policy_service only in smtpd_end_of_data_restrictions: recipient_count counts."""
    h = Harness(settings({"key": "sasl_username", "max_recipients": 5, "window": "1h"}))
    assert h.ask(req("END-OF-MESSAGE", rcpts=4, instance="a")) == "DUNNO"
    assert h.ask(req("END-OF-MESSAGE", rcpts=2, instance="b")).startswith("DEFER_IF_PERMIT")
    assert h.ask(req("END-OF-MESSAGE", rcpts=1, instance="c")) == "DUNNO"


def test_several_limits_per_key_and_strongest_action_wins() -> None:
    h = Harness(settings(
        {"key": "sasl_username", "max_messages": 2, "window": "1m", "action": "HOLD"},
        {"key": "sasl_username", "max_messages": 4, "window": "1h", "action": "REJECT",
         "message": "Blocked for the hour"}))
    assert [h.message()[-1] for _ in range(2)] == ["DUNNO", "DUNNO"]
    # Over the minute limit (HOLD, which accepts): held, and still counted.
    assert h.message()[-1] == "HOLD Rate limit exceeded, try again later"
    assert h.message()[-1].startswith("HOLD")
    # Over both: REJECT is stronger than HOLD.
    assert h.ask(req("RCPT")) == "REJECT Blocked for the hour"


def test_shadow_mode_logs_but_answers_dunno(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(settings({"key": "client_address", "max_messages": 1, "window": "1m",
                          "action": "DUNNO"}))
    with caplog.at_level("INFO", logger="relayguard.policy"):
        assert h.message() == ["DUNNO"] * 3
        assert h.message() == ["DUNNO"] * 3
    assert any("shadow (log only): client_address=192.0.2.7: 2 messages in 1m, limit 1"
               in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("key, a, b", [
    ("client_address", {"client": "192.0.2.1"}, {"client": "192.0.2.2"}),
    ("sender", {"sender": "x@example.org"}, {"sender": "y@example.org"}),
    ("sender_domain", {"sender": "x@Example.ORG"}, {"sender": "x@example.net"}),
])
def test_other_keys(key: str, a: dict, b: dict) -> None:
    h = Harness(settings({"key": key, "max_messages": 1, "window": "1m"}))
    assert h.message(**a)[-1] == "DUNNO"
    assert h.ask(req("RCPT", **a)).startswith("DEFER_IF_PERMIT")
    if key == "sender_domain":  # the domain is compared case-insensitively
        assert h.ask(req("RCPT", sender="other@example.org")).startswith("DEFER_IF_PERMIT")
    assert h.message(**b)[-1] == "DUNNO"


def test_empty_keys_are_not_limited() -> None:
    """Unauthenticated clients have no sasl_username; bounces have an empty sender."""
    h = Harness(settings({"key": "sasl_username", "max_messages": 1, "window": "1m"},
                         {"key": "sender", "max_messages": 1, "window": "1m"}))
    for _ in range(3):
        assert h.message(user="", sender="") == ["DUNNO"] * 3


def test_allowlists_skip_limits_but_not_bans_or_locks() -> None:
    now = T0
    view = StateView([Ban("10.1.2.3", "spam", now, None)],
                     [Lock("newsletter@example.org", "compromised", now, None)])
    h = Harness(settings({"key": "sasl_username", "max_messages": 1, "window": "1m"},
                         allow_users=["bulk@example.org", "newsletter@example.org"],
                         allow_clients=["10.0.0.0/8", "2001:db8::/32"]), view)
    for _ in range(3):
        assert h.message(user="bulk@example.org") == ["DUNNO"] * 3
        assert h.message(user="carol@example.org", client="10.9.9.9") == ["DUNNO"] * 3
        assert h.message(user="dave@example.org", client="2001:db8::5") == ["DUNNO"] * 3
    assert h.ask(req("RCPT", user="bulk@example.org", client="10.1.2.3")).startswith("REJECT")
    assert h.ask(req("RCPT", user="newsletter@example.org")).startswith("REJECT")


def test_bans_and_locks_reject_with_clear_text_and_expire() -> None:
    view = StateView([Ban("203.0.113.9", "bruteforce", T0, T0 + 600),
                      Ban("198.51.100.0/24", "spam network", T0, None)],
                     [Lock("admin@example.org", "password guessed", T0, T0 + 600)])
    h = Harness(settings(), view)
    ban = h.ask(req("CONNECT", client="203.0.113.9", user=""))
    assert ban.startswith("REJECT") and "client address is blocked" in ban
    assert h.ask(req("RCPT", client="198.51.100.77", user="")).startswith("REJECT")
    assert h.ask(req("RCPT", client="198.51.101.1", user="")) == "DUNNO"
    lock = h.ask(req("MAIL", user="admin@example.org"))
    assert lock.startswith("REJECT") and "account is locked" in lock
    assert h.ask(req("RCPT", user="admin")) == "DUNNO"  # exact login only, as Postfix sends it
    h.now = T0 + 601
    assert h.ask(req("RCPT", client="203.0.113.9", user="admin@example.org")) == "DUNNO"


def test_enforcement_can_be_turned_off_and_texts_changed() -> None:
    view = StateView([Ban("203.0.113.9", "x", T0, None)], [Lock("a@b", "x", T0, None)])
    h = Harness(settings(enforce_bans=False, lock_message="Call 555-0100\nnow"), view)
    assert h.ask(req("RCPT", client="203.0.113.9", user="")) == "DUNNO"
    assert h.ask(req("RCPT", user="a@b")) == "REJECT Call 555-0100 now"


def test_other_requests_and_states_get_dunno() -> None:
    h = Harness(settings(LIMIT3))
    assert h.ask({b"request": b"something_else"}) == "DUNNO"
    assert h.ask({b"protocol_state": b"RCPT"}) == "DUNNO"  # no request attribute
    for state in ("CONNECT", "EHLO", "HELO", "MAIL", "VRFY", "ETRN"):
        assert h.ask(req(state)) == "DUNNO"


def test_fail_answer_follows_fail_closed() -> None:
    assert Policy(settings()).fail_answer == b"action=DUNNO\n\n"
    closed = Policy(settings(fail_closed=True)).fail_answer
    assert closed.startswith(b"action=DEFER_IF_PERMIT ")


# ------------------------------------------------------------------------ persistence, report
def test_sqlite_counters_survive_restart(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    c = Check("sasl_username:alice|messages|60", 60, 3, 1, 1, True)
    import time

    store = SqliteCounters(db, 86400)
    now = time.time()
    for _ in range(3):
        store.apply([c], now)
    assert not store.apply([c], now).allowed
    store.close()  # final flush
    again = SqliteCounters(db, 86400)
    assert again.usage(c.counter) == 3
    assert not again.apply([c], time.time()).allowed
    again.close()
    with sqlite3.connect(db) as conn:
        usage = read_sqlite_usage(conn)
    assert usage[c.counter] == 3 and usage[over_name(c.counter)] == 2


def test_sqlite_flush_is_background_and_batched(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = SqliteCounters(db, 3600)
    import time

    now = time.time()
    for i in range(500):
        store.apply([Check(f"client_address:10.0.{i // 250}.{i % 250}|messages|3600", 3600,
                           100, 1, 1, True)], now)
    store.flush()  # returns at once; the thread writes
    store._thread.join(10)  # type: ignore[union-attr]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM counters").fetchone()[0] == 500
    store.close()


def test_report_lists_near_and_over(tmp_path: Path) -> None:
    s = settings({"key": "sasl_username", "max_messages": 10, "window": "1m"},
                 {"key": "client_address", "max_recipients": 100, "window": "1h",
                  "action": "HOLD"})
    usage = {"sasl_username:alice|messages|60": 10, "sasl_username:alice|over-messages|60": 4,
             "sasl_username:bob|messages|60": 8, "sasl_username:carol|messages|60": 2,
             "client_address:192.0.2.7|recipients|3600": 95,
             "sasl_username:zed|messages|3600": 50}  # no such limit: ignored
    entries = rep.build(s, usage)
    assert [(e.value, e.status, e.used, e.over) for e in entries] == [
        ("alice", "over", 10, 4), ("192.0.2.7", "near", 95, 0), ("bob", "near", 8, 0)]
    assert len(rep.build(s, usage, show_all=True)) == 4
    doc = rep.to_json(entries, "sqlite:/x")
    assert doc["schema"] == "relayguard.policy-report/1"
    assert doc["entries"][0] == {"key": "sasl_username", "value": "alice",
                                 "metric": "messages", "window": "1m", "window_seconds": 60,
                                 "used": 10, "limit": 10, "percent": 100, "over": 4,
                                 "action": "DEFER_IF_PERMIT", "status": "over"}
    json.dumps(doc)
    text = rep.render_text(entries, "sqlite:/x", s)
    assert "OVER" in text and "alice" in text and "192.0.2.7" in text
    assert "Nobody is near" in rep.render_text([], "sqlite:/x", s)
