"""Real servers memdiet never saw before, from PyPI and Debian (``make subjects``; the ``subjects`` extra
and lighttpd from apt), each serving tests/fixtures/subjects/'s hello-world with keep-alive on, through
``memdiet run --cmd`` at C = 200: every run completes, its figure per held connection is checked
against an outside measurement this file makes itself, and the servers that hold fewer than C, or
close every connection, say so with the cause the clients saw.

The outside measurement uses none of memdiet's code: the server is started by subprocess in a
session of its own, the RSS of its process tree (VmRSS of each process found under it in /proc) is
read before and after N plain blocking sockets connect, each sends one GET and reads its response
(all connected first, then all sent, then all read: the burst memdiet's ramp gives too), and the
difference is divided by the clients whose connection is still open. Its own figure moves with the
allocator's arenas and with the order clients connect in, so the two agree within a stated tolerance.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from experiments.dataset.agreement import compare, free_space
from experiments.dataset.results import load_run

from ..fixtures import REPO
from .test_subjects import gone, tree_pids

pytestmark = pytest.mark.subjects

C = 200
PHASES = ("--idle", "0.5", "--load", "0.5")
FIXTURES = "tests/fixtures/subjects"
VENV_BIN = Path(sys.executable).parent
#: The figures agree when they differ by at most this fraction of the outside one, or this many bytes,
#: or the tree's RSS noise spread over the connections held: a server that keeps 10 clients moves its
#: RSS by its threads' arenas and stacks as much as by them (cheroot: 44 KB per held connection in
#: memdiet's run, 81 KB in the outside reading, each over the 10 it kept).
TOLERANCE = 0.35
TOLERANCE_BYTES = 3072
RSS_NOISE_BYTES = 512 * 1024


@dataclass(frozen=True)
class RealSubject:
    """A server and its hello-world command (``{port}`` its port); ``python``: traced with tracemalloc
    too; ``holds``: how many of C it keeps (None: all of them; 0: it closes every connection)."""

    name: str
    command: str
    python: bool = True
    holds: int | None = None


def _py(script: str) -> str:
    return f"{shlex.quote(sys.executable)} {FIXTURES}/{script} {{port}}"


SUBJECTS = [
    RealSubject("hypercorn", f"{VENV_BIN}/hypercorn tests.fixtures.subjects.hello:asgi --keep-alive 600 "
                           "--bind 127.0.0.1:{port}"),
    RealSubject("granian", f"{VENV_BIN}/granian --interface asgi --host 127.0.0.1 --port {{port}} "
                           "tests.fixtures.subjects.hello:asgi"),
    RealSubject("daphne", f"{VENV_BIN}/daphne -b 127.0.0.1 -p {{port}} tests.fixtures.subjects.hello:asgi"),
    RealSubject("sanic", _py("srv_sanic.py")),
    RealSubject("gunicorn-gthread", f"{VENV_BIN}/gunicorn -w 2 --worker-class gthread --threads 4 --keep-alive 600 "
                                    "-b 127.0.0.1:{port} tests.fixtures.subjects.hello:wsgi"),
    RealSubject("gunicorn-sync", f"{VENV_BIN}/gunicorn -w 2 -b 127.0.0.1:{{port}} tests.fixtures.subjects.hello:wsgi",
                holds=0),
    RealSubject("twisted", _py("srv_twisted.py")),
    RealSubject("gevent", _py("srv_gevent.py")),
    RealSubject("tornado", _py("srv_tornado.py")),
    RealSubject("flask", _py("srv_flask.py"), holds=0),
    RealSubject("cheroot", _py("srv_cheroot.py"), holds=10),
    RealSubject("waitress", _py("srv_waitress.py"), holds=100),
    RealSubject("node", f"{shutil.which('node') or 'node'} {FIXTURES}/srv_node.js {{port}}", python=False),
]


# --- the outside measurement ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tree_rss_bytes(root: int) -> int:
    """VmRSS summed over ``root`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(b")", 1)[1].split()[1]), []).append(int(name))
    tree, total = [root], 0
    for pid in tree:
        tree.extend(children.get(pid, ()))
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def settled_rss(root: int) -> int:
    samples = []
    for _ in range(5):
        samples.append(tree_rss_bytes(root))
        time.sleep(0.1)
    return int(statistics.median(samples))


def outside_bytes_per_held(command: str, clients: int = C, port: int | None = None) -> tuple[float | None, int]:
    """(RSS growth per held connection, connections held) of ``command`` measured with plain sockets;
    ``port``: where it listens when its command has no ``{port}``."""
    port = port or free_port()
    argv = [word.replace("{port}", str(port)) for word in shlex.split(command)]
    server = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    sockets: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, f"{argv} did not listen"
                time.sleep(0.1)
        time.sleep(2.0)  # workers started, imports done
        before = settled_rss(server.pid)
        request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        for _ in range(clients):
            try:
                sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                pass
        for client in sockets:
            try:
                client.sendall(request)
            except OSError:
                pass
        answered = read_responses(sockets, deadline_s=5.0)
        time.sleep(0.5)
        held = [client for client in answered if _still_open(client)]
        after = settled_rss(server.pid)
        return ((after - before) / len(held) if held else None), len(held)
    finally:
        for client in sockets:
            client.close()
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.wait(10)


def read_responses(sockets: list[socket.socket], deadline_s: float) -> list[socket.socket]:
    """The sockets whose hello-world response arrived within ``deadline_s`` seconds in all (a server
    that keeps a few clients leaves the others unanswered: they must not cost a timeout each)."""
    pending = {client: b"" for client in sockets}
    answered = []
    deadline = time.monotonic() + deadline_s
    while pending and (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select(list(pending), [], [], min(left, 0.5))
        for client in readable:
            try:
                chunk = client.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                del pending[client]
                continue
            pending[client] += chunk
            if b"Hello, World!" in pending[client]:
                del pending[client]
                answered.append(client)
    return answered


def _still_open(client: socket.socket) -> bool:
    client.setblocking(False)
    try:
        return client.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        client.setblocking(True)


# --- memdiet's runs ---------------------------------------------------------------------------------
def memdiet_run(tmp_path: Path, command: str, probe: str, *extra: str) -> tuple[subprocess.CompletedProcess, object]:
    runs = tmp_path / probe
    result = subprocess.run([sys.executable, "-m", "experiments", "run", "--cmd", command, "--probe", probe,
                             "--connections", str(C), *PHASES, *extra, "--runs-dir", str(runs)],
                            cwd=REPO, capture_output=True, text=True, timeout=240)
    folders = [path for path in runs.iterdir() if path.is_dir()] if runs.exists() else []
    return result, (load_run(folders[0]) if len(folders) == 1 else None)


def agree(mine: float, outside: float, held: int = C) -> bool:
    return abs(mine - outside) <= max(TOLERANCE * abs(outside), TOLERANCE_BYTES, RSS_NOISE_BYTES / max(held, 1))


@pytest.mark.parametrize("subject", SUBJECTS, ids=[subject.name for subject in SUBJECTS])
def test_a_real_subject_completes_and_its_figure_per_held_connection_agrees_from_outside(tmp_path,
                                                                                          subject: RealSubject) -> None:
    result, run = memdiet_run(tmp_path, subject.command, "rss")
    assert result.returncode == 0, result.stderr
    assert run.status == "complete"
    assert all(gone(pid) for pid in tree_pids(run.path)), "a process of the subject outlived memdiet"
    held = run.document.get("held")
    figures = {"subject": subject.name, "probe": "rss", "held": held["held"] if held else C,
               "rss_bytes_per_held_connection": run.summary.get("rss_bytes_per_held_connection")}
    if subject.holds is None:
        assert held is None, held["text"]
    else:
        # A cap, not an exact count: cheroot kept 10 of 200 in one run and 18 in another (its threads
        # plus what its connection manager kept when the ramp's clients came in), always far short of C.
        assert held is not None and held["held"] <= max(subject.holds, 0) * 2 + 2 and held["held"] < C, held
        assert held["text"] in run.document["warnings"] and held["text"][:40] in result.stderr.replace("\n", " ")
        figures["why"] = held["text"]
    if subject.holds == 0:
        # It closes every connection: no figure per held connection; the load phase still measured.
        assert run.summary.get("rss_bytes_per_held_connection") is None
        assert run.document["load"]["load"]["fresh_connections"] and run.summary["req_per_s"] > 0
        assert held["outcomes"]["closed_announced"]["count"] >= C * 0.9
    elif held is not None and held["held"] == 0:
        # A capped server may keep none to the end of idle-held: cheroot closes an idle keep-alive connection
        # after 10 s, and a ramp slowed by its listen backlog of 5 took longer than that in one fresh-clone CI
        # run (15 closed "10.4 s after" their response). Then no figure is printed, and the reason is given.
        assert run.summary.get("rss_bytes_per_held_connection") is None
        assert "held none" in run.document["not_measured"]["rss_bytes_per_held_connection"]
    else:
        outside, outside_held = outside_bytes_per_held(subject.command)
        figures.update(outside_bytes_per_held_connection=outside, outside_held=outside_held)
        mine = run.summary["rss_bytes_per_held_connection"]
        assert outside is not None and agree(mine, outside, min(figures["held"], outside_held)), figures
        if subject.python:
            # One frame per traceback: the heap's total is the same, the run a third as long (daphne:
            # 45 s to its first detailed snapshot with 8 frames, 11 s with 1, on a loaded machine).
            result, traced = memdiet_run(tmp_path, subject.command, "tracemalloc", "--frames", "1")
            assert result.returncode == 0, result.stderr
            assert traced.status == "complete"
            heap = traced.summary.get("heap_bytes_per_held_connection")
            figures["tracemalloc_heap_bytes_per_held_connection"] = heap
            figures["tracemalloc_held"] = (traced.document.get("held") or {}).get("text")
            figures["tracemalloc_warnings"] = traced.document.get("warnings")
            # The heap the held clients cost lies inside the RSS they cost (less thread stacks, the
            # allocator's rounding and what was resident already), never a multiple of it.
            assert heap is not None and 0 < heap <= 2 * outside + TOLERANCE_BYTES, figures
            RUNS[subject.name] = (traced.document, run.document)
    print("FIGURES " + json.dumps(figures))


# --- traced against untraced ------------------------------------------------------------------------
#: Each Python subject's (tracemalloc run, rss run) documents, kept by the test above for the one below.
RUNS: dict[str, tuple[dict, dict]] = {}
#: Subjects whose traced heap and untraced RSS per held connection differ by more than AGREE with the
#: difference accounted for by neither ledger, as measured (C = 200, --frames 1); the check is expected to
#: fail for them (strict: it fails the suite once it passes, so this is kept true).
UNEXPLAINED: dict[str, str] = {}
TRACED = [subject for subject in SUBJECTS if subject.python and subject.holds is None]


@pytest.mark.parametrize("subject", [
    pytest.param(subject, marks=pytest.mark.xfail(strict=True, reason=UNEXPLAINED[subject.name]))
    if subject.name in UNEXPLAINED else subject for subject in TRACED], ids=[subject.name for subject in TRACED])
def test_traced_and_untraced_figures_per_held_connection_agree_or_a_ledger_explains_why(tmp_path, subject) -> None:
    """The tracemalloc run's heap per held connection against the rss run's RSS per held connection of
    the test above (run again here when it did not keep them): within 15%; or else an ``allocators`` run
    (no tracer, the allocators' figures at the phase ends) whose memory in use agrees with the heap and
    whose ledger splits the rest of its RSS (compared there with that run's own RSS per held connection:
    daphne's moves from 7 to 13 KB between identical untraced runs, with the free space its ramp leaves); or the traced run's result.json
    says what RSS holds beside the heap (``heap_beside_rss``) and with it they agree."""
    if subject.name not in RUNS:
        result, run = memdiet_run(tmp_path, subject.command, "rss")
        assert result.returncode == 0, result.stderr
        result, traced = memdiet_run(tmp_path, subject.command, "tracemalloc", "--frames", "1")
        assert result.returncode == 0, result.stderr
        RUNS[subject.name] = (traced.document, run.document)
    traced_document, untraced_document = RUNS[subject.name]
    verdict = compare(traced_document, untraced_document)
    if not verdict["agrees"]:
        assert traced_document.get("heap_beside_rss"), "the traced run does not say what RSS holds beside the heap"
    if not verdict["agrees"] and not verdict["explained"]:
        result, allocators = memdiet_run(tmp_path, subject.command, "allocators")
        assert result.returncode == 0, result.stderr
        print("AGREEMENT " + json.dumps({"subject": subject.name, "against": "rss", **verdict}))
        verdict = compare(traced_document, allocators.document)
        verdict["allocators"] = free_space(allocators.document)
    print("AGREEMENT " + json.dumps({"subject": subject.name, **verdict}))
    assert verdict["agrees"] or verdict["explained"], verdict["text"]


# --- lighttpd (Debian's), in the foreground and as the daemon it is by default -----------------------
LIGHTTPD_CONFIG = """\
server.document-root = "{root}/www"
server.bind = "127.0.0.1"
server.port = {port}
server.pid-file = "{root}/lighttpd.pid"
server.errorlog = "{root}/error.log"
server.max-keep-alive-idle = 3600
server.max-keep-alive-requests = 1000000
server.max-connections = 4096
server.max-fds = 8192
index-file.names = ("index.html")
"""


def lighttpd_command(root: Path, daemon: bool) -> tuple[str, int]:
    binary = shutil.which("lighttpd") or "/usr/sbin/lighttpd"
    assert Path(binary).exists(), "lighttpd is not installed (make system-deps)"
    (root / "www").mkdir(parents=True, exist_ok=True)
    (root / "www" / "index.html").write_text("Hello, World!")
    port = free_port()
    (root / "lighttpd.conf").write_text(LIGHTTPD_CONFIG.format(root=root, port=port))
    return f"{binary}{'' if daemon else ' -D'} -f {root / 'lighttpd.conf'}", port


def test_lighttpd_in_the_foreground_agrees_from_outside(tmp_path) -> None:
    command, _port = lighttpd_command(tmp_path / "conf", daemon=False)
    result, run = memdiet_run(tmp_path, command, "rss")
    assert result.returncode == 0, result.stderr
    assert run.status == "complete" and run.document.get("held") is None
    # The outside measurement needs the port free again: a new configuration, a new port.
    command, port = lighttpd_command(tmp_path / "outside", daemon=False)
    outside, held = outside_bytes_per_held(command, port=port)
    mine = run.summary["rss_bytes_per_held_connection"]
    figures = {"subject": "lighttpd", "probe": "rss", "rss_bytes_per_held_connection": mine,
               "outside_bytes_per_held_connection": outside, "outside_held": held}
    assert held == C and agree(mine, outside), figures
    print("FIGURES " + json.dumps(figures))


def test_lighttpd_daemonizing_is_followed_measured_and_stopped(tmp_path) -> None:
    command, _port = lighttpd_command(tmp_path / "conf", daemon=True)
    result, run = memdiet_run(tmp_path, command, "rss")
    assert result.returncode == 0, result.stderr
    assert run.status == "complete" and run.document.get("held") is None
    daemon = run.document["daemon"]
    assert daemon["started_exit_code"] == 0 and daemon["pid"] != daemon["started_pid"]
    assert run.summary["rss_bytes_per_held_connection"] > 0
    # Nothing of it is left: the pid in its pid file runs no more, and nothing listens on its port.
    port = run.document["listening"]["port"]
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout.strip()
    assert listening == ""
    assert not Path(f"/proc/{daemon['pid']}").exists() or \
        Path(f"/proc/{daemon['pid']}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z"


def test_waitress_at_c_100_completes_and_divides_by_what_it_held(tmp_path) -> None:
    """waitress's defaults (connection_limit 100, 4 threads): issue #25's run held 98 of 100 and failed."""
    runs = tmp_path / "runs"
    result = subprocess.run([sys.executable, "-m", "experiments", "run", "--cmd", _py("srv_waitress.py"),
                             "--connections", "100", *PHASES, "--runs-dir", str(runs)],
                            cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    (folder,) = list(runs.iterdir())
    run = load_run(folder)
    assert run.status == "complete"
    held = (run.document.get("held") or {}).get("held", 100)
    assert 90 <= held <= 100
    summary = run.summary
    assert summary["rss_bytes_per_held_connection"] == pytest.approx(
        (summary["held_rss_bytes"] - summary["idle_rss_bytes"]) / held)
    print("FIGURES " + json.dumps({"subject": "waitress", "connections": 100, "held": held,
                                   "rss_bytes_per_held_connection": summary["rss_bytes_per_held_connection"],
                                   "why": (run.document.get("held") or {}).get("text")}))
