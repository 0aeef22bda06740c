"""Queue polling against the real private Postfix (tests/harness): the fake internet defers
everything so mail stays queued; a low threshold; one surge gives one alert (however many
polls see it over), and emptying the queue gives one "back to normal" notice. The daemon also
follows the instance's real maillog meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import DEFER, PostfixCase
from watchkit import Daemon, Hook, wait_for

pytestmark = pytest.mark.postfix


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def deferring(postfix: PostfixCase) -> Iterator[PostfixCase]:
    postfix.internet.set_mode(DEFER)
    try:
        yield postfix
    finally:
        postfix.internet.reset()
        if postfix.instance.queue():
            postfix.instance.purge()


def test_queue_surge_alerts_once_then_recovers(deferring: PostfixCase, hook: Hook,
                                              tmp_path: Path) -> None:
    pf = deferring
    extra = {"watch": {"queue_poll": "0.2s", "queue_threshold": 5, "queue_recover": 0.8,
                       "postfix_config_dir": str(pf.instance.config_dir)},
             "alert": {"webhook": {"url": hook.url}}}
    with Daemon(tmp_path / "state.db", [pf.instance.maillog], extra) as d:
        polls = d.watcher.metrics.queue_polls.labels("ok")

        def kinds() -> list[str]:
            # The instance's maillog holds the traffic of earlier tests too: the detectors may
            # alert about it. Only the queue alerts matter here.
            return [b["relayguard"]["kind"] for b in hook.bodies
                    if b["relayguard"]["kind"].startswith("queue")]

        def more_polls(n: int) -> None:
            start = polls._value.get()
            wait_for(lambda: polls._value.get() >= start + n, timeout=15, what=f"{n} polls")

        more_polls(1)
        assert kinds() == []  # an empty queue: nothing to say
        sent = pf.send(sender=f"monitor@{pf.domain}", source_ip="127.0.0.5", count=4,
                       recipients=["a@remote1.example", "b@remote2.example"])
        assert all(r.ok for r in sent)
        pf.settle()
        more_polls(2)
        assert kinds() == []  # 4 < 5
        pf.send(sender=f"monitor@{pf.domain}", source_ip="127.0.0.5", count=3,
                recipients=["c@remote3.example"])
        wait_for(lambda: "queue_surge" in kinds(), timeout=15, what="the surge alert")
        more_polls(3)  # still over at every poll: no second alert
        pf.send(sender=f"monitor@{pf.domain}", source_ip="127.0.0.5", count=1,
                recipients=["d@remote4.example"])
        pf.settle()
        more_polls(3)
        assert kinds() == ["queue_surge"]
        surge = next(b["relayguard"] for b in hook.bodies
                     if b["relayguard"]["kind"] == "queue_surge")
        assert surge["severity"] in ("medium", "high") and surge["subject"] == "queue"
        assert surge["details"]["evidence"]["threshold"] == 5
        assert sum(surge["details"]["evidence"]["queues"].values()) >= 5
        deferred = d.watcher.metrics.queue.labels("deferred")._value.get()
        active = d.watcher.metrics.queue.labels("active")._value.get()
        assert deferred + active >= 8
        # 8 messages are still over 0.8 × 5 = 4: only a real drain brings the notice.
        pf.instance.purge()
        wait_for(lambda: "queue_recovered" in kinds(), timeout=15, what="the recovery notice")
        more_polls(3)
        assert kinds() == ["queue_surge", "queue_recovered"]
        assert d.watcher.metrics.queue.labels("deferred")._value.get() == 0
        # The messages were read from the real maillog as they arrived.
        received = d.watcher.metrics.messages.labels("received")._value.get()
        assert received >= 8
