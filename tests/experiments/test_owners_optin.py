"""Heap graphs are opt-in (``--heap-graph``, RunConfig.heap_graph): off, the subject's sampler loads
nothing of them and looks at no request file, the injected bootstrap is told so, and the matrix turns
them on only for the tracemalloc runs of the owners' subjects (docs/owners.md)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.measure import inject
from experiments.measure.matrix import OWNERS_SUBJECTS, MatrixPlan
from experiments.measure.probes.tracemalloc import TracemallocProbe
from experiments.measure.scenario import FULL, RunConfig
from experiments.paths import REPO_ROOT

SAMPLER = """
import sys
from server.tracing import TracemallocSampler
if sys.argv[2] == "1":
    from server.heapgraph import graph_sampler
    sampler = graph_sampler(TracemallocSampler)(sys.argv[1])
else:
    sampler = TracemallocSampler(sys.argv[1])
print(int("server.heapgraph" in sys.modules), int("resource" in sys.modules), int(hasattr(sampler, "graph_request_file")))
"""


def loaded(tmp_path: Path, heap_graph: bool) -> list[str]:
    done = subprocess.run([sys.executable, "-c", SAMPLER, str(tmp_path), "1" if heap_graph else "0"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_tracemalloc_sampler_knows_nothing_of_graphs_unless_asked(tmp_path: Path) -> None:
    """server/tracing.py neither imports the writer nor sets anything for it: without --heap-graph the
    server runs the sampler it ran before graphs existed; with it, a subclass made by server/heapgraph.py."""
    assert loaded(tmp_path, False) == ["0", "0", "0"]
    assert loaded(tmp_path, True) == ["1", "1", "1"]
    assert "heapgraph" not in (REPO_ROOT / "server" / "tracing.py").read_text()


def test_the_probe_passes_the_switch_to_the_server_and_to_injected_programs(tmp_path: Path) -> None:
    probe = TracemallocProbe()
    off, on = RunConfig(subject="nofd", probe="tracemalloc"), RunConfig(subject="nofd", probe="tracemalloc", heap_graph=True)
    assert "--trace-heap-graph" not in probe.wrap(["python"], {}, tmp_path, off, in_server=True)[0]
    assert "--trace-heap-graph" in probe.wrap(["python"], {}, tmp_path, on, in_server=True)[0]
    assert inject.environment("tracemalloc", tmp_path, off)["MEMDIET_HEAP_GRAPH"] == "0"
    assert inject.environment("tracemalloc", tmp_path, on)["MEMDIET_HEAP_GRAPH"] == "1"


def test_the_matrix_takes_graphs_for_the_owners_subjects_tracemalloc_runs_only() -> None:
    plan = MatrixPlan(base=FULL, layouts=["naive", "nofd", "asyncio"], probes=["rss", "tracemalloc", "memray"],
                      heap_graph_subjects=OWNERS_SUBJECTS)
    graphs = {(c.subject, c.probe) for c in plan.configs() if c.heap_graph}
    assert graphs == {("nofd", "tracemalloc"), ("asyncio", "tracemalloc")}
    every = MatrixPlan(base=replace(FULL, heap_graph=True), layouts=["naive"], probes=["rss", "tracemalloc"])
    assert [(c.probe, c.heap_graph) for c in every.configs()] == [("rss", False), ("tracemalloc", True)]
    assert FULL.heap_graph is False


def test_heap_graph_with_another_probe_is_refused(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--layout", "nofd", "--probe", "rss", "--heap-graph"])
    assert exited.value.code == 2
    assert "--heap-graph goes with --probe tracemalloc" in capsys.readouterr().err
