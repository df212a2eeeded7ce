"""Ready means settled (issue 24, item 1): a subject is taken as ready once it listens and its process tree
has been quiet for a stated time; a process that starts later is a warning naming its phase, and the
figures per held connection that span it are left empty with the reason.

The subject is written below for the test (standard library): its parent listens at once and serves
nothing, as sanic's main process does; after ``DELAY`` seconds it forks the worker that serves, which
first allocates ``WARM_MIB`` MiB over half a second (its imports, in a real server). Measured as ready
when it listened, the run's idle-empty would begin before the worker exists. With ``SPAWN_AT``, the
worker forks an idle child when it accepts that many connections: a process that appears in the ramp.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import textwrap

from experiments.dataset.results import IDLE_EMPTY, IDLE_HELD, RAMP, Phase, load_run
from experiments.dataset.builder import tree_changes
from experiments.measure.probes.sampler import TREE_RESCAN_S

from ..fixtures import REPO

LATE_WORKER = textwrap.dedent('''
    import os, signal, socket, sys, time
    port, spawn_at = int(sys.argv[1]), int(sys.argv[2])
    DELAY, WARM_MIB = 0.4, 24
    listener = socket.create_server(("127.0.0.1", port), backlog=512)
    time.sleep(DELAY)
    worker = os.fork()
    if worker == 0:
        signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
        warm = []
        for _ in range(WARM_MIB):
            warm.append(bytearray(2**20))
            time.sleep(0.5 / WARM_MIB)
        import selectors
        chooser, clients, accepted = selectors.DefaultSelector(), {}, 0
        chooser.register(listener, selectors.EVENT_READ)
        while True:
            for key, _ in chooser.select():
                if key.fileobj is listener:
                    client, _ = listener.accept()
                    accepted += 1
                    if accepted == spawn_at and os.fork() == 0:
                        signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
                        time.sleep(3600)
                    chooser.register(client, selectors.EVENT_READ)
                    continue
                data = key.fileobj.recv(65536)
                if not data:
                    chooser.unregister(key.fileobj)
                    key.fileobj.close()
                elif data.endswith(b"\\r\\n\\r\\n"):
                    key.fileobj.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
    def stop(*args):
        try:
            os.kill(worker, signal.SIGTERM)
            os.waitpid(worker, 0)
        finally:
            os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    while True:
        time.sleep(3600)
''')


def memdiet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=180)


def run_late_worker(tmp_path, spawn_at: int):
    server = tmp_path / "late_worker.py"
    server.write_text(LATE_WORKER)
    runs = tmp_path / "runs"
    result = memdiet("run", "--cmd", f"{shlex.quote(sys.executable)} {server} {{port}} {spawn_at}", "--name", "late",
                     "--connections", "20", "--idle", "0.5", "--load", "0.3", "--runs-dir", str(runs))
    assert result.returncode == 0, result.stderr
    (run_dir,) = runs.iterdir()
    return load_run(run_dir), result


def test_a_worker_that_starts_after_the_parent_listens_is_waited_for(tmp_path) -> None:
    run, _ = run_late_worker(tmp_path, spawn_at=0)
    ready = run.document["ready"]
    settled = ready["settled"]
    # It listened at once, and was ready only once the worker had started and stopped growing.
    assert len(settled["processes"]) == 2 and settled["changes"]
    assert ready["settled_s"] - ready["listening_s"] >= settled["quiet_s"]
    assert settled["rss_bytes"] > 24 * 2**20  # the worker had made its 24 MiB by then
    # What it waited for is named: the worker's arrival, or (when the worker was already there at the
    # first look, as on a loaded machine) its RSS growing.
    assert any("process" in change or "RSS" in change for change in settled["changes"]), settled["changes"]
    # So idle-empty holds the worker's 24 MiB: nothing of its start-up is counted per held connection.
    assert run.summary["idle_rss_bytes"] > 24 * 2**20
    assert abs(run.summary["rss_bytes_per_held_connection"]) < 64 * 1024
    assert run.document["process_tree"]["changes"] == [] and run.document["warnings"] == []


def test_a_process_that_appears_during_the_ramp_is_a_warning_and_empties_the_held_figures(tmp_path) -> None:
    run, result = run_late_worker(tmp_path, spawn_at=10)
    (change,) = run.document["process_tree"]["changes"]
    # Between two looks at the tree (a few tenths of a second apart), of which the ramp is one phase.
    assert change["event"] == "started" and RAMP in change["phase"].split(" or ")
    assert any(f"process {change['pid']}" in warning and f"during phase {change['phase']}" in warning
               for warning in run.document["warnings"])
    assert run.summary["rss_bytes_per_held_connection"] is None
    reason = run.document["not_measured"]["rss_bytes_per_held_connection"]
    assert "process tree changed" in reason and f"process {change['pid']}" in reason
    assert "not measured" in result.stderr


def test_tree_changes_name_the_phase_a_process_was_seen_first_or_last_in() -> None:
    phases = [Phase(IDLE_EMPTY, 1.0, 2.0), Phase(RAMP, 2.0, 2.5), Phase(IDLE_HELD, 2.5, 3.5)]
    rows = [(t, 100, 1, "root") for t in (0.9, 1.5, 2.2, 3.0, 3.6)]
    rows += [(t, 101, 100, "worker") for t in (0.9, 1.5, 2.2)]  # gone after the ramp
    rows += [(t, 102, 100, "late") for t in (3.0, 3.6)]  # born in idle-held
    rows += [(0.5, 103, 100, "start-up")]  # came and went before ready: not a change
    changes = tree_changes(rows, phases, {100, 101}, ready_s=0.8, rescan_s=TREE_RESCAN_S)
    assert [(c["pid"], c["event"], c["phase"], c["between_s"]) for c in changes] == [
        (101, "ended", f"{RAMP} or {IDLE_HELD}", [2.2, 3.0]), (102, "started", f"{RAMP} or {IDLE_HELD}", [2.1, 3.0])]
