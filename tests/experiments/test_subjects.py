"""Any server through the scenario (issue 12): subjects, port discovery, probes injected into Python
programs that were not edited for them, process trees, nginx, and every bad input.

Each run here is real and tiny (20 clients, phases of a few tenths of a second). The subjects: the
asyncio peer (standard library, started as a plain ``--cmd``), a forking server written below for
the test (two workers forked from one parent, standard library), gunicorn with two forked workers
(the bench extra), nginx (Debian's, from ``make system-deps``).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from experiments.dataset.results import load_run
from experiments.errors import BadInput
from experiments.measure import subjects
from experiments.measure.process import loopback_host

from ..fixtures import REPO

#: Tiny run options every run here shares.
TINY = ("--connections", "20", "--idle", "0.3", "--load", "0.3")
ASYNCIO_APP = f"{shlex.quote(sys.executable)} -m experiments.bench.peers.asyncio_app"

#: A pre-fork server: the parent listens, forks two workers that serve keep-alive HTTP/1.1 on the
#: shared socket (asyncio each), and waits; SIGTERM to the parent ends them all.
FORKING_SERVER = textwrap.dedent('''
    import asyncio, os, signal, socket, sys
    listener = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=512)
    async def serve(reader, writer):
        while await reader.readuntil(b"\\r\\n\\r\\n"):
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
    async def worker():
        server = await asyncio.start_server(lambda r, w: serve_safely(r, w), sock=listener)
        await asyncio.Event().wait()
    async def serve_safely(reader, writer):
        try:
            await serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
            asyncio.run(worker())
        children.append(pid)
    def stop(*args):
        for child in children:
            os.kill(child, signal.SIGTERM)
        for child in children:
            os.waitpid(child, 0)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.pause()
''')


def memdiet(*args: str, cwd: Path = REPO, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def only_run(runs_dir: Path):
    (run_dir,) = [path for path in runs_dir.iterdir() if path.is_dir()]
    return load_run(run_dir)


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie some other parent has yet to reap)."""
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z"
    except FileNotFoundError:
        return True


def tree_pids(run_dir: Path) -> set[int]:
    lines = (run_dir / "processes.csv").read_text().splitlines()[1:]
    return {int(line.split(",")[1]) for line in lines}


# --- subjects, without running them ------------------------------------------------------------------
def test_a_command_is_split_like_a_shell_and_its_port_placeholder_filled(tmp_path) -> None:
    subject = subjects.resolve(command_line=f"{ASYNCIO_APP} --host 127.0.0.1 --port '{{port}}'")
    assert subject.kind == "command" and subject.python and subject.name == "experiments.bench.peers.asyncio_app"
    launch = subject.launch(sys.executable, tmp_path)
    assert launch.argv[:3] == [sys.executable, "-m", "experiments.bench.peers.asyncio_app"]
    assert launch.argv[-1] == str(launch.port) and launch.readiness.port == launch.port
    # Without {port}: nothing is filled in, the port is found from the tree's listening sockets.
    plain = subjects.resolve(command_line=f"{ASYNCIO_APP} --port 0", name="plain").launch(sys.executable, tmp_path)
    assert plain.port is None and plain.argv[-1] == "0" and plain.readiness.port is None


def test_python_programs_are_told_from_native_ones() -> None:
    # A console script whose #! line names the virtualenv's interpreter is a Python program.
    script = Path(sys.executable).parent / "pytest"
    assert subjects.resolve(command_line=f"{script} --version").python
    assert not subjects.resolve(command_line="/bin/sleep 1").python


