"""What the memdiet CLI prints (issue 16, item 6 and the minor CLI items).

The summary table (and a tracemalloc run's RSS ledger under it) must be whole when stderr is a pipe or a CI log (rich assumed 80 columns and cut
cells to ``compl…``); every option of ``matrix`` and ``report`` has help text; a run that would need
more memory than the machine has available is refused before anything starts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from experiments import cli
from experiments.dataset.results import find_runs, load_run
from experiments.measure import budget as memory_budget
from experiments.measure.scenario import FULL
from experiments.render.units import human_bytes

from ..fixtures import REPO


# --- the summary table through a pipe --------------------------------------------------------------
def test_summary_table_is_whole_when_stderr_is_a_pipe(tmp_path):
    # COLUMNS=80, as a CI runner may set it: outside a terminal it must not cut the table either.
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("FORCE_COLOR", None)
    done = subprocess.run(
        [sys.executable, "-m", "experiments", "run", "--layout", "naive", "--probe", "tracemalloc",
         "--max-conns", "2048", "--connections", "8", "--idle", "0.1", "--load", "0.1", "--runs-dir", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    run = load_run(find_runs(tmp_path)[0])
    table = done.stderr
    assert "…" not in table, table
    row = next(line for line in table.splitlines() if " naive " in line)
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells[:3] == ["naive", "tracemalloc", "complete"], row
    assert f"{run.summary['bytes_per_slot']:,.1f}" in cells, row  # naive's is 6,10x.x: cut to "6,10…" before
    assert f"{run.summary['idle_rss_bytes'] / 2**20:.1f} MiB" in cells, row
    # A tracemalloc run's RSS ledger follows, a row per part, the remainder its own, RSS last: whole too.
    phases = run.document["rss_ledger"]["phases"]
    rows = {line.strip("│ ").split(" ", 1)[0]: line for line in table.splitlines() if line.startswith("│")}
    assert {"file", "python_heap", "tracer", "untraced", "remainder", "RSS"} <= set(rows), table
    assert human_bytes(phases["idle-held"]["rss_bytes"]) in rows["RSS"]
    remainder = next(part["bytes"] for part in phases["idle-empty"]["parts"] if part["part"] == "remainder")
    assert human_bytes(remainder) in rows["remainder"]


# --- help text -----------------------------------------------------------------------------------
def _subcommand(name: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return commands.choices[name]


@pytest.mark.parametrize("command", ["matrix", "report", "run"])
def test_every_option_has_help_text(command):
    undocumented = [action.dest for action in _subcommand(command)._actions
                    if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()]
    assert undocumented == [], f"memdiet {command}: no help for {undocumented}"


def test_matrix_help_names_where_the_report_goes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["matrix", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "reports/latest" in text and "reports/quick" in text


# --- runs too big for the machine ------------------------------------------------------------------
def test_naive_at_the_largest_max_conns_is_estimated_at_about_100_gb():
    """The issue's figure: naive's ~6,105 B slot times 16,777,216 slots is ~102 GB of table alone."""
    config = replace(FULL, subject="naive", probe="rss", max_conns=1 << 24, connections=1000)
    assert 100e9 < memory_budget.estimated_peak_bytes(config) < 130e9
    small = replace(config, subject="packed", max_conns=4096, connections=100)
    assert memory_budget.estimated_peak_bytes(small) < 64 * 2**20


def _refused(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error, error
    return error


def test_run_that_needs_more_memory_than_available_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(memory_budget, "available_memory_bytes", lambda: 2 * 2**30)
    runs_dir = tmp_path / "runs"
    # naive's table alone at 1,000,000 slots is ~5.7 GiB.
    error = _refused(["run", "--layout", "naive", "--max-conns", "1000000", "--connections", "10",
                      "--runs-dir", str(runs_dir)], capsys)
    assert "naive/rss" in error and "1,000,000" in error and "2.0 GiB" in error and "--max-conns" in error
    assert not runs_dir.exists(), "nothing started"


def test_matrix_is_refused_on_its_largest_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(memory_budget, "available_memory_bytes", lambda: 2 * 2**30)
    error = _refused(["matrix", "--quick", "--max-conns", "300000", "--runs-dir", str(tmp_path / "runs"),
                      "--latest-dir", str(tmp_path / "latest")], capsys)
    # 300,000 naive slots: ~1.7 GiB of table, which tracemalloc's run raises above 2 GiB; rss's would fit.
    assert "naive/tracemalloc" in error
    assert not (tmp_path / "runs").exists() and not (tmp_path / "latest").exists()


def test_runs_that_fit_are_not_refused():
    available = 2 * 2**30
    fits = [replace(FULL, subject=layout, probe=probe, max_conns=65536)
            for layout in ("naive", "nofd", "packed") for probe in ("rss", "tracemalloc", "memray")]
    assert memory_budget.memory_problem(fits, available) is None
    assert "naive/tracemalloc" in memory_budget.memory_problem(fits, 256 * 2**20)


def test_available_memory_is_read_from_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683656 kB\nMemFree:        23144852 kB\nMemAvailable:   23707012 kB\n")
    assert memory_budget.available_memory_bytes(meminfo) == 23707012 * 1024
    meminfo.write_text("MemTotal:       24683656 kB\n")
    assert memory_budget.available_memory_bytes(meminfo) is None
