"""The Python API, used only as `import relayguard` (no submodule): analyze, investigate,
load_config, and the objects they return."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import relayguard
from pfguard import system_env

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "incident.log"
GUESSER = "86.170.245.89"  # 23 failures, then a login as admin


@pytest.fixture(autouse=True)
def system_postfix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without `trusted`, analyze asks "the system's" Postfix for mynetworks: the stand-in."""
    monkeypatch.setenv("MAIL_CONFIG", system_env()["MAIL_CONFIG"])


def brute(result: relayguard.Analysis) -> dict[str, int]:
    return {f.subject: f.evidence["failures"] for f in result.findings if f.kind == "auth_bruteforce"}


@pytest.fixture()
def default(system_postfix: None) -> relayguard.Analysis:
    return relayguard.analyze(str(EXAMPLE), year=2026)


def test_partial_config_changes_the_findings(default: relayguard.Analysis,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    strict = relayguard.analyze("examples/incident.log",
                                {"detect": {"auth_bruteforce": {"min_failures": 50}}}, year=2026)
    assert isinstance(strict, relayguard.Analysis)
    assert GUESSER in brute(default) and default.findings[0].severity == "critical"
    assert brute(strict) and min(brute(strict).values()) >= 50
    assert GUESSER not in brute(strict)
    # Everything else is the defaults: the other findings are untouched.
    others = [(f.kind, f.subject, f.score) for f in default.findings if f.kind != "auth_bruteforce"]
    assert others == [(f.kind, f.subject, f.score) for f in strict.findings
                      if f.kind != "auth_bruteforce"]


def test_findings_are_objects_with_evidence_and_commands(default: relayguard.Analysis) -> None:
    f = default.findings[0]
    assert isinstance(f, relayguard.Finding)
    assert (f.kind, f.subject, f.severity) == ("compromised_account", "admin", "critical")
    assert f.score == 100 and "password guessed" in f.summary
    assert f.evidence["guessed_from"] == GUESSER
    assert any(a["command"].startswith("relayguard lock") for a in f.actions)
    assert f.to_dict()["summary"] == f.summary
    assert [g.score for g in default.findings] == sorted((g.score for g in default.findings),
                                                         reverse=True)
    assert default.lines == 20000 and default.totals()["messages"] > 1000
    assert default.has_high()


def test_config_file_and_list_of_paths(tmp_path: Path) -> None:
    toml = tmp_path / "rg.toml"
    toml.write_text("[detect.auth_bruteforce]\nmin_failures = 50\n")
    from_file = relayguard.analyze([EXAMPLE], toml, year=2026)
    from_dict = relayguard.analyze(str(EXAMPLE), relayguard.load_config(
        {"detect": {"auth_bruteforce": {"min_failures": 50}}}), year=2026)
    assert [f.to_dict() for f in from_file.findings] == [f.to_dict() for f in from_dict.findings]
    assert relayguard.load_config(toml)["detect"]["auth_bruteforce"]["min_failures"] == 50
    assert relayguard.load_config({})["detect"]["auth_bruteforce"]["min_failures"] == 5


def test_since_until(default: relayguard.Analysis) -> None:
    start, end = default.aggregates.start, default.aggregates.end
    assert start is not None and end is not None
    middle = datetime.fromtimestamp((start + end) / 2, UTC)
    late = relayguard.analyze(str(EXAMPLE), year=2026, since=middle)
    early = relayguard.analyze(str(EXAMPLE), year=2026, until=middle.timestamp())
    assert late.aggregates.start >= middle.timestamp() > early.aggregates.end
    assert 0 < late.totals()["messages"] < default.totals()["messages"]
    assert 0 < early.totals()["messages"] < default.totals()["messages"]


@pytest.mark.parametrize("config, message", [
    ({"detect": {"auth_bruteforce": {"min_failure": 50}}},
     'detect.auth_bruteforce.min_failure: unknown setting \\(did you mean "min_failures"\\?\\)'),
    ({"nonsense": {}}, "nonsense: unknown section"),
    ({"detect": {"auth_bruteforce": {"min_failures": "many"}}}, "min_failures"),
    ("/nonexistent/relayguard.toml", "no such file"),
    (42, "a path, a dict or None"),
])
def test_config_errors(config: object, message: str) -> None:
    with pytest.raises(relayguard.ConfigError, match=message):
        relayguard.analyze(str(EXAMPLE), config, year=2026)  # type: ignore[arg-type]


def test_invalid_toml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[detect\n")
    with pytest.raises(relayguard.ConfigError, match="invalid TOML"):
        relayguard.load_config(bad)


def test_unreadable_log() -> None:
    with pytest.raises(relayguard.InputError, match="nonexistent"):
        relayguard.analyze("/nonexistent/mail.log", {})


def test_nothing_understood_is_an_error_not_an_all_clear(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("not a syslog line\n")
    with pytest.raises(relayguard.InputError, match="empty.log"):
        relayguard.analyze(empty, {})
    with pytest.raises(relayguard.InputError):
        relayguard.analyze(EXAMPLE, {}, year=2026, since=datetime(2030, 1, 1, tzinfo=UTC))


def test_investigate(tmp_path: Path) -> None:
    inv = relayguard.investigate("user", "admin", EXAMPLE, {}, year=2026,
                                 state=str(tmp_path / "none.db"), queue=False)
    assert isinstance(inv, relayguard.Investigation)
    assert [f.kind for f in inv.findings] == ["compromised_account"]
    assert GUESSER in inv.logins
    with pytest.raises(relayguard.ConfigError, match="'user' or 'ip'"):
        relayguard.investigate("host", "x", EXAMPLE, {})


def test_import_is_cheap_and_names_are_exported() -> None:
    code = ("import sys, relayguard; print(sorted(m for m in sys.modules if m.startswith('relayguard')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=system_env())
    assert out.stdout.strip() == "['relayguard']"
    for name in relayguard.__all__:
        assert getattr(relayguard, name) is not None
    from relayguard import api

    assert relayguard.analyze is api.analyze and relayguard.investigate is api.investigate