@pytest.mark.parametrize("command_line, message", [
    ("definitely-not-a-command-xyz --port {port}", "command not found: 'definitely-not-a-command-xyz'"),
    ("python -c 'unterminated", "cannot be split like a shell would"),
    ("", "--cmd is empty"),
])
def test_a_bad_command_line_is_refused_with_one_line(command_line: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        subjects.resolve(command_line=command_line)


def test_loopback_reachability_of_listening_addresses() -> None:
    assert loopback_host(["0.0.0.0"]) == "127.0.0.1"
    assert loopback_host(["127.0.0.1"]) == "127.0.0.1"
    assert loopback_host(["::"]) == "127.0.0.1"
    assert loopback_host(["::1"]) == "::1"
    assert loopback_host(["192.0.2.7"]) is None


# --- real runs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("port_word", ["{port}", "0"], ids=["placeholder", "discovered"])
def test_a_command_runs_the_scenario_with_its_port_given_or_discovered(tmp_path, port_word: str) -> None:
    result = memdiet("run", "--cmd", f"{ASYNCIO_APP} --port {port_word}", "--name", "stdlib", *TINY,
                     "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    run = only_run(tmp_path)
    assert run.status == "complete" and run.layout == "stdlib"
    assert run.document["subject"]["kind"] == "command"
    port = run.document["listening"]["port"]
    if port_word != "0":
        assert str(port) in run.document["subject"]["command"]
    assert run.summary["req_per_s"] > 0 and run.summary["errors"] == 0
    # The kernel's side, read with ss at the phase ends: the subject's 20 sockets at idle-held.
    assert run.document["kernel"]["idle-held"]["sockets"] == 20
    assert run.document["kernel"]["idle-empty"]["sockets"] == 0
    assert [phase["name"] for phase in run.document["phases"]] == ["idle-empty", "ramp", "idle-held", "load",
                                                                   "drain", "idle-after"]


def test_tracemalloc_is_injected_into_every_forked_worker_one_series_each(tmp_path) -> None:
    server = tmp_path / "forking_server.py"
    server.write_text(FORKING_SERVER)
    runs = tmp_path / "runs"
    result = memdiet("run", "--cmd", f"{shlex.quote(sys.executable)} {server} {{port}}", "--name", "prefork",
                     "--probe", "tracemalloc", *TINY, "--runs-dir", str(runs))
    assert result.returncode == 0, result.stderr
    run = only_run(runs)
    traced = run.document["traced_processes"]
    assert [entry["began"] for entry in traced] == ["start", "fork", "fork"]
    parent = traced[0]["pid"]
    assert all(entry["ppid"] == parent for entry in traced[1:])
    for entry in traced:  # one series per process, and a dump at every phase end
        heap = (run.path / entry["files"]["heap"]).read_text().splitlines()
        assert heap[0].startswith("time_s,heap_bytes") and len(heap) > 10
        assert len(entry["files"]["snapshots"]) == 6
    # The run's heap is the processes' sum: at the end of idle-held, the phase-end dumps' totals.
    held = run.document["phase_end_heap_bytes"]["idle-held"]
    assert held == sum(entry["phase_end_heap_bytes"]["idle-held"] for entry in traced)
    # Where the held clients' bytes went, summed over the workers that took them: the worker's
    # StreamReader/transport objects are there, in asyncio's own lines.
    sites = run.document["held_connection_sites"]
    assert sites["processes"] == 3 and sites["heap_bytes"] > 20 * 500
    assert any("asyncio/" in site for site, _size, _count in sites["sites"])
    # Per-process memory from outside too, and nothing left running.
    assert len(run.document["process_tree"]["phase_end"]["idle-held"]["processes"]) == 3
    assert all(gone(pid) for pid in tree_pids(run.path))


def test_gunicorn_with_two_workers_reports_each_process_and_the_pss_total(tmp_path) -> None:
    pytest.importorskip("gunicorn", reason="gunicorn comes with the bench extra (pip install -e '.[bench]')")
    command = ("gunicorn -w 2 -k gthread --keep-alive 3600 -b 127.0.0.1:{port} "
               "experiments.bench.peers.wsgi_app:app")
    result = memdiet("run", "--cmd", command, "--probe", "rss", *TINY, "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    run = only_run(tmp_path)
    assert run.status == "complete" and run.layout == "gunicorn" and not run.document["warnings"]
    held = run.document["process_tree"]["phase_end"]["idle-held"]
    names = sorted(process["name"] for process in held["processes"])
    assert len(names) == 3 and all("gunicorn" in name or "python" in name for name in names)
    total = held["total"]
    # Forked workers share their parent's pages: PSS counts them once, RSS once per process.
    assert total["pss_bytes"] < total["rss_bytes"]
    assert total["rss_bytes"] == sum(process["rss_bytes"] for process in held["processes"])
    assert run.summary["idle_pss_bytes"] < run.summary["idle_rss_bytes"]
    assert all(gone(pid) for pid in tree_pids(run.path))


def test_memray_is_injected_with_native_frames(tmp_path) -> None:
    result = memdiet("run", "--cmd", f"{ASYNCIO_APP} --port {{port}}", "--name", "stdlib", "--probe", "memray",
                     *TINY, "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    run = only_run(tmp_path)
    (capture,) = run.document["files"]["memray"]
    from tracemalloc_viewer.sources import memray_records

    reader = memray_records.open_capture(run.path / capture)
    try:
        assert reader.metadata.has_native_traces
    finally:
        reader.close()
    assert run.summary["held_heap_bytes"] > run.summary["idle_heap_bytes"]
    assert (run.path / "sites.csv").read_text().count("\n") > 10


def test_nginx_runs_through_the_rss_probe(tmp_path) -> None:
    if subjects.NATIVE["nginx"].missing_packages():
        pytest.skip("nginx is not installed (make system-deps installs nginx-light)")
    result = memdiet("run", "--subject", "nginx", *TINY, "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    run = only_run(tmp_path)
    assert run.status == "complete" and run.summary["errors"] == 0 and run.summary["req_per_s"] > 0
    held = run.document["process_tree"]["phase_end"]["idle-held"]
    assert sorted(p["name"] for p in held["processes"]) == ["nginx", "nginx"]  # master and worker
    assert run.document["subject"]["versions"]["nginx"]
    assert all(gone(pid) for pid in tree_pids(run.path))


# --- bad input ------------------------------------------------------------------------------------------------
def test_a_python_probe_on_a_native_program_is_refused_before_anything_starts(tmp_path) -> None:
    result = memdiet("run", "--subject", "nginx", "--probe", "tracemalloc", *TINY, "--runs-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "traces Python programs" in result.stderr and not list(tmp_path.iterdir())


def test_a_command_that_is_not_found_exits_2_with_one_line(tmp_path) -> None:
    result = memdiet("run", "--cmd", "no-such-server-xyz --port {port}", "--runs-dir", str(tmp_path))
    assert result.returncode == 2 and "command not found: 'no-such-server-xyz'" in result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())


def test_a_command_that_exits_before_listening_fails_with_its_stderr(tmp_path) -> None:
    marker = tmp_path / "touched"
    # Never run by a shell: the ';' and 'touch' are words of python's argv, not a second command.
    command = f"{shlex.quote(sys.executable)} -c 'import sys; sys.exit(\"no config file\")' ; touch {marker}"
    result = memdiet("run", "--cmd", command, "--name", "broken", *TINY, "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "broken: not ready in phase start" in line and "exited with code 1 before it listened" in line
    assert "no config file" in line and not marker.exists()
    assert only_run(tmp_path / "runs").status == "incomplete"


def test_a_command_that_never_listens_times_out_with_the_tail_of_its_stderr(tmp_path) -> None:
    command = f"{shlex.quote(sys.executable)} -c 'import sys, time; print(\"warming up\", file=sys.stderr, flush=True); time.sleep(60)'"
    result = memdiet("run", "--cmd", command, "--name", "sleeper", "--start-timeout", "1.5", *TINY,
                     "--runs-dir", str(tmp_path))
    assert result.returncode == 1
    assert "sleeper: not ready in phase start" in result.stderr and "was not listening within 1.5 s" in result.stderr
    assert "warming up" in result.stderr
    run = only_run(tmp_path)
    assert run.status == "incomplete" and all(gone(pid) for pid in tree_pids(run.path))


def _non_loopback_address() -> str | None:
    """This machine's address on its default route, found without sending a packet (a UDP socket's
    connect only picks the route)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_a_command_listening_on_a_non_loopback_address_only_is_refused(tmp_path) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to listen on")
    result = memdiet("run", "--cmd", f"{ASYNCIO_APP} --host {address} --port {{port}}", "--name", "outside",
                     *TINY, "--runs-dir", str(tmp_path))
    assert result.returncode == 1
    assert f"listens on {address}:" in result.stderr and "which loopback does not reach" in result.stderr
    run = only_run(tmp_path)
    assert run.status == "incomplete" and all(gone(pid) for pid in tree_pids(run.path))


def test_a_command_that_dies_mid_run_is_named_with_its_phase(tmp_path) -> None:
    command = (f"{shlex.quote(sys.executable)} -c 'import socket, time; s = socket.create_server((\"127.0.0.1\", "
               "int(__import__(\"sys\").argv[1]))); time.sleep(2.5)' {port}")  # past the 1 s the tree must settle
    result = memdiet("run", "--cmd", command, "--name", "shortlived", "--connections", "5", "--idle", "3",
                     "--load", "0.3", "--runs-dir", str(tmp_path))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "shortlived (probe rss) died during phase idle-empty with exit code 0" in line
    run = only_run(tmp_path)
    assert run.status == "incomplete" and [p["name"] for p in run.document["phases"]] == []
    assert (run.path / "rss.csv").read_text().count("\n") > 5  # what was recorded is kept


def test_a_server_that_closes_after_each_response_is_reported_and_the_run_completes(tmp_path) -> None:
    # http.server speaks HTTP/1.0: it closes each connection after its response.
    result = memdiet("run", "--cmd", f"{shlex.quote(sys.executable)} -m http.server {{port}} --bind 127.0.0.1",
                     "--name", "http10", *TINY, "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    run = only_run(tmp_path)
    assert run.status == "complete"
    closed = run.document["closed_early"]
    assert closed["closed"] == 20 and closed["events"][0]["phase"] == "ramp"
    held = run.document["held"]
    assert held["held"] == 0 and held["outcomes"]["closed_announced"]["count"] == 20
    assert any("held none of the 20 clients" in warning for warning in run.document["warnings"])
    assert run.summary.get("rss_bytes_per_held_connection") is None
    # Not a figure of 0 either: each empty figure says why (issue 24, item 6).
    assert "held none of the 20 clients" in run.document["not_measured"]["rss_bytes_per_held_connection"]
    assert "not measured" in result.stderr
    # The load phase sent each request on a new connection: req/s is a figure.
    assert run.document["load"]["load"]["fresh_connections"] and run.summary["req_per_s"] > 0


def test_skmem_is_read_as_ss_prints_it() -> None:
    from experiments.measure.kernel import parse_skmem

    text = ("ESTAB 0 0 127.0.0.1:8080 127.0.0.1:51234\n\t skmem:(r0,rb131072,t0,tb2626560,f4096,w0,o0,bl0,d0)\n"
            "ESTAB 0 0 127.0.0.1:8080 127.0.0.1:51236\n\t skmem:(r768,rb131072,t0,tb2626560,f3328,w0,o0,bl0,d2)\n")
    assert parse_skmem(text) == [
        {"r": 0, "rb": 131072, "t": 0, "tb": 2626560, "f": 4096, "w": 0, "o": 0, "bl": 0, "d": 0},
        {"r": 768, "rb": 131072, "t": 0, "tb": 2626560, "f": 3328, "w": 0, "o": 0, "bl": 0, "d": 2},
    ]
