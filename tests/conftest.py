"""Shared fixtures: the layout a test runs against, servers that are always stopped, and the one small
real matrix the end-to-end tests share; and the skip ledger, which prints every skip with its reason
and, under ``MEMDIET_STRICT_SKIPS=1`` (CI), fails the run on a skip outside :data:`ALLOWED_SKIPS`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from server.layouts import LAYOUTS

from .fixtures.server_client import REPO_ROOT, ServerProcess

#: pytester: tests/test_skips_ledger.py runs small pytest sessions against the skip ledger.
pytest_plugins = ["pytester"]

#: Every layout, in the order of the study (from the server's own registry, never repeated here).
LAYOUT_NAMES = tuple(LAYOUTS)


@pytest.fixture(scope="module", params=LAYOUT_NAMES)
def layout(request: pytest.FixtureRequest) -> str:
    """A layout name. Module-scoped, so module-scoped servers built on it start once per layout."""
    return request.param


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    """``start_server(layout, *options, max_conns=...)`` for servers a single test owns; any still
    running when the test ends is stopped (SIGTERM, exit 0 checked)."""
    started: list[ServerProcess] = []

    def start(layout_name: str, *options: str, **kwargs) -> ServerProcess:
        server = ServerProcess.start(layout_name, *options, **kwargs)
        started.append(server)
        return server

    yield start
    failures = []
    for server in started:  # stop them all even if one fails its exit check
        try:
            server.stop()
        except AssertionError as failure:
            failures.append(failure)
    if failures:
        raise failures[0]


# --- the shared small matrix ---------------------------------------------------------------------
#: Run options of the small real matrix (and of single runs beside it): the quick matrix made smaller
#: and shorter, so the matrix takes about 30 s on 2 cores.
TINY_RUN_OPTIONS = {"max_conns": 4096, "connections": 50, "idle_s": 0.4, "load_s": 0.6}
TINY_RUN_ARGS = ("--max-conns", "4096", "--connections", "50", "--idle", "0.4", "--load", "0.6")
#: Seconds one memdiet command of these tests may take before the test fails instead of hanging.
MEMDIET_TIMEOUT_S = 240


def memdiet(*args: str, timeout: float = MEMDIET_TIMEOUT_S, **kwargs) -> subprocess.CompletedProcess:
    """``python -m experiments ARGS`` from the repository root, output captured as text."""
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


@dataclass(frozen=True)
class QuickMatrix:
    """A reports folder as ``memdiet matrix --quick`` leaves it (``runs/``, ``latest/``) plus a
    ``baseline.json`` made by ``memdiet baseline`` from the same runs. Shared by the whole session:
    read it, never write into it (copy what a test edits)."""

    root: Path
    baseline_stdout: str

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def latest(self) -> Path:
        return self.root / "latest"

    @property
    def baseline(self) -> Path:
        return self.root / "baseline.json"

    def run_dirs(self) -> list[Path]:
        """The matrix's run folders, oldest first."""
        from experiments.dataset.results import find_runs

        return find_runs(self.runs)


@pytest.fixture(scope="session")
def quick_matrix(tmp_path_factory: pytest.TempPathFactory) -> QuickMatrix:
    """The real quick matrix (every layout, rss and tracemalloc probes) at :data:`TINY_RUN_OPTIONS`,
    made once per session for test_experiments, test_notebooks and test_regress (each used to make
    its own, about 30 s apiece)."""
    root = tmp_path_factory.mktemp("quick-matrix")
    made = memdiet("matrix", "--quick", *TINY_RUN_ARGS, "--runs-dir", str(root / "runs"),
                   "--latest-dir", str(root / "latest"))
    assert made.returncode == 0, made.stderr[-3000:]
    from experiments.dataset.results import find_runs

    baseline = memdiet("baseline", *map(str, find_runs(root / "runs")), "-o", str(root / "baseline.json"))
    assert baseline.returncode == 0, baseline.stderr[-3000:]
    return QuickMatrix(root, baseline.stdout)


# --- the skip ledger -----------------------------------------------------------------------------
STRICT_SKIPS_ENV = "MEMDIET_STRICT_SKIPS"
#: The only skips a strict run (CI: ``MEMDIET_STRICT_SKIPS=1``, set by .ci/run) accepts, as the start
#: of the skip's reason -> why skipping it there is fine. Anything else that skips in CI (a missing
#: tool, a missing extra, a limit of the machine) means CI did not test what ships, and fails the run.
ALLOWED_SKIPS = {
    # tests/server/reliability/ and tests/server/test_parser_fuzz.py: the same checks at full size take about
    # 4 minutes; `make soak` runs them, and their short versions run in every `make test`.
    "long version: set MEMDIET_SOAK=1": "soak: the long versions of tests whose short versions ran",
    # tests/server/test_parser_fuzz.py: atheris is the optional `fuzz` extra (no wheel for every CPython);
    # the hypothesis fuzzer of the same parser runs in every `make test`.
    "coverage-guided fuzzing: set MEMDIET_ATHERIS=RUNS": "atheris: optional coverage-guided fuzzing, opt-in",
}


def skip_allowance(reason: str) -> str | None:
    """Why a skip for ``reason`` is allowed in a strict run, or None when it is not."""
    return next((why for start, why in ALLOWED_SKIPS.items() if reason.startswith(start)), None)


@dataclass(frozen=True)
class Skip:
    nodeid: str
    reason: str


class SkipLedger:
    """A pytest plugin: records every skipped test with its reason, prints them at the end of the
    run (allowed or not), and when ``strict`` makes the run fail (exit 1) on any skip outside
    :data:`ALLOWED_SKIPS`."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.skips: list[Skip] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            self.skips.append(Skip(report.nodeid, reason.removeprefix("Skipped: ")))

    def disallowed(self) -> list[Skip]:
        return [skip for skip in self.skips if skip_allowance(skip.reason) is None]

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.strict and self.disallowed() and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.skips:
            return
        writer = terminalreporter
        writer.section(f"skipped tests: {len(self.skips)}", sep="=", bold=True)
        allowed = Counter(skip.reason for skip in self.skips if skip_allowance(skip.reason) is not None)
        for reason, count in sorted(allowed.items()):
            writer.line(f"allowed ({skip_allowance(reason)}): {count} x {reason}")
        disallowed = self.disallowed()
        for skip in disallowed:
            writer.line(f"NOT ALLOWED: {skip.nodeid}: {skip.reason}", red=self.strict, yellow=not self.strict)
        if disallowed and self.strict:
            writer.line(f"{STRICT_SKIPS_ENV}=1: {len(disallowed)} skip(s) outside the allow-list "
                        "(ALLOWED_SKIPS in tests/conftest.py): this run FAILS", red=True, bold=True)
        elif disallowed:
            writer.line(f"{len(disallowed)} skip(s) outside the allow-list: a CI run ({STRICT_SKIPS_ENV}=1) "
                        "would fail on them", yellow=True)


def pytest_configure(config: pytest.Config) -> None:
    strict = os.environ.get(STRICT_SKIPS_ENV, "") == "1"
    config.pluginmanager.register(SkipLedger(strict), "memdiet-skip-ledger")
