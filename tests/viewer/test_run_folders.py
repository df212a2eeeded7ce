"""tracemalloc_viewer on memdiet run folders: `chart` and `massif` on real runs (a tracemalloc run and
a memray run made here with `python -m experiments run`), checked with valgrind's ms_print, the strict
parser and the run's own files; `memdiet view`; the matrix's massif.out per run; bad run folders.

The run fixtures live here and are imported by test_export.py; the runs are made once per session.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import tracemalloc
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.viewer_support import REPO, ms_print, session_run, viewer
from tracemalloc_viewer import Detail, LoadOptions, ViewerInputError, open_series
from tracemalloc_viewer.massif_check import check_file, parse
from tracemalloc_viewer.model import Frame, Sample, Series, Site, detailed_indices
from tracemalloc_viewer.outputs import massif
from tracemalloc_viewer.sources import memdiet_run

RUN_TIMEOUT_S = 180
#: A small real run: about 3 s of scenario on 2 cores.
RUN_ARGS = ("--layout", "packed", "--max-conns", "4096", "--connections", "50", "--idle", "0.4", "--load", "0.6")


def memdiet(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m experiments ARGS`` (the memdiet command), from the repository."""
    return subprocess.run([sys.executable, "-m", "experiments", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def _real_run(tmp_path_factory, probe: str) -> Path:
    return session_run(tmp_path_factory, f"memdiet-run-{probe}", ["run", *RUN_ARGS, "--probe", probe], RUN_TIMEOUT_S)


@pytest.fixture(scope="session")
def tracemalloc_run(tmp_path_factory) -> Path:
    return _real_run(tmp_path_factory, "tracemalloc")


@pytest.fixture(scope="session")
def memray_run(tmp_path_factory) -> Path:
    pytest.importorskip("memray", reason="memray is not installed")
    return _real_run(tmp_path_factory, "memray")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def copy_run(run: Path, destination: Path) -> Path:
    shutil.copytree(run, destination, ignore=shutil.ignore_patterns("raw", "*.html"))
    return destination


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# --- a tracemalloc run -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tracemalloc_massif(tracemalloc_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run-massif") / "massif.out.packed-tracemalloc"
    result = viewer("massif", tracemalloc_run, "-o", out)
    assert result.returncode == 0, result.stderr
    return out


def test_run_massif_passes_ms_print_and_the_strict_parser(tracemalloc_massif):
    printed = ms_print(tracemalloc_massif)
    assert printed.returncode == 0, printed.stderr
    assert "(peak)" in printed.stdout
    massif_file = check_file(tracemalloc_massif)
    assert "--source=memdiet-run:heap.csv" in massif_file.desc
    assert "-m server --layout packed" in massif_file.cmd


@dataclass
class RunSamples:
    """What a tracemalloc run folder's files hold, read here without the viewer: ``heap`` rows
    (time s, bytes), ``recorded`` sites.csv snapshots {time s: {site: bytes}}, and the phase-end
    ``dumps`` (time s, bytes, tracemalloc's own per-line statistics {(file, line): bytes})."""

    heap: list[tuple[float, int]]
    recorded: dict[float, dict[str, int]]
    dumps: list[tuple[float, int, dict[tuple[str, int], int]]]


def run_samples(run: Path) -> RunSamples:
    heap = [(float(row["time_s"]), int(row["heap_bytes"])) for row in read_csv(run / "heap.csv")]
    recorded: dict[float, dict[str, int]] = defaultdict(dict)
    for row in read_csv(run / "sites.csv"):
        recorded[float(row["time_s"])][row["site"]] = int(row["bytes"])
    document = json.loads((run / "result.json").read_text())
    ends = {phase["name"]: phase["end_s"] for phase in document["phases"]}
    dumps = []
    for name in document["files"]["snapshots"]:
        snapshot = tracemalloc.Snapshot.load(str(run / name))
        end_s = ends[re.fullmatch(r"\d+-(.+)\.tmsnap", Path(name).name).group(1)]
        # The run records when the server took the dump; the sampler wrote a heap row just before.
        time_s = document["files"]["snapshot_times_s"][name]
        assert any(abs(t - time_s) < 1e-6 for t, _b in heap) and time_s >= end_s
        lines = {(s.traceback[0].filename, s.traceback[0].lineno): s.size for s in snapshot.statistics("lineno")}
        dumps.append((time_s, sum(trace.size for trace in snapshot.traces), lines))
    return RunSamples(heap, dict(recorded), dumps)


@pytest.fixture(scope="module")
def tracemalloc_samples(tracemalloc_run) -> RunSamples:
    samples = run_samples(tracemalloc_run)
    assert len(samples.dumps) == 6 and samples.recorded
    return samples


def test_run_massif_curve_is_heap_csv_and_peak_is_the_probes(tracemalloc_massif, tracemalloc_samples):
    heap = tracemalloc_samples.heap
    dumps = [(t, total) for t, total, _lines in tracemalloc_samples.dumps]
    # The probe also writes each dump's top sites into sites.csv at the dump's time: the viewer shows
    # that moment once, from the dump.
    recorded = [(t, sum(sites.values())) for t, sites in tracemalloc_samples.recorded.items()
                if not any(abs(t - dump_t) < 1e-6 for dump_t, _total in dumps)]
    massif_file = check_file(tracemalloc_massif)
    # Every heap.csv row is a snapshot (at its time, in ms on the run's clock), and so is each
    # sites.csv snapshot whose bytes differ from the heap row of its moment, and each dump.
    expected = [(round(t * 1000), b) for t, b in heap + [r for r in recorded if r not in set(heap)] + dumps]
    assert sorted((s.time, s.heap) for s in massif_file.snapshots) == sorted(expected)
    # The peak is the most the probe saw: in heap.csv, or in a detailed snapshot or dump taken a
    # moment after a heap row.
    assert massif_file.peak.heap == max(b for _t, b in heap + recorded + dumps)


def _site_of(label: str) -> str:
    """sites.csv's label for a massif tree node label ``0xADDR: function (file:line)``."""
    function, location = re.fullmatch(r"0x[0-9A-F]+: (.*) \((.*)\)", label).groups()
    if location.startswith("(") and location.endswith(":0"):  # a pseudo-site: "(other):0" -> "(other)"
        return location[:-2]
    return location if function == "???" else f"{location} ({function})"


def _named_children(snapshot) -> dict[str, int]:
    return {_site_of(child.label): child.size for child in snapshot.tree.children if not child.below_threshold}


def _holds_the_dump(children: dict[str, int], lines: dict[tuple[str, int], int]) -> bool:
    """True if a massif tree's named children are tracemalloc's own figure for each line of a dump,
    labelled with the probe's short paths; the probe's own lines (its filters' files) are one
    (probe) site, as in sites.csv."""
    probe = sum(b for (f, _n), b in lines.items() if f.endswith(("/server/tracing.py", "/" + Path(tracemalloc.__file__).name)))
    if children.get("(probe)") not in (probe, None):
        return False
    for site, size in children.items():
        if site == "(probe)":
            continue
        if site.startswith("("):  # sites.csv's (other): not a dump's tree
            return False
        filename, line = site.split(" (")[0].rsplit(":", 1)
        figures = [b for (f, n), b in lines.items() if n == int(line) and (f == filename or f.endswith("/" + filename))]
        if figures != [size]:
            return False
    return True


def test_run_massif_detailed_trees_hold_sites_csv_and_the_dumps(tracemalloc_run, tracemalloc_samples, tmp_path):
    # Every detailed sample shown (--detailed-freq 1): with the default, the probe's snapshots and the
    # dumps are thinned as soon as they are denser than one per 10 samples, and then not every dump shows.
    out = tmp_path / "massif.out.every-detail"
    result = viewer("massif", tracemalloc_run, "-o", out, "--detailed-freq", "1")
    assert result.returncode == 0, result.stderr
    massif_file = check_file(out)
    recorded = {(round(t * 1000), sum(sites.values())): sites for t, sites in tracemalloc_samples.recorded.items()}
    dumps = {(round(t * 1000), total): lines for t, total, lines in tracemalloc_samples.dumps}
    # A sites.csv snapshot and a dump may share a moment and a total (the probe also snapshots at
    # phase ends): a tree counts as whichever of the two it holds.
    seen_recorded, seen_dumps = set(), set()
    for snapshot in massif_file.detailed:
        children = _named_children(snapshot)
        key = (snapshot.time, snapshot.heap)
        holds_recorded = key in recorded and all(recorded[key].get(site) == size for site, size in children.items())
        holds_dump = key in dumps and _holds_the_dump(children, dumps[key])
        if holds_recorded:
            seen_recorded.add(key)
        if holds_dump:
            seen_dumps.add(key)
        if not (holds_recorded or holds_dump):  # the peak, where no sites were recorded: a detailed sample's, plus the rest not attributed
            assert snapshot.kind == "peak", (key, children)
            named = {site: size for site, size in children.items() if not site.startswith("(not attributed)")}
            assert any(all(_named_children(source).get(site) == size for site, size in named.items())
                       for source in massif_file.detailed if source is not snapshot and source.heap <= snapshot.heap)
    assert seen_recorded and seen_dumps == set(dumps)
    # A site keeps one label, and one code address, in every snapshot: sites.csv's and the dumps'.
    addresses: dict[str, str] = {}
    for snapshot in massif_file.detailed:
        for child in snapshot.tree.children:
            if not child.below_threshold:
                address, label = child.label.split(": ", 1)
                assert addresses.setdefault(label, address) == address
    # The packed table (5% of this heap) is in every tree, under the one label sites.csv gives it.
    table_labels = [{child.label for child in snapshot.tree.children
                     if re.search(r": PackedTable\.__init__ \(server/layouts/packed\.py:\d+\)$", child.label)}
                    for snapshot in massif_file.detailed]
    assert all(len(labels) == 1 for labels in table_labels) and len(set.union(*table_labels)) == 1, table_labels


def test_chart_of_a_run_folder_is_ms_prints_chart(tracemalloc_run, tracemalloc_massif):
    chart = viewer("chart", tracemalloc_run)
    assert chart.returncode == 0, chart.stderr
    printed = ms_print(tracemalloc_massif)

    def graph(text: str) -> list[str]:
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if line.strip() in ("B", "KB", "MB", "GB"))
        return lines[start:start + 23]

    assert graph(chart.stdout) == graph(printed.stdout)
    assert "Source:             memdiet-run:heap.csv" in chart.stdout
    assert "curve: every row of heap.csv" in chart.stdout


def test_memdiet_view_forwards_to_the_viewer(tracemalloc_run, tmp_path):
    out = tmp_path / "massif.out.viewed"
    result = memdiet("view", "massif", tracemalloc_run, "-o", out)
    assert result.returncode == 0, result.stderr
    check_file(out)
    helped = memdiet("view", "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: memdiet view"), helped.stderr
    missing = memdiet("view", "chart", tmp_path / "nothing-here")
    assert one_error_line(missing).startswith("memdiet view: error: ")


# --- a memray run --------------------------------------------------------------------------------
def test_memray_run_folder_exports_from_its_capture(memray_run, tmp_path):
    from memray import FileReader

    out = tmp_path / "massif.out.packed-memray"
    result = viewer("massif", memray_run, "-o", out)
    assert result.returncode == 0, result.stderr
    assert ms_print(out).returncode == 0
    massif_file = check_file(out)
    assert "--source=memdiet-run:memray.bin" in massif_file.desc
    heap = [(float(row["time_s"]), int(row["heap_bytes"])) for row in read_csv(memray_run / "heap.csv")]
    with FileReader(str(memray_run / "memray.bin")) as reader:
        peak = reader.metadata.peak_memory
    assert massif_file.peak.heap == peak >= max(b for _t, b in heap)
    # On the run's clock: the capture's first memory record is heap.csv's first row.
    assert (massif_file.snapshots[0].time, massif_file.snapshots[0].heap) == (round(heap[0][0] * 1000), heap[0][1])
    assert any(len(line) - len(line.lstrip()) >= 3 for line in out.read_text().splitlines() if line.lstrip().startswith("n")), \
        "the capture's tracebacks should give trees deeper than one level"


def test_memray_run_folder_without_its_capture_reads_the_csv_files(memray_run, tmp_path):
    run = copy_run(memray_run, tmp_path / "run")
    (run / "memray.bin").unlink()
    series = open_series([run], LoadOptions(Detail()))
    assert series.source == "memdiet-run:heap.csv"
    heap = [int(row["heap_bytes"]) for row in read_csv(run / "heap.csv")]
    assert series.peak.total_bytes == max(heap)
    # memray's sites.csv has a snapshot at (nearly) every memory record: shown as densely as massif would.
    parsed = parse(massif.render(series, Detail()))
    assert 2 <= len(parsed.detailed) <= len(parsed.snapshots) // 10 + 2


# --- derived and broken run folders --------------------------------------------------------------
def test_rss_only_run_folder_charts_rss(tracemalloc_run, tmp_path):
    run = copy_run(tracemalloc_run, tmp_path / "run")
    (run / "heap.csv").unlink()
    (run / "sites.csv").unlink()
    series = open_series([run], LoadOptions(Detail()))
    rss = [int(row["rss_bytes"]) for row in read_csv(run / "rss.csv")]
    assert series.source == "memdiet-run:rss.csv"
    assert [s.total_bytes for s in series.samples] == rss
    parsed = parse(massif.render(series, Detail()))
    assert parsed.peak.heap == max(rss)
    assert len(parsed.detailed) == 1 and len(parsed.peak.tree.children) == 1


def _break(run: Path, how: str) -> None:
    if how == "truncated result.json":
        text = (run / "result.json").read_text()
        (run / "result.json").write_text(text[: len(text) // 2])
    elif how == "empty series":
        for name in ("heap.csv", "rss.csv"):
            (run / name).write_text((run / name).read_text().splitlines()[0] + "\n")
    elif how == "torn heap.csv":
        with open(run / "heap.csv", "a") as file:
            file.write("9.5,12")
    elif how == "truncated dump":
        dump = next((run / "snapshots").iterdir())
        dump.write_bytes(dump.read_bytes()[:5000])
    elif how == "not a memdiet result":
        (run / "result.json").write_text(json.dumps({"schema": "something/else"}))


@pytest.mark.parametrize("how, message", [
    ("truncated result.json", "truncated or not JSON"),
    ("empty series", "empty series"),
    ("torn heap.csv", "fields, expected 4"),
    ("truncated dump", "truncated or corrupt tracemalloc snapshot"),
    ("not a memdiet result", "not a memdiet result"),
])
def test_broken_run_folder_gives_one_line_and_exit_2(tracemalloc_run, tmp_path, how, message):
    run = copy_run(tracemalloc_run, tmp_path / "run")
    _break(run, how)
    line = one_error_line(viewer("chart", run))
    assert message in line and str(run) in line


def test_a_folder_without_result_json_is_not_read(tmp_path):
    (tmp_path / "heap.csv").write_text("time_s,heap_bytes,peak_bytes,tracer_bytes\n0.1,10,10,0\n")
    assert "a directory, and no source reads it" in one_error_line(viewer("massif", tmp_path, "-o", tmp_path / "m"))


# --- the matrix's massif.out per run, and the report's link --------------------------------------
def test_matrix_writes_a_massif_file_per_run_and_the_report_links_it(tracemalloc_run, tmp_path):
    from experiments.dataset.results import load_run
    from experiments.measure.matrix import write_massif_files
    from experiments.render.report_md import build_report

    run = copy_run(tracemalloc_run, tmp_path / "runs" / tracemalloc_run.name)
    write_massif_files([load_run(run)])
    reloaded = load_run(run)
    assert reloaded.document["files"]["massif"] == "massif.out.packed-tracemalloc"
    massif_file = check_file(reloaded.file("massif"))
    assert massif_file.peak.heap == open_series([run]).peak.total_bytes
    index = build_report([reloaded], tmp_path / "latest", matrix_info={"runs": [str(run)]})
    # The report names the run's massif.out without linking it: run folders are not committed (issue 16, item 8).
    text = index.read_text()
    assert "`massif.out.packed-tracemalloc`" in text and "](../runs/" not in text


# --- the source's contract -----------------------------------------------------------------------
def test_the_source_reads_the_schema_experiments_writes():
    from experiments.dataset import results

    assert (memdiet_run.SCHEMA, memdiet_run.SCHEMA_WITH_LAYOUT) == (results.SCHEMA, results.SCHEMA_WITH_LAYOUT)
    assert (memdiet_run.HEAP_FILE, memdiet_run.RSS_FILE, memdiet_run.SITES_FILE) == \
        (results.HEAP_FILE, results.RSS_FILE, results.SITES_FILE)
    assert memdiet_run.HEAP_COLUMNS == results.HEAP_COLUMNS[:2] and memdiet_run.RSS_COLUMNS == results.RSS_COLUMNS[:2]
    assert set(memdiet_run._PSEUDO_SITES) == {results.OTHER_SITE, results.PROBE_SITE}


def test_the_viewer_stays_standalone():
    code = ("import sys, tracemalloc_viewer.cli, tracemalloc_viewer.memdiet_command; "
            "sys.exit(sorted(m for m in sys.modules if m.split('.')[0] in ('experiments', 'server')) != [])")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60).returncode == 0


def _recorded_series(n_samples: int, recorded_at: list[int]) -> Series:
    site = (Frame("x.py", 1, "f"),)
    samples = [Sample(float(i), 100 + i, (Site(site, 100 + i, 1),) if i in recorded_at else None)
               for i in range(n_samples)]
    samples[-1] = Sample(float(n_samples - 1), 10**6, (Site(site, 10**6, 1),))  # the peak, recorded
    return Series(samples, "test", "test", "capture", detail_recorded=True)


def test_recorded_details_are_all_shown_when_sparse_and_thinned_when_dense():
    sparse = _recorded_series(100, [3, 40, 77])
    assert detailed_indices(sparse, Detail(every=10)) == [3, 40, 77, 99]
    dense = _recorded_series(100, list(range(100)))
    shown = detailed_indices(dense, Detail(every=10))
    assert shown == [9, 19, 29, 39, 49, 59, 69, 79, 89, 99]


def test_the_source_claims_a_run_folder_or_its_result_json(tmp_path):
    assert not memdiet_run.claims([tmp_path])
    (tmp_path / "result.json").write_text("{")
    assert memdiet_run.claims([tmp_path / "result.json"]) and memdiet_run.claims([tmp_path])
    with pytest.raises(ViewerInputError, match="truncated or not JSON"):
        open_series([tmp_path / "result.json"])
