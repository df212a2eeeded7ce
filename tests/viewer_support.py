"""Shared pieces of the tracemalloc_viewer tests (no tests here): real workloads run in child
processes, session fixtures holding their outputs, and a CLI runner.

The tracemalloc workload allocates in phases (buffers, nested records, a recursion, frees) and dumps
a snapshot after each, with 25-frame tracebacks and a JSON sidecar holding the dump's time. The
memray workload does the same kind of work under ``memray.Tracker(trace_python_allocators=True)``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CHILD_TIMEOUT_S = 60

TRACEMALLOC_WORKLOAD = textwrap.dedent('''
    import json, sys, time, tracemalloc
    from pathlib import Path

    out = Path(sys.argv[1])
    kept = {}

    def dump(name):
        path = out / f"{len(list(out.glob('*.tracemalloc'))):02d}-{name}.tracemalloc"
        tracemalloc.take_snapshot().dump(path)
        path.with_name(path.name + ".json").write_text(json.dumps({"time_s": time.monotonic()}))

    def grow_buffers(count, size):
        return [bytearray(size) for _ in range(count)]

    class Record:
        def __init__(self, index):
            self.name = f"record-{index:06d}" * 4
            self.fields = {"index": index, "tags": [index] * 8}

    def build_records(count):
        return [Record(index) for index in range(count)]

    def nested(depth, count):
        return build_records(count) if depth == 0 else nested(depth - 1, count)

    def recurse(depth):
        if depth == 0:
            return [bytes(2048) for _ in range(50)]
        return recurse(depth - 1)

    tracemalloc.start(25)
    dump("start")
    kept["buffers"] = grow_buffers(400, 4096)
    dump("buffers")
    kept["records"] = nested(3, 2000)
    dump("records")
    kept["recursion"] = recurse(30)  # deeper than the 25 frames kept
    dump("recursion")
    del kept["buffers"]
    dump("freed-buffers")
    kept["more"] = grow_buffers(100, 16384)
    dump("big-buffers")
    kept.clear()
    dump("end")
''')

MEMRAY_WORKLOAD = textwrap.dedent('''
    import sys, time
    import memray

    def grow_buffers(count, size):
        return [bytearray(size) for _ in range(count)]

    def build_strings(count):
        return ["s%07d" % index * 10 for index in range(count)]

    def hold(seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.005)

    with memray.Tracker(sys.argv[1], trace_python_allocators=True, memory_interval_ms=5):
        buffers = grow_buffers(300, 8192)
        hold(0.05)
        strings = build_strings(20000)
        hold(0.05)
        del buffers
        hold(0.05)
        more = grow_buffers(50, 16384)
        hold(0.05)
        del strings, more
        hold(0.03)
''')


@dataclass
class TracemallocSeries:
    directory: Path
    dumps: list[Path]


def run_child(script: str, *args: str, cwd: Path) -> None:
    path = cwd / "workload.py"
    path.write_text(script)
    subprocess.run([PYTHON, str(path), *args], cwd=cwd, check=True, timeout=CHILD_TIMEOUT_S,
                   stdout=subprocess.DEVNULL)


def _session_directory(tmp_path_factory, name: str) -> tuple[Path, bool]:
    """A directory shared by the whole session, and whether it was already filled: the fixtures below
    are imported into several test modules, and each import is its own fixture to pytest."""
    directory = tmp_path_factory.getbasetemp() / name
    done = (directory / ".done").exists()
    directory.mkdir(exist_ok=True)
    return directory, done


@pytest.fixture(scope="session")
def tracemalloc_series(tmp_path_factory) -> TracemallocSeries:
    directory, done = _session_directory(tmp_path_factory, "viewer-tracemalloc-series")
    if not done:
        run_child(TRACEMALLOC_WORKLOAD, str(directory), cwd=directory)
        (directory / ".done").touch()
    dumps = sorted(directory.glob("*.tracemalloc"))
    assert len(dumps) == 7
    return TracemallocSeries(directory, dumps)


@pytest.fixture(scope="session")
def memray_capture(tmp_path_factory) -> Path:
    pytest.importorskip("memray", reason="memray is not installed")
    directory, done = _session_directory(tmp_path_factory, "viewer-memray-capture")
    capture = directory / "capture.bin"
    if not done:
        run_child(MEMRAY_WORKLOAD, str(capture), cwd=directory)
        (directory / ".done").touch()
    return capture


def viewer(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m tracemalloc_viewer ARGS`` as a user would, from the repository."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run([PYTHON, "-m", "tracemalloc_viewer", *map(str, args)], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)


def ms_print_path() -> str:
    path = shutil.which("ms_print")
    if path is None:
        pytest.skip("valgrind's ms_print is not installed (apt-get install valgrind)")
    return path


def ms_print(massif_file: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([ms_print_path(), *options, str(massif_file)], capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT_S)
