"""massif.out export: accepted by valgrind's ms_print and by our strict parser, peak equal to the
series' peak, trees equal to tracemalloc's figures; and the strict parser itself rejects broken files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tracemalloc

import pytest

from tests.fixtures.viewer_support import (  # noqa: F401 (fixtures)
    memray_capture,
    ms_print,
    tracemalloc_series,
    viewer,
)
from tracemalloc_viewer.massif_check import MassifFormatError, check_file, parse


@pytest.fixture(scope="module")
def tracemalloc_massif(tracemalloc_series, tmp_path_factory):
    out = tmp_path_factory.mktemp("massif") / "massif.out.tracemalloc"
    result = viewer("massif", *tracemalloc_series.dumps, "--detailed-freq", "2", "-o", out)
    assert result.returncode == 0, result.stderr
    return out


def test_tracemalloc_export_passes_ms_print_and_strict_parser(tracemalloc_massif, tracemalloc_series):
    printed = ms_print(tracemalloc_massif)
    assert printed.returncode == 0, printed.stderr
    assert "Detailed snapshots: [1, 3 (peak), 5]" in printed.stdout
    massif = check_file(tracemalloc_massif)
    assert massif.time_unit == "ms"
    assert len(massif.snapshots) == len(tracemalloc_series.dumps)


def test_tracemalloc_export_peak_and_times_match_the_dumps(tracemalloc_massif, tracemalloc_series):
    totals = [sum(trace.size for trace in tracemalloc.Snapshot.load(dump).traces) for dump in tracemalloc_series.dumps]
    stamps = [json.loads(d.with_name(d.name + ".json").read_text())["time_s"] for d in tracemalloc_series.dumps]
    massif = check_file(tracemalloc_massif)
    assert [s.heap for s in massif.snapshots] == totals
    assert massif.peak.heap == max(totals)
    assert massif.peak.number == totals.index(max(totals))
    assert [s.time for s in massif.snapshots] == [round((t - stamps[0]) * 1000) for t in stamps]


def test_tracemalloc_export_trees_hold_tracemalloc_line_statistics(tracemalloc_massif, tracemalloc_series):
    """The root's children are the allocating lines: named ones carry tracemalloc's bytes for that line,
    the merged node carries the rest."""
    massif = check_file(tracemalloc_massif)
    named = 0
    for snapshot in massif.detailed:
        by_line = {(s.traceback[0].filename, s.traceback[0].lineno): s.size
                   for s in tracemalloc.Snapshot.load(tracemalloc_series.dumps[snapshot.number]).statistics("lineno")}
        for child in snapshot.tree.children:
            if child.below_threshold:
                continue
            filename, lineno = re.search(r"\((.+):(\d+)\)$", child.label).groups()
            assert child.size == by_line[(filename, int(lineno))], child.label
            named += 1
        assert snapshot.tree.size == sum(by_line.values())
    assert named >= 6


def test_memray_export_passes_ms_print_and_strict_parser(memray_capture, tmp_path):
    from memray import FileReader

    out = tmp_path / "massif.out.memray"
    result = viewer("massif", memray_capture, "-o", out)
    assert result.returncode == 0, result.stderr
    printed = ms_print(out)
    assert printed.returncode == 0, printed.stderr
    massif = check_file(out)
    with FileReader(str(memray_capture)) as reader:
        peak = reader.metadata.peak_memory
        records = list(reader.get_memory_snapshots())
    assert massif.peak.heap == peak == max(s.heap for s in massif.snapshots)
    assert len(massif.detailed) >= 3
    # every memory record is a snapshot, plus memray's high-water mark when it falls between two
    heaps = [s.heap for s in massif.snapshots]
    assert len(heaps) in (len(records), len(records) + 1)
    if len(heaps) == len(records) + 1:
        heaps.pop(massif.peak.number)
    assert heaps == [record.heap for record in records]
    assert "grow_buffers" in out.read_text()


def test_strict_parser_accepts_valgrind_massif_output(tmp_path):
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.skip("valgrind is not installed (apt-get install valgrind)")
    out = tmp_path / "massif.out.ls"
    subprocess.run([valgrind, "--tool=massif", f"--massif-out-file={out}", "--detailed-freq=1", "--threshold=5",
                    "ls", "-la", "/usr/bin"], check=True, capture_output=True, timeout=120)
    massif = check_file(out, peak_tolerance=0.01)  # massif marks a new peak only after a 1% rise
    assert len(massif.detailed) == len(massif.snapshots) > 3
    assert "places" in out.read_text()


# --- the strict parser rejects what massif would never write -------------------------------------------
VALID = """\
desc: --time-unit=ms
cmd: ./t
time_unit: ms
#-----------
snapshot=0
#-----------
time=0
mem_heap_B=0
mem_heap_extra_B=0
mem_stacks_B=0
heap_tree=empty
#-----------
snapshot=1
#-----------
time=10
mem_heap_B=4453000
mem_heap_extra_B=18400
mem_stacks_B=0
heap_tree=peak
n3: 4453000 (heap allocation functions) malloc/new/new[], --alloc-fns, etc.
 n2: 4400000 0x109170: g (t.c:3)
  n1: 4000000 0x1091A6: f (t.c:4)
   n0: 4000000 0x1091C6: main (t.c:6)
  n0: 400000 0x1091F4: main (t.c:7)
 n0: 50000 0x109222: main (t.c:8)
 n0: 3000 in 2 places, all below massif's threshold (1.00%)
