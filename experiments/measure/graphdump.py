"""The heap graphs of a tracemalloc run: asked for at the ends of idle-empty and idle-held, moved into
the run folder, and analysed into ``owners.json`` (:mod:`experiments.owners`).

Rules: a graph is asked for only after the phase-end dump is written and the RSS ledger has read the
process's pages, and the subject's sampler writes it from a forked copy of the process (which walks
its copy-on-write image and exits), so no figure the run already reports includes the walk; the request is the graph's name written into
``graph-requests`` (:data:`server.tracing.GRAPH_REQUESTS`), which every traced process's sampler
reads; graphs move to ``graphs/NN-PHASE.graph`` (``graphs/pid-PID/`` for an injected program's
processes). A graph that does not appear in time, or an analysis that fails, is a note of the run,
never its failure: the figures it already has stand.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence

from server.heapgraph import GRAPH_REQUESTS

from ..dataset.results import IDLE_EMPTY, IDLE_HELD, write_atomic, write_json
from . import inject
from .probes.sampler import RssSampler
from .probes.tracemalloc import wait_for_files
from .probes.sites import site_label
from .procfs import ProcessGone, read_proc

#: The phases whose end gets a heap graph: the two the owners are the difference of.
GRAPH_PHASES = (IDLE_EMPTY, IDLE_HELD)
#: Seconds a graph may take to appear. The next phase must not start while the subject still walks
#: its heap (its figures would hold the walk), so a graph that takes longer fails the run, naming it
#: (a run without ``--heap-graph`` takes none).
GRAPH_TIMEOUT_S = 1800.0
GRAPHS_DIR = "graphs"
OWNERS_FILE = "owners.json"

def graph_name(index: int, phase: str) -> str:
    return f"{index:02d}-{phase}"


class Graphs:
    """The runner's side: a graph after each of :data:`GRAPH_PHASES`' dumps, then the analysis."""

    __slots__ = ("enabled", "names", "costs", "notes")

    def __init__(self, enabled: bool = False) -> None:
        #: The run's ``heap_graph`` (``--heap-graph``): off, nothing is asked of the subject or written.
        self.enabled = enabled
        self.names: dict[str, str] = {}
        #: Per phase: seconds from the request until every file was there, the files' bytes, and the
        #: root process's RSS growth at its highest while the walk ran (VmHWM after less VmRSS before,
        #: 0 when the RSS only fell: the peak is reset to the RSS before the request).
        self.costs: dict[str, dict[str, Any]] = {}
        self.notes: list[str] = []

    def phase_end(self, phase: str, index: int, probe: str, trace_dir: Path, pids: Sequence[int],
                  check: Callable[[], None], sampler: RssSampler | None) -> None:
        """Called once the phase-end dump ``index`` is written and the ledger's pages read. The RSS
        ``sampler`` is paused meanwhile: the forked copies that walk are no processes of the subject's
        tree, and the time is in no phase."""
        if not self.enabled or probe != "tracemalloc" or phase not in GRAPH_PHASES or not pids:
            return
        name = graph_name(index, phase)
        try:
            before = memory_status(pids[0])
            _reset_peak(pids[0])
            with sampler.paused() if sampler is not None else nullcontext():
                files, seconds = request(trace_dir, name, pids, check)
            after = memory_status(pids[0])
        except (OSError, ProcessGone) as error:  # the subject died: _check_server says so next
            self.notes.append(f"heap graph after {phase}: {error}")
            return
        self.names[phase] = name
        rss_before, peak = before["VmRSS"], after["VmHWM"]
        copies = [_read_cost(target.with_suffix(".cost.json")) for target in files]
        self.costs[phase] = {"seconds": round(seconds, 2), "file_bytes": file_bytes(files),
                             "rss_before_bytes": rss_before, "rss_after_bytes": after.get("VmRSS"),
                             "peak_growth_bytes": max(0, peak - rss_before),
                             # The forked copy that walked: its peak RSS (what the machine lent it).
                             "copy_max_rss_bytes": max((c.get("copy_max_rss_bytes") or 0 for c in copies), default=None)}

    def finish(self, trace_dir: Path, run_dir: Path, document: dict[str, Any], held: int) -> None:
        """Move the graphs into the run folder and write owners.json (per connection: per one of the
        ``held`` connections the subject held); what failed becomes a note."""
        if not self.names:
            return
        notes = document["probe_info"]["notes"]
        notes.extend(self.notes)
        try:
            graphs = collect(trace_dir, run_dir, self.names)
            document["files"]["heap_graphs"] = graphs
            summary = document.get("summary", {})
            analyse(run_dir, graphs, held,
                    summary.get("heap_bytes_per_held_connection"), self.costs)
            document["files"]["owners"] = OWNERS_FILE
        except Exception as error:  # the run's own figures stand; the owners are missing, and say why
            notes.append(f"heap graph owners not analysed: {error!r}")


def request(trace_dir: Path, name: str, pids: Sequence[int], check: Callable[[], None]) -> tuple[list[Path], float]:
    """Ask every traced process for graph ``name``; wait until each alive has written it. Returns the
    files and the seconds it took; raises ProbeFailed (the run fails) naming what did not appear."""
    started = time.monotonic()
    write_atomic(trace_dir / GRAPH_REQUESTS, name)
    if (trace_dir / "heap.csv").exists():
        targets = [trace_dir / "snapshots" / f"{name}.graph"]
    else:
        targets = [folder / "snapshots" / f"{name}.graph" for folder in inject.live_process_dirs(trace_dir, pids)]
    wait_for_files(targets, GRAPH_TIMEOUT_S, f"heap graph {name}", check, poll_s=0.05)
    return targets, time.monotonic() - started


def collect(trace_dir: Path, run_dir: Path, names: dict[str, str]) -> dict[str, dict[str, str]]:
    """Move each phase's graph into the run folder: ``{process key ('' for memdiet's server): {phase:
    path relative to the run folder}}``."""
    sources = [("", trace_dir)] + [(folder.name, folder) for folder in inject.process_dirs(trace_dir)]
    moved: dict[str, dict[str, str]] = {}
    for key, folder in sources:
        for phase, name in names.items():
            source = folder / "snapshots" / f"{name}.graph"
            if source.exists():
                target = run_dir / GRAPHS_DIR / key / f"{name}.graph" if key else run_dir / GRAPHS_DIR / f"{name}.graph"
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
                moved.setdefault(key, {})[phase] = str(target.relative_to(run_dir))
    return moved


def analyse(run_dir: Path, graphs: dict[str, dict[str, str]], connections: int,
            heap_per_held_bytes: float | None, costs: dict[str, Any]) -> dict[str, Any]:
    """``owners.json`` of the run: per process with both graphs, its owners (:func:`experiments.owners.
    owners.owners`); the heap per held connection is the run's when one process was traced."""
    from ..owners.graphfile import read_graph
    from ..owners.owners import owners

    both = {key: phases for key, phases in graphs.items() if IDLE_EMPTY in phases and IDLE_HELD in phases}
    processes = {}
    for key, phases in both.items():
        started = time.monotonic()
        empty, held = read_graph(run_dir / phases[IDLE_EMPTY]), read_graph(run_dir / phases[IDLE_HELD])
        result = owners(empty, held, connections, heap_per_held_bytes if len(both) == 1 else None, label=_label)
        result["files"] = phases
        result["analysis_seconds"] = round(time.monotonic() - started, 2)
        processes[key or "server"] = result
    document = {"connections": connections, "costs": costs, "processes": processes}
    write_json(run_dir / OWNERS_FILE, document)
    return document


