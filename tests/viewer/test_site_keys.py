"""One site key whatever the source (issue 16, item 3): a memdiet run folder (sites.csv with short
paths and the probe's ``(other)``/``(probe)`` rows), its raw phase-end dump (absolute paths, every
site) and a memray capture (its own function names) name a line the same way, so ``diff`` of a
source against itself in another form lists no site twice and changes nothing."""

from __future__ import annotations

import json
import re
import tracemalloc
from pathlib import Path

import pytest

from tests.fixtures.viewer_support import REPO, run_child, viewer
from tests.viewer.test_run_folders import copy_run, tracemalloc_run  # noqa: F401 (fixture)
from tracemalloc_viewer.model import Frame, Site
from tracemalloc_viewer.stats import common_basis, compare

#: A row of ``diff --bytes``: rank, size diff, size, blocks diff, blocks, site.
_ROW = re.compile(r"^\s*\d+\s+([+-]?\d+) B\s+(\d+) B\s+([+-]?[\d,]+)\s+([\d,]+)\s+(.*)$")
_TOTAL = re.compile(r"^total (\d+) B -> (\d+) B \(([+-]?\d+) B\)")


def diff_rows(*args: str | Path) -> tuple[tuple[int, int, int], list[tuple[int, str]]]:
    """(old total, new total, change) and (size diff, site label) per row of ``diff --bytes --limit 0``."""
    result = viewer("diff", *args, "--bytes", "--limit", "0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    [totals] = [tuple(map(int, match.groups())) for line in lines if (match := _TOTAL.match(line))]
    rows = [(int(match[1]), match[5]) for line in lines if (match := _ROW.match(line))]
    assert rows, result.stdout
    return totals, rows


def site_of(label: str) -> tuple[str, int]:
    """(file, line) of a row's ``file:line (function)`` label (line 0 for a pseudo-site or a file)."""
    location = label.split(" (")[0] if not label.startswith("(") else label
    file, _, line = location.rpartition(":")
    return (file, int(line)) if line.isdigit() else (location, 0)


def assert_each_site_once(rows: list[tuple[int, str]]) -> None:
    """No two rows are one line, however its file is spelled (absolute, or relative to some root)."""
    sites = [site_of(label) for _change, label in rows]
    for index, (file, line) in enumerate(sites):
        for other_file, other_line in sites[index + 1:]:
            same = file == other_file or file.endswith("/" + other_file) or other_file.endswith("/" + file)
            assert not (same and line == other_line), (file, other_file, line)


# --- a run folder and its own dump, two forms of one moment --------------------------------------------
def _probe_rows(snapshot: tracemalloc.Snapshot, when: str, top_sites: int = 12) -> list[tuple[str, str, int, int]]:
    """sites.csv rows for ``snapshot`` as the tracemalloc probe writes them (server/tracing.py's
    _detailed_snapshot, labelled by experiments.measure.probes.site_label): the top lines, ``(other)``, and the
    probe's own allocations as ``(probe)``."""
    from experiments.measure.probes import site_label

    filters = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, str(REPO / "server" / "tracing.py"))]
    stats = snapshot.filter_traces(filters).statistics("lineno")
    rows = [(when, site_label(stat.traceback[0].filename, stat.traceback[0].lineno), stat.size, stat.count)
            for stat in stats[:top_sites]]
    rest = stats[top_sites:]
    rows.append((when, "(other)", sum(s.size for s in rest), sum(s.count for s in rest)))
    probe_bytes = sum(trace.size for trace in snapshot.traces) - sum(s.size for s in stats)
    assert probe_bytes > 0, "the dump should hold the probe's own allocations"
    rows.append((when, "(probe)", probe_bytes, 0))
    return rows


