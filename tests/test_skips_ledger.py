"""The skip ledger of tests/conftest.py, on small pytest sessions (pytester): every skip is printed
with its reason; under MEMDIET_STRICT_SKIPS=1 a skip outside the allow-list fails the run and an
allowed one does not; without it no skip is fatal."""

from __future__ import annotations

import pytest

from .conftest import ALLOWED_SKIPS, STRICT_SKIPS_ENV

#: The inner sessions use the project's own hooks, not a copy of them.
LEDGER_CONFTEST = "from tests.conftest import pytest_configure  # noqa: F401 (the skip ledger)\n"
SOAK_REASON = "long version: set MEMDIET_SOAK=1 (make soak)"
TOOL_REASON = "valgrind is not installed (apt-get install valgrind)"


def session_with_skips(pytester: pytest.Pytester, *reasons: str) -> None:
    """A test file with one passing test and one test skipped for each of ``reasons``."""
    pytester.makeconftest(LEDGER_CONFTEST)
    tests = ["def test_passes():\n    pass\n"]
    for index, reason in enumerate(reasons):
        tests.append(f"@pytest.mark.skipif(True, reason={reason!r})\ndef test_skipped_{index}():\n    pass\n")
        tests.append(f"def test_skips_inside_{index}():\n    pytest.skip({reason!r})\n")
    pytester.makepyfile("import pytest\n\n" + "\n\n".join(tests))


def test_soak_reason_is_the_one_the_suite_uses() -> None:
    from .fixtures.reliability import SOAK_MARKS

    [skipif] = [mark for mark in SOAK_MARKS if mark.name == "skipif"]
    assert skipif.kwargs["reason"] == SOAK_REASON
    assert any(SOAK_REASON.startswith(start) for start in ALLOWED_SKIPS)


def test_strict_run_fails_on_a_skip_outside_the_allow_list(pytester: pytest.Pytester,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STRICT_SKIPS_ENV, "1")
    session_with_skips(pytester, TOOL_REASON, SOAK_REASON)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, skipped=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*skipped tests: 4*",
        f"allowed (*): 2 x {SOAK_REASON}",
        f"NOT ALLOWED: test_strict_run_fails_on_a_skip_outside_the_allow_list.py::test_skipped_0: {TOOL_REASON}",
        f"NOT ALLOWED: *::test_skips_inside_0: {TOOL_REASON}",
        "MEMDIET_STRICT_SKIPS=1: 2 skip(s) outside the allow-list*this run FAILS",
    ])


def test_strict_run_passes_with_allowed_skips_only(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STRICT_SKIPS_ENV, "1")
    session_with_skips(pytester, SOAK_REASON, "coverage-guided fuzzing: set MEMDIET_ATHERIS=RUNS (needs atheris)")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, skipped=4)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*skipped tests: 4*", "allowed (atheris: *): 2 x coverage-guided fuzzing*",
                                 f"allowed (soak: *): 2 x {SOAK_REASON}"])
    result.stdout.no_fnmatch_line("*NOT ALLOWED*")


def test_local_run_prints_a_disallowed_skip_without_failing(pytester: pytest.Pytester,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STRICT_SKIPS_ENV, raising=False)
    session_with_skips(pytester, TOOL_REASON)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, skipped=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        f"NOT ALLOWED: *::test_skipped_0: {TOOL_REASON}",
        "2 skip(s) outside the allow-list: a CI run (MEMDIET_STRICT_SKIPS=1) would fail on them",
    ])


def test_strict_run_keeps_a_failure_a_failure(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STRICT_SKIPS_ENV, "1")
    pytester.makeconftest(LEDGER_CONFTEST)
    pytester.makepyfile("def test_fails():\n    assert False\n")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.no_fnmatch_line("*skipped tests*")
