"""What CI runs (.ci/run, through the Makefile) exercises what ships: system tools from apt, the bench
extra with every peer's packages, no skip outside the allow-list, then the regression check. Read
from the files and from ``make -n`` (the commands make would run, none of them run)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from experiments.bench.subjects import PEERS

from .conftest import STRICT_SKIPS_ENV
from .fixtures import REPO

CI_RUN = REPO / ".ci" / "run"
#: What the brief of CI installs through apt: the tools the tests use and those of coming work.
APT_PACKAGES = {"valgrind", "wrk", "nginx-light", "chromium", "chromium-driver", "gcc", "iproute2",
                # Lwan's revisions, built by make lwan-quick
                "git", "cmake", "pkgconf", "zlib1g-dev", "libsqlite3-dev",
                # make subjects: real servers from Debian
                "lighttpd", "nodejs"}


def ci_commands() -> list[str]:
    """The command lines of .ci/run, without comments and blank lines."""
    lines = [line.strip() for line in CI_RUN.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def make_dry_run(*arguments: str) -> str:
    """What ``make -n -B ARGUMENTS`` would run (every target out of date, nothing executed)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(["make", "-n", "-B", *arguments], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_ci_installs_tools_then_tests_strictly_with_the_bench_extra_then_regresses() -> None:
    commands = ci_commands()
    assert commands[:2] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."']
    order = [line for line in commands if line.startswith(("make ", "export "))]
    assert order == ["make system-deps", "export EXTRAS=dev,bench,subjects", f"export {STRICT_SKIPS_ENV}=1",
                     "make test", "make lwan-quick", "make subjects", "make regress"]
    assert "python3 --version" in commands  # the log says which interpreter the figures were checked on


def test_system_deps_installs_the_tools_through_apt() -> None:
    commands = make_dry_run("system-deps")
    install = next(line for line in commands.splitlines() if "apt-get install" in line)
    assert "-y" in install.split()
    assert APT_PACKAGES <= set(install.split())


def test_make_test_with_the_bench_extra_installs_it_and_runs_both_suites(tmp_path: Path) -> None:
    commands = make_dry_run("test", "EXTRAS=dev,bench", f"VENV={tmp_path / 'venv'}")
    assert "pip install --quiet -e '.[dev,bench]'" in commands
    # The suite on two workers; what measures run-to-run spread alone, then the ceilings.
    assert re.search(r'-m pytest -n 2 -m "not memray_ceiling and not alone and not subjects"', commands)
    assert re.search(r'-m pytest -m "alone and not memray_ceiling and not subjects"', commands)
    assert re.search(r"-m pytest --memray -m memray_ceiling", commands)


def test_make_subjects_installs_the_subjects_extra_and_runs_that_suite_alone(tmp_path: Path) -> None:
    commands = make_dry_run("subjects", "EXTRAS=dev,bench", f"VENV={tmp_path / 'venv'}")
    assert "EXTRAS=dev,bench,subjects" in commands
    assert re.search(r'-m pytest -m "subjects and not soak" ', commands)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"hypercorn", "granian", "daphne", "sanic", "cheroot", "waitress", "gunicorn", "flask", "twisted", "gevent",
            "tornado"} <= set(extras["subjects"])


def test_bench_extra_holds_every_peer_package() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    bench = {re.split(r"[<>=;\[ ]", requirement, maxsplit=1)[0].lower() for requirement in extras["bench"]}
    for peer in PEERS.values():
        assert set(peer.packages) <= bench, (peer.name, peer.packages, bench)


def test_make_baseline_learns_from_three_matrices_and_make_regress_checks_the_quick_one(tmp_path: Path) -> None:
    """``make baseline`` learns the noisy figures' tolerances from three quick matrices; ``make regress``
    (what .ci/run and the workflow run) checks one quick matrix, printing the table (or, with
    REGRESS_FORMAT=github, annotations: tests/test_workflow.py)."""
    venv = tmp_path / "venv"
    commands = make_dry_run("baseline", "regress", f"VENV={venv}").splitlines()
    assert f"{venv}/bin/memdiet baseline --quick --repeat 3" in commands
    assert f"{venv}/bin/memdiet regress --quick --format markdown" in commands
