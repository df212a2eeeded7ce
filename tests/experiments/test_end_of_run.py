"""The end of a run and what a subject leaves behind, on servers that start and stop the way real ones
do (tests/fixtures/subjects/shapeshifter.py, standard library only): a non-zero exit on SIGTERM is a
warning, not a failure; a parent that forks the server and exits (at once, or after it listens) and a
double-forking daemon are followed, measured and stopped, and nothing of them runs after memdiet exits;
a subject listening beyond loopback is warned about; a command's runs are named by what it runs.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from pathlib import Path

import pytest

from experiments.measure import procfs
from experiments.measure.process import LaunchedProcess, ListeningSocket
from experiments.measure.subjects import free_loopback_port, resolve

from ..fixtures import REPO
from .test_subjects import ASYNCIO_APP, TINY, memdiet, only_run

SHAPESHIFTER = REPO / "tests" / "fixtures" / "subjects" / "shapeshifter.py"


def shapeshifter(*args: str) -> str:
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(SHAPESHIFTER))} {{port}} {' '.join(args)}"


def still_there(port: int) -> list[str]:
    """What of a subject on ``port`` is left: a listener on it, or a process started with it."""
    left = [f"a socket listening on {port}" for ipv6 in (False, True) for row in procfs.tcp_sockets("self", ipv6)
            if row.state == procfs.TCP_LISTEN and row.local_port == port]
    for pid in procfs.process_ids():
        try:
            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if str(SHAPESHIFTER).encode() in words and str(port).encode() in words and state != b"Z":
            left.append(f"pid {pid}: {b' '.join(words).decode(errors='replace')}")
    return left


def nothing_left_within(port: int, seconds: float) -> list[str]:
    """:func:`still_there`, polled until it is empty or ``seconds`` have passed (a killed process is
    reaped a moment later): what is left then."""
    deadline = time.monotonic() + seconds
    while (left := still_there(port)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_a_server_exiting_non_zero_on_sigterm_completes_with_a_warning(tmp_path) -> None:
    result = memdiet("run", "--cmd", shapeshifter("--exit-on-term", "1", "--workers", "2"), *TINY,
                     "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    run = only_run(tmp_path)
    assert run.status == "complete" and run.summary["rss_bytes_per_held_connection"] is not None
    stop = run.document["stop"]
    assert stop["exit_code"] == 1 and not stop["clean"] and stop["signal"] == "SIGTERM"
    assert any("exited with code 1 on SIGTERM (after every phase was measured)" in w for w in run.document["warnings"])
    # Its second worker was not signalled by its master: memdiet stopped it, and says so.
    assert [one["ended_by"] for one in stop["left_behind"]] == ["SIGTERM"]
    assert "exited with code 1 on SIGTERM" in result.stderr
    assert still_there(run.document["listening"]["port"]) == []


@pytest.mark.parametrize("mode", ["at-once", "after-listen", "daemon"])
def test_a_forking_parent_or_daemon_is_followed_and_leaves_nothing_behind(tmp_path, mode: str) -> None:
    # after-listen: its starter exits 0.5 s after it listens, inside an idle-empty of 1.5 s (or before
    # it, if readiness waited that long), which is then measured again on the daemon alone.
    idle = ("--idle", "1.5") if mode == "after-listen" else ()
    result = memdiet("run", "--cmd", shapeshifter("--fork", mode, "--workers", "2"), *TINY, *idle,
                     "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    run = only_run(tmp_path)
    assert run.status == "complete"
    daemon = run.document["daemon"]
    assert daemon["started_exit_code"] == 0 and daemon["pid"] != daemon["started_pid"]
    assert daemon["phase"] in (("start", "idle-empty") if mode == "after-listen" else ("start",))
    assert any(f"leaving pid {daemon['pid']} listening" in w for w in run.document["warnings"])
    # The daemon's tree was measured: 20 clients held, each a few KB on the server's side.
    assert run.summary["rss_bytes_per_held_connection"] is not None
    assert {row["pid"] for row in run.document["process_tree"]["phase_end"]["idle-held"]["processes"]} >= {daemon["pid"]}
    assert still_there(run.document["listening"]["port"]) == []


def test_a_double_forking_daemon_and_its_worker_are_stopped_by_the_launcher() -> None:
    port = free_loopback_port()
    process = LaunchedProcess([sys.executable, str(SHAPESHIFTER), str(port), "--fork", "daemon", "--workers", "2"],
                              readiness=ListeningSocket(descendants=True, port=port), own_group=True, name="daemon")
    process.start()
    try:
        process.wait_ready(30)
        assert process.daemon is not None and process.daemon != process.popen.pid
        # The daemon left the session and the group memdiet started it in.
        session, group = procfs.session_and_group(process.daemon)
        assert process.popen.pid not in (session, group)
        members = process.members()
        assert len(members) == 2
        assert process.stop(10) == 0  # reparented to the launcher (a child subreaper): its own exit code
        assert [one["ended_by"] for one in process.stop_report["left_behind"]] == ["SIGTERM"]
    finally:
        process.close()
    assert nothing_left_within(port, 5) == []


def test_the_main_process_is_signalled_before_its_workers() -> None:
    """A master that stops its own workers on SIGTERM gets the chance to: memdiet signals them only
    if they are still running once the master has exited."""
    port = free_loopback_port()
    process = LaunchedProcess([sys.executable, str(SHAPESHIFTER), str(port), "--workers", "3"],
                              readiness=ListeningSocket(descendants=True, port=port), own_group=True, name="pool")
    process.start()
    try:
        process.wait_ready(30)
        # Ready once one process listens; the pool's other worker may still be starting (a fresh-clone
        # CI run on a loaded machine saw one of two workers at that moment).
        deadline = time.monotonic() + 30
        while len(workers := [pid for pid in process.members() if pid != process.pid]) < 2:
            assert time.monotonic() < deadline, workers
            time.sleep(0.05)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGSTOP)  # a stopped worker would not die of a SIGTERM sent at once
        assert process.stop(10) == 0
        assert {one["pid"]: one["ended_by"] for one in process.stop_report["left_behind"]} == {
            workers[0]: "SIGKILL", workers[1]: "SIGTERM"}
    finally:
        process.close()
    assert still_there(port) == []


def test_a_pool_killed_while_it_forks_leaves_no_worker_behind() -> None:
    """A master killed between two forks: the workers it forked after kill() listed the members are
    found and killed in the next round (a fresh-clone CI run once left such a worker listening)."""
    port = free_loopback_port()
    process = LaunchedProcess([sys.executable, str(SHAPESHIFTER), str(port), "--workers", "60"],
                              readiness=ListeningSocket(descendants=True, port=port), own_group=True, name="pool")
    process.start()
    try:
        process.wait_ready(30)  # the listener exists before the first fork: the master is still forking
    finally:
        process.close()
    assert nothing_left_within(port, 5) == []


def test_a_subject_listening_beyond_loopback_is_warned_about(tmp_path) -> None:
    result = memdiet("run", "--cmd", f"{ASYNCIO_APP} --host 0.0.0.0 --port {{port}}", *TINY,
                     "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    run = only_run(tmp_path)
    port = run.document["listening"]["port"]
    assert any(f"listens on 0.0.0.0:{port}, beyond loopback" in w for w in run.document["warnings"])
    assert "beyond loopback" in result.stderr


@pytest.mark.parametrize(("command", "name"), [
    (f"{sys.executable} -m http.server {{port}}", "http.server"),
    (f"{sys.executable} -u tests/fixtures/subjects/srv_waitress.py {{port}}", "srv_waitress"),
    (f"{sys.executable} -X dev -m gunicorn app:app", "gunicorn"),
    (f"{sys.executable} -c pass", Path(sys.executable).name),
    (f"{REPO / '.venv' / 'bin' / 'memdiet'} run", "memdiet"),
])
def test_a_command_is_named_by_the_script_or_module_it_runs(command: str, name: str) -> None:
    assert resolve(command_line=command).name == name


def test_a_server_that_serves_nothing_fails_with_one_line_naming_why(tmp_path) -> None:
    # It listens (a backlog of 5) and never accepts: connects complete in the kernel, nothing answers.
    command = (f"{shlex.quote(sys.executable)} -c 'import socket, sys, time; s = socket.create_server("
               "(\"127.0.0.1\", int(sys.argv[1])), backlog=5); time.sleep(120)' {port}")
    started = time.monotonic()
    result = memdiet("run", "--cmd", command, "--name", "silent", *TINY, "--runs-dir", str(tmp_path))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "silent: served nothing: none of the 20 clients of phase ramp got a response" in line
    assert "no_answer" in line or "connect_timeout" in line
    assert time.monotonic() - started < 60  # the ramp stalled and ended: no client waited out every timeout
    run = only_run(tmp_path)
    assert run.status == "incomplete"
    assert still_there_pid_free(run)


def still_there_pid_free(run) -> bool:
    from .test_subjects import gone, tree_pids

    return all(gone(pid) for pid in tree_pids(run.path))


def test_http_server_with_its_backlog_of_5_at_c_100_completes_with_the_causes(tmp_path) -> None:
    """The standard library's http.server: HTTP/1.0 (it closes each connection), a listen backlog of 5.
    Issue #25's run failed ("only 0 of 100 clients were held (37 client errors: timeout 37)")."""
    result = memdiet("run", "--cmd", f"{shlex.quote(sys.executable)} -m http.server {{port}} --bind 127.0.0.1",
                     "--connections", "100", "--idle", "0.3", "--load", "0.5", "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    run = only_run(tmp_path)
    assert run.status == "complete" and run.layout == "http.server"
    held = run.document["held"]
    assert held["held"] == 0 and "not_held" in held
    outcomes = held["outcomes"]
    # Each client either got its response and then the server's close, or never got an answer.
    assert outcomes["closed_announced"]["count"] >= 5
    assert sum(entry["count"] for entry in outcomes.values()) == 100
    assert run.summary.get("rss_bytes_per_held_connection") is None and run.summary["req_per_s"] > 0
    assert run.document["load"]["load"]["fresh_connections"]
    assert "held none of the 100 clients" in result.stderr
    assert still_there_pid_free(run)
