"""Reading valgrind's massif.out files (``tracemalloc_viewer.sources.massif_out``), checked against two
oracles: a C program whose allocations are known (compiled with gcc in the test's folder), and
valgrind's own ``ms_print`` on a real program's file (``sort``: libc frames with lines, ``???``
frames, ``(below main)``, below-threshold nodes). Plus a forked program (one file per process, summed
without the child's inherited history), the viewer's commands on a massif.out, this viewer's own
export read back, and bad files refused with one line."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from tests.fixtures.viewer_support import ms_print, tracemalloc_series, viewer  # noqa: F401 (fixtures)
from tracemalloc_viewer import Detail, LoadOptions, open_series
from tracemalloc_viewer.massif_check import check_file
from tracemalloc_viewer.massif_tree import NO_FURTHER_FRAMES
from tracemalloc_viewer.model import Frame
from tracemalloc_viewer.sources import massif_out

VALGRIND_TIMEOUT_S = 60

#: Known allocations: ten 100,000-byte buffers and five 400,000-byte tables, the buffers freed; with an
#: argument, a fork whose child adds three 700,000-byte buffers while the parent adds one 50,000-byte table.
ORACLE_C = r"""
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void *kept[32];

__attribute__((noinline)) void *buffers(size_t size) { return malloc(size); }  /* BUFFERS */
__attribute__((noinline)) void *tables(size_t size) { return malloc(size); }  /* TABLES */

int main(int argc, char **argv) {
    for (int i = 0; i < 10; i++) kept[i] = buffers(100000);  /* MAIN_BUFFERS */
    for (int i = 0; i < 5; i++) kept[10 + i] = tables(400000);  /* MAIN_TABLES */
    usleep(20000);
    for (int i = 0; i < 10; i++) free(kept[i]);
    usleep(20000);
    if (argc > 1) {
        pid_t child = fork();
        if (child == 0) {
            for (int i = 0; i < 3; i++) kept[20 + i] = buffers(700000);
            usleep(200000);
            return 0;
        }
        usleep(50000);
        kept[25] = tables(50000);
        waitpid(child, NULL, 0);
    }
    return 0;
}
"""


def _line_of(marker: str) -> int:
    return next(number for number, line in enumerate(ORACLE_C.splitlines(), start=1) if f"/* {marker} */" in line)


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {package})")
    return path


def _massif(folder: Path, *command: str, options: tuple[str, ...] = ()) -> list[Path]:
    """Run ``command`` under massif in ``folder``; its massif.out files (one per process)."""
    valgrind = _tool("valgrind", "valgrind")
    subprocess.run([valgrind, "-q", "--tool=massif", "--time-unit=ms", *options,
                    f"--massif-out-file={folder}/massif.out.%p", *command],
                   cwd=folder, check=True, timeout=VALGRIND_TIMEOUT_S, stdout=subprocess.DEVNULL)
    return sorted(folder.glob("massif.out.*"))


@pytest.fixture(scope="module")
def oracle(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("massif-oracle")
    (folder / "oracle.c").write_text(ORACLE_C)
    subprocess.run([_tool("gcc", "gcc"), "-g", "-O0", "-o", "oracle", "oracle.c"], cwd=folder, check=True, timeout=60)
    return folder / "oracle"


@pytest.fixture(scope="module")
def oracle_massif(oracle, tmp_path_factory) -> Path:
    [path] = _massif(tmp_path_factory.mktemp("massif-one"), str(oracle), options=("--detailed-freq=1",))
    return path


@pytest.fixture(scope="module")
def sort_massif(tmp_path_factory) -> Path:
    """A real program's file: ``sort`` on 20,000 shuffled numbers, every 3rd snapshot detailed."""
    folder = tmp_path_factory.mktemp("massif-sort")
    numbers = folder / "numbers.txt"
    numbers.write_text("".join(f"{(index * 7919) % 20000}\n" for index in range(20000)))
    [path] = _massif(folder, _tool("sort", "coreutils"), str(numbers), options=("--detailed-freq=3",))
    return path


