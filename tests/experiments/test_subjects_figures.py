"""A figure is right or it is not printed, on real servers (issue 24; ``make subjects``, ``pytest -m
subjects``, the ``subjects`` extra).

Each figure per held connection is checked against an outside measurement made here without memdiet's
runner: the server started by hand, its process tree's RSS read from /proc once it has settled, then C
plain clients connected at once (as the ramp does: docs/any-server.md), one request each, answered,
held; the tree's RSS again; the difference over C. Where memdiet cannot give a figure, the test checks
that it is empty and says why, or that the run is refused with one line (exit 2).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

from experiments.dataset.agreement import free_space
from experiments.dataset.results import RunResult, load_run
from experiments.measure import procfs
from experiments.measure.process import LaunchedProcess, ListeningSocket, wait_settled
from experiments.measure.subjects import free_loopback_port

from ..fixtures import REPO

pytestmark = pytest.mark.subjects

#: Clients held by every run and by the outside check.
CONNECTIONS = 200
#: How far memdiet's figure may be from the outside one (the issue's "within about 10%", plus noise).
AGREE = 0.15
BIN = Path(sys.executable).parent
SANIC = f"{BIN / 'sanic'} tests.fixtures.sanic_app:app --host 127.0.0.1 --port {{port}} --no-access-logs"


def memdiet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def run(tmp_path: Path, command: str, probe: str, name: str, *extra: str) -> tuple[RunResult, str]:
    runs = tmp_path / f"runs-{name}-{probe}"
    result = memdiet("run", "--cmd", command, "--name", name, "--probe", probe, "--connections", str(CONNECTIONS),
                     "--idle", "1", "--load", "0.5", "--runs-dir", str(runs), *extra)
    assert result.returncode == 0, result.stderr
    (run_dir,) = runs.iterdir()
    return load_run(run_dir), result.stderr


def tree_rss(pid: int) -> int:
    """The tree's RSS, the median of five reads 0.1 s apart."""
    reads = []
    for _ in range(5):
        reads.append(procfs.tree_state(pid).rss_bytes)
        time.sleep(0.1)
    return sorted(reads)[2]


def outside_rss_per_connection(command: str, connections: int = CONNECTIONS) -> float:
    """RSS per held connection measured by hand (see the module's docstring)."""
    port = free_loopback_port()
    argv = shlex.split(command.replace("{port}", str(port)))
    server = LaunchedProcess(argv, cwd=REPO, readiness=ListeningSocket(descendants=True, port=port), name="outside",
                             own_group=True)
    server.start()
    clients: list[socket.socket] = []
    try:
        server.wait_ready(60)
        wait_settled(server, 60)
        before = tree_rss(server.pid)
        clients = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(connections)]
        for client in clients:
            client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for client in clients:
            assert client.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(1.0)
        after = tree_rss(server.pid)
        return (after - before) / connections
    finally:
        for client in clients:
            client.close()
        server.stop(30, signal.SIGTERM) if server.running() else None
        server.close()


def agrees(figure: float, outside: float) -> bool:
    return abs(figure - outside) <= AGREE * abs(outside)


def assert_rss_agrees_from_outside(run_result: RunResult, command: str, label: str) -> None:
    """The run's RSS per held connection within :data:`AGREE` of :func:`outside_rss_per_connection`'s."""
    figure, outside = run_result.summary["rss_bytes_per_held_connection"], outside_rss_per_connection(command)
    print(f"{label}: RSS per held connection {figure:,.0f} B, outside {outside:,.0f} B")
    assert agrees(figure, outside), (label, figure, outside)


