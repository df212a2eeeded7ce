"""The memray probe reading an injected program's captures, one per process: a capture that cannot be
read (a worker killed before it closed its capture) is named in the notes and its process left out,
and the heap summed over the processes is not given, since a sum without one process of the tree is
no figure of the tree; the other processes keep their own series (they used to be lost with it: the
whole read failed and result.json had no traced_processes)."""

from __future__ import annotations

import subprocess
import sys
import time

from experiments.measure.probes.memray import MemrayProbe

CAPTURE = """
import sys, memray
with memray.Tracker(sys.argv[1], native_traces=True, trace_python_allocators=True, memory_interval_ms=10):
    kept = [bytearray(4096) for _ in range(64)]
    import time; time.sleep(0.1)
"""


def test_an_unreadable_capture_is_named_and_no_summed_heap_is_given(tmp_path) -> None:
    trace_dir, run_dir = tmp_path / "raw", tmp_path / "run"
    (trace_dir / "pid-100").mkdir(parents=True)
    (trace_dir / "pid-200").mkdir()
    run_dir.mkdir()
    wall_t0 = time.time()
    subprocess.run([sys.executable, "-c", CAPTURE, str(trace_dir / "pid-100" / "memray.bin")], check=True, timeout=120)
    (trace_dir / "pid-200" / "memray.bin").write_bytes(b"not a capture: cut short")
    data = MemrayProbe().collect(trace_dir, run_dir, 0.0, wall_t0, [])
    assert list(data.processes) == ["pid-100"] and data.processes["pid-100"].heap_rows
    assert data.heap_rows == []
    (said,) = [note for note in data.notes if "pid-200" in note]
    assert "could not be read" in said and "not given" in said