# --- the oracle of known allocations ----------------------------------------------------------------
def test_known_allocations(oracle_massif):
    series = open_series([oracle_massif])
    assert series.source == "massif" and series.time_source == "capture"
    totals = [sample.total_bytes for sample in series.samples]
    # Every malloc and free was a snapshot: the curve is the program's, byte for byte (massif repeats
    # the peak once, as the detailed snapshot it takes when the heap starts to fall).
    steps = [total for total, _same in itertools.groupby(totals)]
    assert steps == [0, *range(100000, 1000001, 100000), *range(1400000, 3000001, 400000),
                     *range(2900000, 1999999, -100000)]
    assert series.peak.total_bytes == 3000000 and totals[-1] == 2000000
    by_function = defaultdict(int)
    for site in series.peak.sites:
        by_function[site.frames[0]] += site.size
        callers = {"buffers": _line_of("MAIN_BUFFERS"), "tables": _line_of("MAIN_TABLES")}
        assert site.frames[1] == Frame("oracle.c", callers[site.frames[0].function], "main")
    assert dict(by_function) == {Frame("oracle.c", _line_of("BUFFERS"), "buffers"): 1000000,
                                 Frame("oracle.c", _line_of("TABLES"), "tables"): 2000000}
    assert all(site.count == 0 for site in series.peak.sites)  # massif counts no blocks
    assert any("3,000,000 B with 120 B of allocator overhead" in note for note in series.notes), series.notes


def test_forked_child_counted_from_the_fork(oracle, tmp_path):
    paths = _massif(tmp_path, str(oracle), "fork", options=("--detailed-freq=1",))
    assert len(paths) == 2  # the parent's file and the child's
    processes = massif_out.read_processes(paths)
    parent, child = processes
    # The parent's first snapshot after the fork is its 50,000-byte table; the child's own are its buffers.
    forked = [s.heap for s in parent.snapshots].index(2050000)
    assert [s.heap for s in child.snapshots[forked:]] == [2700000, 3400000, 4100000]
    placements = massif_out.place(processes)
    # The child's file starts with the parent's snapshots up to the fork (the same times and sizes):
    # they are the parent's, left out of the child, whose clock is the parent's.
    assert placements[1].first_own == forked and placements[1].offset_s == placements[0].offset_s
    series = open_series(paths)
    totals = [sample.total_bytes for sample in series.samples]
    assert len(series.samples) == len(parent.snapshots) + 3
    # Before the fork the curve is the parent's alone (3 MB at most, never counted twice) ...
    assert totals[:forked] == [s.heap for s in parent.snapshots[:forked]] and max(totals[:forked]) == 3000000
    # ... then the child's 2 MB of inherited tables and its three 700,000-byte buffers, beside the parent's 2 MB.
    assert totals[forked:forked + 3] == [4700000, 5400000, 6100000]
    child_sites = series.samples[forked + 2].sites
    other = [site for site in child_sites if site.frames[0].filename == massif_out.OTHER_PROCESSES]
    assert [site.size for site in other] == [2000000]
    assert sum(site.size for site in child_sites) == 6100000
    assert any("forked from pid" in note for note in series.notes)


def test_exec_children_on_their_own_clocks(sort_massif, tmp_path):
    """``sh -c "sort ...; /bin/true"`` under --trace-children=yes: sort and true are started by exec, each
    with a clock of its own, placed by its file's time: true ran after sort had exited."""
    numbers = sort_massif.parent / "numbers.txt"
    paths = _massif(tmp_path, "sh", "-c", f"{shutil.which('sort')} {numbers} > /dev/null; /bin/true",
                    options=("--trace-children=yes",))
    processes = massif_out.read_processes(paths)
    commands = [process.command.split()[0] for process in processes]
    assert commands[0] == "sh" and commands[1].endswith("sort") and commands[2] == "/bin/true"
    shell, sort, true = massif_out.place(processes)
    assert sort.first_own == true.first_own == 0 and "started by exec" in sort.how and "started by exec" in true.how
    assert shell.offset_s < sort.offset_s < sort.end_s <= true.offset_s + 0.05 and true.end_s <= shell.end_s + 0.05
    series = open_series(paths)
    sort_peak = max(snapshot.heap for snapshot in processes[1].snapshots)
    shell_peak = max(snapshot.heap for snapshot in processes[0].snapshots)
    assert sort_peak <= series.peak.total_bytes <= sort_peak + shell_peak