def _write_csv(path: Path, header: str, rows) -> None:
    path.write_text(header + "\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))


def _last_dump(run: Path) -> Path:
    return run / json.loads((run / "result.json").read_text())["files"]["snapshots"][-1]


def test_a_peak_from_sites_csv_against_its_dump_changes_nothing(tracemalloc_run, tmp_path):
    """The issue's case: the run folder's peak is a sites.csv snapshot (short paths, top sites,
    (other), (probe)); the raw dump of that moment has absolute paths and every site."""
    run = copy_run(tracemalloc_run, tmp_path / "run")
    dump = _last_dump(run)
    snapshot = tracemalloc.Snapshot.load(str(dump))
    total = sum(trace.size for trace in snapshot.traces)
    _write_csv(run / "sites.csv", "time_s,site,bytes,count", _probe_rows(snapshot, "100.0"))
    _write_csv(run / "heap.csv", "time_s,heap_bytes,peak_bytes,tracer_bytes", [("100.0", total, total, 0)])
    document = json.loads((run / "result.json").read_text())
    document["files"]["snapshots"] = []  # the peak is the sites.csv snapshot
    (run / "result.json").write_text(json.dumps(document))
    for old, new in ((run, dump), (dump, run)):
        totals, rows = diff_rows(old, new)
        assert totals == (total, total, 0)
        assert_each_site_once(rows)
        assert all(change == 0 for change, _label in rows), rows
        assert not any(label.startswith(str(REPO)) for _change, label in rows), "one path form: the short one"


def test_a_peak_on_a_phase_end_dump_against_that_dump_changes_nothing(tracemalloc_run, tmp_path):
    run = copy_run(tracemalloc_run, tmp_path / "run")
    # heap.csv all zero and sites.csv empty: the largest phase-end dump is the run's peak.
    heap = (run / "heap.csv").read_text().splitlines()
    _write_csv(run / "heap.csv", heap[0], [(row.split(",")[0], 0, 0, 0) for row in heap[1:]])
    (run / "sites.csv").write_text("time_s,site,bytes,count\n")
    document = json.loads((run / "result.json").read_text())
    dumps = [run / name for name in document["files"]["snapshots"]]
    totals = [sum(t.size for t in tracemalloc.Snapshot.load(str(path)).traces) for path in dumps]
    largest = dumps[totals.index(max(totals))]
    (totals_line, rows) = diff_rows(run, largest)
    assert totals_line == (max(totals), max(totals), 0)
    assert_each_site_once(rows)
    assert all(change == 0 for change, _label in rows), rows


# --- memray and tracemalloc on one workload --------------------------------------------------------------
_WORKLOAD = '''
import sys, tracemalloc

class Table:
    def __init__(self, count):
        self.rows = [bytearray(512) for _ in range(count)]

def main(out, tracer):
    if tracer == "memray":
        import memray
        with memray.Tracker(out, trace_python_allocators=True):
            table = Table(2000)
            del table
    else:
        tracemalloc.start(1)
        table = Table(2000)
        tracemalloc.take_snapshot().dump(out)

main(sys.argv[1], sys.argv[2])
'''


def test_memray_and_tracemalloc_give_a_comprehension_line_one_row(tmp_path):
    pytest.importorskip("memray", reason="memray is not installed")
    dump, capture = tmp_path / "table.tmsnap", tmp_path / "table.bin"
    run_child(_WORKLOAD, str(dump), "tracemalloc", cwd=tmp_path)
    run_child(_WORKLOAD, str(capture), "memray", cwd=tmp_path)
    _totals, rows = diff_rows(capture, dump)
    assert_each_site_once(rows)
    [row] = [label for _change, label in rows if site_of(label) == (str(tmp_path / "workload.py"), 6)]
    assert row.endswith("(Table.__init__)"), row  # the name the source gives, whatever the tracer says


def test_common_basis_keeps_plain_dumps_as_they_are():
    """Two sources with one path form and no pseudo-sites: nothing renamed, nothing folded
    (so diff stays tracemalloc's compare_to)."""
    old = (Site((Frame("/a/x.py", 3),), 10, 1), Site((Frame("/a/y.py", 1),), 5, 1))
    new = (Site((Frame("/a/x.py", 3),), 30, 2),)
    basis = common_basis(old, new)
    assert (basis.old, basis.new, basis.notes) == (old, new, ())
    assert [(d.frames[0].filename, d.size_diff) for d in compare(old, new)] == [("/a/x.py", 20), ("/a/y.py", -5)]


def test_a_site_known_on_one_side_only_stays_a_real_change():
    """The basis folds only what one side cannot name: a line both name keeps its own row."""
    old = (Site((Frame("server/x.py", 3, "f"),), 100, 1), Site((Frame("(other)", 0, "rest"),), 50, 5))
    new = (Site((Frame("/repo/server/x.py", 3),), 160, 2), Site((Frame("/repo/server/z.py", 9),), 40, 4),
           Site((Frame("/repo/server/w.py", 1),), 25, 1))
    diffs = {d.frames[0].filename: d.size_diff for d in compare(old, new)}
    assert diffs == {"server/x.py": 60, "(other)": 15}
    assert "(other)" in " ".join(common_basis(old, new).notes)


def test_a_runs_site_breakdown_keys_every_moment_alike(tracemalloc_run):
    """memdiet_run.site_samples: every moment with sites (sites.csv's and the phase-end dumps'), in
    time order, a line under one label everywhere, the probe's own bytes one (probe) site in each."""
    from tracemalloc_viewer.sources.memdiet_run import site_samples

    samples = site_samples(tracemalloc_run)
    document = json.loads((tracemalloc_run / "result.json").read_text())
    sites_csv_times = {float(line.split(",")[0]) for line in (tracemalloc_run / "sites.csv").read_text().splitlines()[1:]}
    # One sites.csv snapshot per phase end is the probe's top-sites copy of that phase's dump: the
    # moment counts once, from the dump (six phases, six dumps).
    assert len(document["files"]["snapshots"]) == 6
    assert len(samples) == len(sites_csv_times)
    assert [s.time_s for s in samples] == sorted(s.time_s for s in samples)
    names: dict[tuple[str, int], set[str | None]] = {}
    for sample in samples:
        assert sum(site.size for site in sample.sites) == sample.total_bytes
        heads = [site.frames[0] for site in sample.sites]
        assert "(probe)" in {frame.filename for frame in heads}
        assert not any(frame.filename.startswith(str(REPO)) or frame.filename.endswith("server/tracing.py")
                       for frame in heads), "one path form, and the probe's lines in (probe)"
        for frame in heads:
            names.setdefault((frame.filename, frame.lineno), set()).add(frame.function)
    assert all(len(functions) == 1 for functions in names.values()), \
        {site: functions for site, functions in names.items() if len(functions) > 1}