def _label(site: str) -> str:
    filename, _, line = site.rpartition(":")
    return site_label(filename, int(line)) if line.isdigit() else site


def _read_cost(path: Path) -> dict[str, Any]:
    """A graph's ``NAME.cost.json`` (written by the sampler), or {} when it is missing or not an object."""
    import json

    try:
        cost = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cost if isinstance(cost, dict) and isinstance(cost.get("copy_max_rss_bytes", 0), int) else {}


def memory_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak since the last reset) of ``pid``, in bytes."""
    values = {}
    for line in read_proc(pid, "status").decode().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    if len(values) < 2:
        raise ProcessGone(f"process {pid} has exited")
    return values


def _reset_peak(pid: int) -> None:
    """Reset the process's VmHWM to its RSS now (writing 5 to clear_refs), so the peak read after the
    walk is the walk's; a kernel or user that refuses leaves the lifetime peak, noted as such."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def file_bytes(paths: Sequence[Path]) -> int:
    return sum(path.stat().st_size for path in paths if path.exists())


def reanalyse(run_dir: Path) -> dict[str, Any]:
    """Write a run's owners.json again from the graphs in its folder (after the analysis changed)."""
    import json

    document = json.loads((run_dir / "result.json").read_text())
    previous = json.loads((run_dir / OWNERS_FILE).read_text()) if (run_dir / OWNERS_FILE).exists() else {}
    held = int(previous.get("connections") or document["parameters"]["connections"])
    return analyse(run_dir, document["files"]["heap_graphs"], held,
                   document["summary"].get("heap_bytes_per_held_connection"), previous.get("costs", {}))


if __name__ == "__main__":  # python -m experiments.measure.graphdump RUN_DIR...
    import sys

    for folder in sys.argv[1:]:
        reanalyse(Path(folder))
        print(f"wrote {Path(folder) / OWNERS_FILE}")