# --- sanic: its worker starts after its main process listens ------------------------------------------
def test_sanic_is_ready_once_its_worker_settled_and_its_figures_agree_from_outside(tmp_path) -> None:
    untraced, _ = run(tmp_path, SANIC, "rss", "sanic")
    settled = untraced.document["ready"]["settled"]
    assert len(settled["processes"]) >= 3  # the main process, its worker, multiprocessing's tracker
    assert untraced.document["warnings"] == [] and untraced.document["process_tree"]["changes"] == []
    assert_rss_agrees_from_outside(untraced, SANIC, "sanic")
    # Traced: the heap per held connection is the worker's, the same as sanic's single process gives
    # (ready when it listens, nothing starts after): the worker's imports are not in it (50 KB before).
    traced, _ = run(tmp_path, SANIC, "tracemalloc", "sanic")
    single, _ = run(tmp_path, SANIC + " --single-process", "tracemalloc", "sanic1")
    heap, oracle = traced.summary["heap_bytes_per_held_connection"], single.summary["heap_bytes_per_held_connection"]
    print(f"sanic: heap per held connection {heap:,.0f} B, single process {oracle:,.0f} B")
    assert agrees(heap, oracle), (heap, oracle)


# --- a server whose interpreter has no memray ------------------------------------------------------------
@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("bare-venv")
    venv.EnvBuilder(with_pip=False).create(folder)
    return str(folder / "bin" / "python")


def test_a_server_without_memray_is_refused_under_memray_and_measured_under_rss(tmp_path, bare_python) -> None:
    # The standard library's asyncio responder, run from the repository by an interpreter without memray.
    server = f"{bare_python} -m experiments.bench.peers.asyncio_app --host 127.0.0.1 --port {{port}}"
    runs = tmp_path / "refused"
    result = memdiet("run", "--cmd", server, "--name", "bare", "--probe", "memray", "--connections", "20",
                     "--runs-dir", str(runs))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert bare_python in result.stderr and "'memray'" in result.stderr
    measured, _ = run(tmp_path, server, "rss", "bare")
    assert_rss_agrees_from_outside(measured, server, "asyncio without memray")


# --- pre-fork servers: a master that serves nothing, workers that hold the clients -------------------------
HYPERCORN = (f"{BIN / 'hypercorn'} -w 2 --keep-alive 3600 -b 127.0.0.1:{{port}} "
             "experiments.bench.peers.uvicorn_app:app")
GUNICORN_SYNC = f"{BIN / 'gunicorn'} -w 2 -b 127.0.0.1:{{port}} experiments.bench.peers.wsgi_app:app"


# Under make soak, not in CI's make subjects: in one of two fresh-clone CI runs the memray run of hypercorn's
# workers came back with no traced processes (result.json without traced_processes), not yet explained.
@pytest.mark.soak
def test_hypercorn_with_workers_has_a_ledger_and_a_heap_per_process_summed(tmp_path) -> None:
    traced, stderr = run(tmp_path, HYPERCORN, "tracemalloc", "hypercorn")
    ledger = traced.document["rss_ledger"]
    processes = ledger["processes"]
    assert ledger["summed_over"] == len(processes) >= 3  # the master, its two workers (and a tracker)
    (root,) = [entry for entry in processes.values() if entry["root"]]
    # The master holds no client: its Python heap does not grow per held connection (it read 0 B as the
    # whole tree's figure before, beside a traced heap of 13.6 KB); the workers' does, and they add up.
    assert abs(root["per_held_connection"]["python_heap"]) < 64
    heaps = [entry["heap_bytes_per_held_connection"] for entry in traced.document["traced_processes"]]
    total = traced.summary["heap_bytes_per_held_connection"]
    assert abs(sum(heaps) - total) < 1 and total > 1000
    assert ledger["per_held_connection"]["python_heap"] == pytest.approx(
        sum(entry["per_held_connection"]["python_heap"] for entry in processes.values()))
    assert "per held connection, by process" in stderr
    # memray (no phase-end dumps): each process's heap per held connection from its own samples, summed.
    memray, _ = run(tmp_path, HYPERCORN, "memray", "hypercorn")
    each = {entry["pid"]: entry["heap_bytes_per_held_connection"] for entry in memray.document["traced_processes"]}
    assert abs(each[memray.document["traced_processes"][0]["pid"]]) < 64  # the master
    assert sum(each.values()) == pytest.approx(memray.summary["heap_bytes_per_held_connection"], abs=1)
    assert memray.document["held_connection_sites"]["processes"] == len(each)
    untraced, _ = run(tmp_path, HYPERCORN, "rss", "hypercorn")
    print(f"hypercorn -w 2: traced heap per held connection {total:,.0f} B (tracemalloc), "
          f"{memray.summary['heap_bytes_per_held_connection']:,.0f} B (memray)")
    assert_rss_agrees_from_outside(untraced, HYPERCORN, "hypercorn -w 2")


