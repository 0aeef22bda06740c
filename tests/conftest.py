"""Shared fixtures.

Real-Postfix fixtures (tests using them are marked ``postfix`` automatically):

``fake_internet`` (session)
    :class:`harness.FakeInternet`, the relayhost of the instance.
``postfix_instance`` (session)
    :class:`harness.PostfixInstance`: one private Postfix for the whole session, listening on
    127.0.0.1:<free port>, trusting ``POSTFIX_MYNETWORKS``, relaying through the fake internet.
    Skips when Postfix/SASL is not installed or the suite does not run as root; fails with the
    cause, ``postfix check`` output and the maillog tail when Postfix does not start.
``postfix`` (function)
    :class:`harness.PostfixCase`: the instance with an empty queue, the fake internet reset to
    "accept", and a log window starting at the test's beginning.

Every test runs under the guard of ``pfguard.py``: a Postfix program called without ``-c DIR``
(or ``MAIL_CONFIG``) aimed at a private directory is refused and fails the test.

Set ``RELAYGUARD_KEEP_POSTFIX=1`` to keep the instance's directory (config, queue, maillog) for
inspection after the run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import (  # noqa: E402
    FakeInternet,
    PostfixCase,
    PostfixError,
    PostfixInstance,
    missing_requirements,
    reap_stale_instances,
)

# The guard against the system Postfix configuration: its hooks and autouse fixture.
from pfguard import (  # noqa: E402, F401
    postfix_config_guard,
    pytest_configure,
    pytest_unconfigure,
)

#: The trusted networks of the session instance: 127.0.0.1-127.0.0.15.  127.0.0.16 and up,
#: 127.0.1.x, 127.0.2.x ... are the untrusted "internet".
POSTFIX_MYNETWORKS = "127.0.0.0/28"

_POSTFIX_FIXTURES = {"postfix", "postfix_instance", "fake_internet", "postfix_requirements"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _POSTFIX_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postfix)


@pytest.fixture(scope="session")
def postfix_requirements() -> None:
    """Skip (with the reason and the install command) when a private Postfix cannot run."""
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def fake_internet(postfix_requirements: None) -> Iterator[FakeInternet]:
    net = FakeInternet()
    try:
        net.start()
    except Exception as exc:  # aiosmtpd reports a failed bind in several ways
        pytest.fail(f"fake internet could not listen on {net.host}:{net.port}: {exc}", False)
    yield net
    net.stop()


@pytest.fixture(scope="session")
def postfix_instance(fake_internet: FakeInternet) -> Iterator[PostfixInstance]:
    reap_stale_instances()  # leftovers of a run that was killed before its teardown
    pf = PostfixInstance(
        relayhost=fake_internet.address, mynetworks=POSTFIX_MYNETWORKS, reapable=True
    )
    try:
        pf.start()
    except PostfixError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield pf
    finally:
        pf.stop()


@pytest.fixture
def postfix(
    postfix_instance: PostfixInstance, fake_internet: FakeInternet, tmp_path: Path
) -> Iterator[PostfixCase]:
    fake_internet.reset()
    if postfix_instance.queue():
        postfix_instance.purge()
    postfix_instance.wait_queue_settled(allow=())  # also waits for the log to stop growing
    case = PostfixCase(
        postfix_instance, fake_internet, postfix_instance.log_window(quiet=False), tmp_path
    )
    yield case
    fake_internet.reset()