# --- ms_print, on a real program's file ----------------------------------------------------------------
_TABLE_ROW = re.compile(r"^ *([0-9]+) +([0-9,]+) +([0-9,]+) +([0-9,]+) +([0-9,]+) +([0-9,]+)$")
_TREE_LINE = re.compile(r"^((?:[| ] )*)->[0-9.]+% \(([0-9,]+)B\) (.*)$")


def _ms_print_figures(path: Path) -> tuple[dict[int, tuple[int, ...]], dict[int, dict[tuple[Frame, ...], int]]]:
    """ms_print's snapshot table (``n: (time, total, useful, extra, stacks)``) and, per detailed
    snapshot, its tree's nodes above the threshold as ``{frames from the root down: bytes}``."""
    printed = ms_print(path)
    assert printed.returncode == 0, printed.stderr
    rows: dict[int, tuple[int, ...]] = {}
    trees: dict[int, dict[tuple[Frame, ...], int]] = {}
    current, chain = None, []
    for line in printed.stdout.splitlines():
        row = _TABLE_ROW.match(line)
        if row:
            current = int(row[1])
            rows[current] = tuple(int(value.replace(",", "")) for value in row.groups()[1:])
            continue
        node = _TREE_LINE.match(line)
        if node and current is not None:
            depth = len(node[1]) // 2
            if "threshold (" in node[3]:  # merged places (massif's or ms_print's): no code label
                continue
            chain = chain[:depth] + [massif_out.frame_of(node[3])]
            nodes = trees.setdefault(current, {})
            # Two nodes with one label (two code addresses on one line) are one site here: summed.
            nodes[tuple(chain)] = nodes.get(tuple(chain), 0) + int(node[2].replace(",", ""))
    return rows, trees


def test_every_figure_agrees_with_ms_print(sort_massif):
    rows, trees = _ms_print_figures(sort_massif)
    [process] = massif_out.read_processes([sort_massif])
    series = open_series([sort_massif])
    assert len(rows) == len(process.snapshots) == len(series.samples) > 20
    for number, snapshot in enumerate(process.snapshots):
        time_ms, total, useful, extra, stacks = rows[number]
        assert (snapshot.time, snapshot.heap, snapshot.heap_extra, snapshot.stacks) == (time_ms, useful, extra, stacks)
        assert total == useful + extra + stacks
        assert series.samples[number].total_bytes == useful  # the curve is the useful heap, never the overhead
        assert series.samples[number].time_s == pytest.approx(time_ms / 1000)
    assert len(trees) >= 5
    for number, nodes in trees.items():
        sites = series.samples[number].sites
        assert sites is not None and sum(site.size for site in sites) == rows[number][2]
        for frames, size in nodes.items():
            # The bytes under every node ms_print shows are the bytes of the sites through it.
            assert sum(site.size for site in sites if site.frames[:len(frames)] == frames) == size, (number, frames)
        # The first level alone (what the massif probe labels its sites by) is ms_print's first level.
        first = defaultdict(int)
        for frame, size in massif_out.allocating_frames(process.snapshots[number].tree):
            if frame.filename != massif_out.BELOW_THRESHOLD:
                first[frame] += size
        shown = {frames[0]: size for frames, size in nodes.items() if len(frames) == 1}
        assert all(first[frame] == size for frame, size in shown.items()), number
        # ms_print hides what is under 1% of its total (heap, overhead and stacks): only such frames are extra.
        assert all(first[frame] * 100 < rows[number][1] for frame in set(first) - set(shown)), number
    labels = {frame for nodes in trees.values() for frames in nodes for frame in frames}
    assert any(frame.filename == "/usr/bin/sort" or frame.filename.endswith("/sort") for frame in labels), labels
    assert any(frame.function == "(below main)" for frame in labels)