#-----------
snapshot=2
#-----------
time=20
mem_heap_B=2000
mem_heap_extra_B=1000
mem_stacks_B=0
heap_tree=detailed
n2: 2000 (heap allocation functions) malloc/new/new[], --alloc-fns, etc.
 n0: 1980 0x10922A: main (t.c:9)
 n0: 20 in 1 place, below massif's threshold (1.00%)
"""


def test_strict_parser_accepts_the_valid_sample():
    massif = parse(VALID)
    assert (massif.peak.number, massif.peak.heap, len(massif.detailed)) == (1, 4453000, 2)
    assert [child.size for child in massif.peak.tree.children] == [4400000, 50000, 3000]
    # No --threshold on the desc: line, so the labels' 1.00% (to two decimals); 4 levels below the root.
    assert massif.threshold == 1.0 and massif.peak.depth == 3


@pytest.mark.parametrize("broken,fault", [
    (VALID.replace("n0: 400000 0x1091F4", "n0: 400001 0x1091F4"), "add up"),
    (VALID.replace("  n1: 4000000 0x1091A6: f (t.c:4)\n   n0: 4000000 0x1091C6: main (t.c:6)\n  n0: 400000 0x1091F4: main (t.c:7)\n",
                   "  n0: 400000 0x1091F4: main (t.c:7)\n  n1: 4000000 0x1091A6: f (t.c:4)\n   n0: 4000000 0x1091C6: main (t.c:6)\n"), "not sorted"),
    (VALID.replace("heap_tree=detailed", "heap_tree=peak"), "peak snapshots"),
    (VALID.replace("heap_tree=peak", "heap_tree=detailed"), "peak snapshots"),
    (VALID.replace("   n0: 4000000 0x1091C6", "    n0: 4000000 0x1091C6"), "indented"),
    (VALID.replace("n3: 4453000", "n4: 4453000"), "tree line"),
    (VALID.replace(" n0: 50000 0x109222: main (t.c:8)", " n0: 50000 in 3 places, all below massif's threshold (1.00%)"), "more than one"),
    (VALID.replace("in 2 places, all below", "in 2 places, below"), "malformed below-threshold"),
    (VALID.replace("mem_heap_B=2000", "mem_heap_B=2001"), "mem_heap_B is 2001"),
    (VALID.replace("time=20", "time=5"), "before the previous"),
    (VALID.replace("snapshot=2", "snapshot=3"), "expected snapshot=2"),
    (VALID.replace("time_unit: ms", "time_unit: s"), "time_unit"),
    (VALID.replace("#-----------\nsnapshot=1\n#-----------", "#-----------\nsnapshot=1\n#----------"), "after snapshot=1"),
    (VALID.replace("0x109222: main", "main"), "0xADDRESS"),
    (VALID.replace("mem_heap_B=4453000", "mem_heap_B=4453000\n"), "blank line"),
    (VALID.replace("mem_heap_B=0\n", "mem_heap_B=5000000\n").replace("n1: 2000 (heap", "n1: 2000 (heap"), "mem_heap_B=5000000"),
    (VALID[:-1], "newline"),
    (VALID.replace("desc: --time-unit=ms\n", "desc: --time-unit=ms\ndesc: again\n"), "one desc line"),
    # the threshold rule: S = floor(1% of heap + extra + stacks) per snapshot (30 B in snapshot 2)
    (VALID.replace(" n0: 20 in 1 place, below massif's threshold (1.00%)", " n0: 20 0x109240: h (t.c:11)"),
     "20 B is below the threshold"),
    (VALID.replace("n2: 2000 (heap allocation functions) malloc/new/new[], --alloc-fns, etc.\n"
                   " n0: 1980 0x10922A: main (t.c:9)\n n0: 20 in 1 place",
                   "n1: 2000 (heap allocation functions) malloc/new/new[], --alloc-fns, etc.\n n0: 2000 in 1 place"),
     "at most 29 B"),
    (VALID[:-len("(1.00%)\n")] + "(2.00%)\n", "the file's is 1%"),
    (VALID.replace("desc: --time-unit=ms", "desc: --time-unit=ms --threshold=0.5"), "the file's is 0.5%"),
    (VALID.replace("0x1091F4: main (t.c:7)", "0x1091A6: f (t.c:4)"), "same label"),
])
def test_strict_parser_rejects(broken, fault):
    assert broken != VALID
    with pytest.raises(MassifFormatError) as error:
        parse(broken)
    if fault == "mem_heap_B=5000000":  # snapshot 0 larger than the peak
        assert "exceeds the peak" in str(error.value)
    else:
        assert fault in str(error.value)