def test_gunicorn_sync_workers_hold_nothing_so_no_figure_per_held_connection_is_printed(tmp_path) -> None:
    traced, stderr = run(tmp_path, GUNICORN_SYNC, "tracemalloc", "gunicorn")
    missing = traced.document["not_measured"]
    for key in ("rss_bytes_per_held_connection", "heap_bytes_per_held_connection"):
        assert traced.summary.get(key) is None and missing[key]
    # Its load phase sent each request on a new connection: req/s is a figure, not "not measured".
    assert traced.document["load"]["load"]["fresh_connections"] and traced.summary["req_per_s"] > 0
    assert "req_per_s" not in missing
    ledger = traced.document["rss_ledger"]
    # The ledger's per held connection (28.9 KiB of it before) is left out, with the reason.
    assert ledger["per_held_connection"] is None and "closed" in ledger["per_held_connection_not_measured"]
    assert all(entry["per_held_connection"] is None for entry in ledger["processes"].values())
    assert "not measured" in stderr


# --- gevent: memray's heap per held connection above RSS, explained --------------------------------------
GEVENT = f"{sys.executable} -m tests.fixtures.gevent_app {{port}}"
#: CPython 3.11+'s frame stack grows in chunks of this size (Python/pystate.c, DATA_STACK_CHUNK_SIZE),
#: mapped through the arena allocator (_PyObject_VirtualAlloc -> _PyObject_ArenaMmap).
DATA_STACK_CHUNK_BYTES = 16 * 1024


def test_gevent_memray_counts_each_greenlets_frame_stack_chunk_which_rss_mostly_does_not(tmp_path) -> None:
    """Each connection's greenlet gets a frame stack of its own: one 16 KiB mmap, counted whole by memray
    (it sees _PyObject_ArenaMmap), invisible to tracemalloc (not an allocation it traces), and resident only
    in the pages the greenlet's few frames touched. Without that site memray agrees with RSS."""
    traced, _ = run(tmp_path, GEVENT, "memray", "gevent")
    untraced, _ = run(tmp_path, GEVENT, "rss", "gevent")
    sites = traced.document["held_connection_sites"]
    (chunks,) = [site for site in sites["sites"] if "_PyObject_ArenaMmap" in site[0]]
    assert chunks[1:] == [DATA_STACK_CHUNK_BYTES * CONNECTIONS, CONNECTIONS]  # one chunk per held connection
    memray, rss = traced.summary["heap_bytes_per_held_connection"], untraced.summary["rss_bytes_per_held_connection"]
    without = memray - DATA_STACK_CHUNK_BYTES
    print(f"gevent: memray {memray:,.0f} B per held connection, {without:,.0f} B without the frame stack chunks; "
          f"RSS {rss:,.0f} B")
    assert memray > 1.5 * rss and agrees(without, rss), (memray, without, rss)


# --- a worker killed mid-phase: what was seen, not a guessed cause ------------------------------------
GTHREAD = (f"{BIN / 'gunicorn'} -w 2 --worker-class gthread --threads 4 --keep-alive 600 -b 127.0.0.1:{{port}} "
           "experiments.bench.peers.wsgi_app:app")