@pytest.mark.parametrize("label, frame", [
    ("0x4A21992: PyUnicode_New (unicodeobject.c:1425)", Frame("unicodeobject.c", 1425, "PyUnicode_New")),
    ("0x154DD0: ngx_memalign (in /usr/sbin/nginx)", Frame("/usr/sbin/nginx", 0x154DD0, "ngx_memalign")),
    ("0x12F7B1: ??? (in /usr/sbin/nginx)", Frame("/usr/sbin/nginx", 0x12F7B1, None)),
    ("0x487B249: (below main) (libc_start_call_main.h:58)", Frame("libc_start_call_main.h", 58, "(below main)")),
    ("0x48D6203: _IO_file_underflow@@GLIBC_2.2.5 (fileops.c:485)", Frame("fileops.c", 485, "_IO_file_underflow@@GLIBC_2.2.5")),
    ("0x4A0: operator new(unsigned long) (vg_replace_malloc.c:422)",
     Frame("vg_replace_malloc.c", 422, "operator new(unsigned long)")),
    ("0x909D5150: grow_buffers (/tmp/viewer-demo/phases.py:14)", Frame("/tmp/viewer-demo/phases.py", 14, "grow_buffers")),
    ("0x1C: sites after the probe's top ones ((other):0)", Frame("(other)", 0, "sites after the probe's top ones")),
    ("0x1D: ???", Frame(massif_out.UNKNOWN_OBJECT, 0x1D, None)),
    (NO_FURTHER_FRAMES, None),
])
def test_frames_from_labels(label, frame):
    """Labels as valgrind 3.19 and this viewer's export write them (each seen in a real file)."""
    assert massif_out.frame_of(label) == frame


# --- the viewer's commands ------------------------------------------------------------------------------
def test_viewer_commands_open_a_massif_out(oracle_massif, tmp_path):
    top = viewer("top", oracle_massif)
    assert top.returncode == 0, top.stderr
    lines = [line for line in top.stdout.splitlines() if re.match(r"^ +[0-9]+ ", line)]
    assert "oracle.c:" in lines[0] and "(tables)" in lines[0] and "1953 KiB" in lines[0]
    assert "(buffers)" in lines[1] and "977 KiB" in lines[1]
    chart = viewer("chart", oracle_massif)
    assert chart.returncode == 0 and "Source:             massif" in chart.stdout, chart.stderr
    exported = tmp_path / "massif.out.again"
    again = viewer("massif", oracle_massif, "-o", exported)
    assert again.returncode == 0, again.stderr
    checked = check_file(exported)
    original = massif_out.read_file(oracle_massif)
    assert [s.heap for s in checked.snapshots] == [s.heap for s in original.snapshots]
    assert checked.peak.heap == 3000000 and ms_print(exported).returncode == 0


def test_own_export_read_back(tracemalloc_series, tmp_path):
    """This viewer's massif export of a tracemalloc series reads back as that series: times, totals,
    and at each detailed snapshot the bytes of every allocating line the export kept."""
    exported = tmp_path / "massif.out.series"
    assert viewer("massif", *tracemalloc_series.dumps, "--detailed-freq", "2", "-o", exported).returncode == 0
    original = open_series(tracemalloc_series.dumps, LoadOptions(Detail(every=1)))
    back = open_series([exported])
    assert [s.total_bytes for s in back.samples] == [s.total_bytes for s in original.samples]
    assert [round(s.time_s, 3) for s in back.samples] == [round(s.time_s, 3) for s in original.samples]
    detailed = [index for index, sample in enumerate(back.samples) if sample.sites is not None]
    assert detailed == [1, 3, 5]  # every 2nd, the peak (3) among them
    for index in detailed:
        lines = defaultdict(int)
        for site in original.samples[index].sites:
            lines[(site.frames[0].filename, site.frames[0].lineno)] += site.size
        read = defaultdict(int)
        for site in back.samples[index].sites:
            read[(site.frames[0].filename, site.frames[0].lineno)] += site.size
        kept = {line: size for line, size in read.items() if line[0] != massif_out.BELOW_THRESHOLD}
        assert kept and all(lines[line] == size for line, size in kept.items())
        assert sum(read.values()) == original.samples[index].total_bytes


def test_bad_massif_files_get_one_line(oracle_massif, tmp_path):
    text = oracle_massif.read_text()
    cut = tmp_path / "massif.out.1"
    cut.write_text(text[: len(text) // 2])
    result = viewer("chart", cut)
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "massif.out.1: not a valid massif.out file (line" in line and "truncated?" in line
    instructions = tmp_path / "massif.out.i"
    instructions.write_text(text.replace("time_unit: ms", "time_unit: i"))
    series = open_series([instructions])
    assert series.time_source == "index" and [s.time_s for s in series.samples] == list(range(len(series.samples)))
    clocked = tmp_path / "massif.out.3"
    clocked.write_text(text)
    mixed = viewer("chart", instructions, clocked)
    assert mixed.returncode == 2 and "only with --time-unit=ms" in mixed.stderr