def test_a_worker_killed_in_idle_held_is_recorded_with_its_signal_phase_and_the_clients_lost_with_it(tmp_path) -> None:
    """gunicorn with two gthread workers holds the clients in its workers; this test kills one of them
    (a process of the tree memdiet started for it, found under memdiet's pid, by its pid) with SIGKILL
    once the ramp's clients are held. result.json and the warnings say which process died, by which
    signal, in which phase, and how many clients ended with it; the held figures are left empty."""
    connections, runs = 40, tmp_path / "runs"
    memdiet_run = subprocess.Popen(
        [sys.executable, "-m", "experiments", "run", "--cmd", GTHREAD, "--name", "gthread", "--probe", "rss",
         "--connections", str(connections), "--idle", "4", "--load", "0.5", "--runs-dir", str(runs)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed, lost_expected = None, 0
    try:
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline and memdiet_run.poll() is None:
            time.sleep(0.1)
            tree = procfs.process_tree(memdiet_run.pid)
            masters = [pid for pid in tree if procfs.parent_and_name(pid)[0] == memdiet_run.pid
                       and b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()]
            if not masters:
                continue
            workers = [pid for pid in tree if procfs.parent_and_name(pid)[0] == masters[0]]
            port = next(iter(procfs.listening_ports(masters[0], descendants=True)), None)
            if port is None or len(workers) < 2:
                continue
            held = {pid: procfs.established_on_port([pid], port) for pid in workers}
            if sum(held.values()) >= connections and max(held.values()) > 0:
                killed = max(held, key=held.__getitem__)
                lost_expected = held[killed]
                os.kill(killed, signal.SIGKILL)  # one worker of the tree this test's memdiet run started
        out, err = memdiet_run.communicate(timeout=300)
    finally:
        if memdiet_run.poll() is None:
            memdiet_run.kill()
            memdiet_run.wait(30)
    assert killed is not None, "no worker held the clients"
    (run_dir,) = runs.iterdir()
    document = load_run(run_dir).document
    deaths = {death["pid"]: death for death in document["process_tree"]["deaths"]}
    death = deaths[killed]
    print(f"gthread: killed worker {killed} holding {lost_expected} clients; recorded {death}")
    assert death["signal"] == "SIGKILL" and death["exit_code"] is None and death["phase"] == "idle-held"
    assert death["clients_lost"] == lost_expected and sum(death["lost_how"].values()) == lost_expected
    said = [warning for warning in document["warnings"] if f"process {killed}" in warning]
    assert said and "killed by SIGKILL" in said[0] and "idle-held" in said[0]
    assert "killed by SIGKILL" in err.replace("\n", " ")
    assert "keep-alive timeout" not in json.dumps(document)  # no guessed cause where a death is seen
    for key in ("rss_bytes_per_held_connection", "heap_bytes_per_held_connection"):
        assert document["summary"].get(key) is None
    assert "rss_bytes_per_held_connection" in document["not_measured"]


# --- granian: memray's heap per held connection against RSS, measured -----------------------------------
GRANIAN = (f"{BIN / 'granian'} --interface asgi --host 127.0.0.1 --port {{port}} "
           "tests.fixtures.subjects.hello:asgi")


def test_granian_memray_counts_the_rust_sides_mappings_whole_which_rss_holds_outside_both_allocators(tmp_path) -> None:
    """granian holds its connections on its Rust side. memray's heap per held connection is almost all
    native allocations with no Python frame in the worker (the Rust allocator's mappings, counted whole);
    the untraced run's ledger (the allocators probe) puts RSS per held connection in memory neither
    pymalloc nor malloc reports. The issue saw 29.4 KB of memray against 22.0 KB of RSS; the rss runs here
    give 30.5 to 32.3 KB, within 15% of memray's."""
    traced, _ = run(tmp_path, GRANIAN, "memray", "granian")
    untraced, _ = run(tmp_path, GRANIAN, "rss", "granian")
    allocators, _ = run(tmp_path, GRANIAN, "allocators", "granian")
    memray, rss = traced.summary["heap_bytes_per_held_connection"], untraced.summary["rss_bytes_per_held_connection"]
    sites = traced.document["held_connection_sites"]
    native = sum(site[1] for site in sites["sites"] if site[0].startswith("[native] <unknown>"))
    split = free_space(allocators.document)
    outside = split["parts"]["outside"]
    print(f"granian: memray {memray:,.0f} B per held connection ({native / CONNECTIONS:,.0f} B of it native with no "
          f"frame), RSS {rss:,.0f} B; untraced: in use {split['in_use']:,.0f} B, outside both allocators "
          f"{outside:,.0f} B, of RSS {allocators.summary['rss_bytes_per_held_connection']:,.0f} B")
    assert agrees(memray, rss), (memray, rss)
    assert native / CONNECTIONS > 0.8 * memray  # the Rust side's, not Python's
    assert split["in_use"] < 0.05 * rss and outside > 0.6 * allocators.summary["rss_bytes_per_held_connection"]
