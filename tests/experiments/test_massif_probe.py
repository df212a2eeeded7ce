"""The massif probe end to end, real valgrind each time: nginx started by ``--cmd`` (a native program
that is not memdiet's, a master and two workers), and memdiet's nofd server beside a tracemalloc run
of the same scenario (experiments/render/probe_crosscheck.py).

Oracles: nginx keeps one connection pool (``connection_pool_size``, set to 1,024 B here) per idle
keep-alive connection and nothing else, so massif must find exactly 1,024 B per held connection;
ms_print reads the massif.out files the probe moved into the run folder and gives the heap the run's
curve must hold; each phase-end snapshot must land, on the run's clock, between its phase's end and
the next phase's start; and tracemalloc, an independent probe, must agree with massif on what a held
connection adds to the nofd server's heap. Runs are tiny (20 or 50 clients, phases of 0.1 s, which
massif's stretch makes 1 s).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.dataset.results import PHASES, load_run
from experiments.measure.probes.massif import MASSIF_DIR, TIME_STRETCH
from experiments.measure.subjects import free_loopback_port
from experiments.render.probe_crosscheck import crosscheck, crosscheck_markdown
from tests.fixtures.viewer_support import ms_print

from ..conftest import MEMDIET_TIMEOUT_S, memdiet
from ..fixtures import REPO

TINY = ("--idle", "0.1", "--load", "0.1")
#: Bytes nginx keeps per idle keep-alive connection: its connection pool, set in the config below.
CONNECTION_POOL_B = 1024
NGINX_CONF = """\
{user}daemon off;
master_process on;
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp;
    keepalive_timeout 3600s;
    connection_pool_size {pool};
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type text/plain; return 200 "Hello, World!"; }}
    }}
}}
"""


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.access(f"/usr/sbin/{tool}", os.X_OK) else None)
    if path is None:
        pytest.skip(f"{tool} is not installed (apt-get install {package})")
    return path


def _heap_rows(path: Path) -> list[tuple[float, int]]:
    with open(path, newline="") as handle:
        return [(float(row[0]), int(row[1])) for row in list(csv.reader(handle))[1:]]


def _ms_print_useful(path: Path) -> list[int]:
    """The useful-heap column of ms_print's snapshot table."""
    printed = ms_print(path)
    assert printed.returncode == 0, printed.stderr
    rows = re.findall(r"^ *[0-9]+ +[0-9,]+ +[0-9,]+ +([0-9,]+) +[0-9,]+ +[0-9,]+$", printed.stdout, re.MULTILINE)
    return [int(value.replace(",", "")) for value in rows]


def _assert_phase_end_snapshots_in_place(run) -> None:
    """Each phase-end snapshot, on the run's clock, lies after its phase ended and before the next began:
    the clock offset the probe measured is right to the snapshot's own duration."""
    ends = run.document["files"]["massif_phase_ends"]
    phases = run.phases
    assert [p.name for p in phases] == list(PHASES) and set(ends) == set(PHASES)
    for phase, following in zip(phases, phases[1:] + [None]):
        taken = ends[phase.name]["time_s"]
        assert phase.end_s - 0.02 <= taken, (phase.name, taken, phase.end_s)
        if following is not None:
            assert taken <= following.start_s + 0.02, (phase.name, taken, following.start_s)


def test_nginx_by_cmd_under_massif(tmp_path):
    nginx = _need("nginx", "nginx-light")
    _need("valgrind", "valgrind")
    prefix = tmp_path / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    # As root, nginx's workers would run as nobody, which vgdb cannot reach (see probes/massif.py): keep
    # them root, so that every process has its phase-end snapshot. As anyone else the directive is moot.
    user = "user root;\n" if os.geteuid() == 0 else ""
    config = prefix / "nginx.conf"
    config.write_text(NGINX_CONF.format(user=user, prefix=prefix, port=free_loopback_port(), pool=CONNECTION_POOL_B))
    result = memdiet("run", "--cmd", f"{nginx} -p {prefix} -c {config} -e {prefix}/error.log", "--probe", "massif",
                     "--connections", "20", *TINY, "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr[-3000:]
    [folder] = (tmp_path / "runs").iterdir()
    run = load_run(folder)
    assert run.status == "complete" and run.probe == "massif"
    assert run.document["server_command"][1:4] == ["--tool=massif", "--time-unit=ms", "--trace-children=yes"]
    assert run.document["subject"]["environment"]["PYTHONMALLOC"] == "malloc"

    # Three processes, one massif.out each, the workers forked from the master.
    processes = run.document["traced_processes"]
    assert [p["began"] for p in processes] == ["start", "fork", "fork"]
    master = processes[0]["pid"]
    assert all(p["ppid"] == master for p in processes[1:])
    assert run.document["files"]["massif"] == sorted(f"{MASSIF_DIR}/massif.out.{p['pid']}" for p in processes)
    every_file = sorted((folder / MASSIF_DIR).glob("massif.out.*"))
    assert len(every_file) == 3 + 3 * len(PHASES)  # each process's own, and its snapshot at every phase end

    # The oracle: one connection pool per held connection, found in the phase-end snapshots.
    assert run.summary["heap_bytes_per_held_connection"] == CONNECTION_POOL_B
    held = run.document["held_connection_sites"]
    assert held["heap_bytes"] == 20 * CONNECTION_POOL_B and "(ngx_memalign)" in held["sites"][0][0]
    _assert_phase_end_snapshots_in_place(run)
    phase_ends = run.document["files"]["massif_phase_ends"]
    for phase, figures in phase_ends.items():
        assert figures["processes"] == 3 and run.document["phase_end_heap_bytes"][phase] == figures["heap_bytes"]
        assert 0 < figures["heap_extra_bytes"] < figures["heap_bytes"]
    # A phase-end heap is the sum of its three files' (ms_print reads each one's single snapshot).
    held_end = phase_ends["idle-held"]
    assert sum(_ms_print_useful(folder / name)[0] for name in held_end["files"]) == held_end["heap_bytes"]

    # Each process's series is its own file's snapshots (ms_print's figures), the inherited ones left out.
    for process in processes:
        rows = _heap_rows(folder / process["files"]["heap"])
        useful = _ms_print_useful(folder / MASSIF_DIR / f"massif.out.{process['pid']}")
        phase_end_heaps = set(process["phase_end_heap_bytes"].values())
        assert {heap for _time, heap in rows} <= set(useful) | phase_end_heaps
        if process["began"] == "fork":
            assert len(rows) < len(useful) + len(PHASES)  # its parent's snapshots before the fork are not its own
    # The run's heap is their sum: at a phase end, exactly the three phase-end snapshots.
    summed = dict(_heap_rows(folder / "heap.csv"))
    assert run.document["phase_end_heap_bytes"]["idle-held"] in summed.values()

    # Nothing of vgdb is left behind (tests/viewer/test_massif_read.py reads several processes' files).
    assert not list(folder.rglob("vgdb-pipe*"))
    assert not [name for name in os.listdir("/tmp") if re.search(rf"vgdb-pipe-.*-{master}-by-", name)]


def test_nofd_massif_beside_tracemalloc(tmp_path):
    _need("valgrind", "valgrind")
    # --frames 1, as the study's tracemalloc runs: 8 frames cost 7x the CPU per request (the probe's note).
    common = ("--layout", "nofd", "--max-conns", "4096", "--connections", "50", *TINY, "--frames", "1",
              "--runs-dir", str(tmp_path))
    # Both at once (each its own server, port and folder): the tracemalloc run takes no longer than
    # massif's start-up, and the heap figures compared do not depend on the CPU either run gets.
    started = [subprocess.Popen([sys.executable, "-m", "experiments", "run", *common, "--probe", probe], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for probe in ("massif", "tracemalloc")]
    for process in started:
        _stdout, stderr = process.communicate(timeout=MEMDIET_TIMEOUT_S)
        assert process.returncode == 0, stderr[-3000:]
    runs = {load_run(folder).probe: load_run(folder) for folder in tmp_path.iterdir()}
    massif, traced = runs["massif"], runs["tracemalloc"]
    assert massif.status == "complete"
    # Phases stretched: each idle phase lasted TIME_STRETCH times the 0.1 s asked for.
    idle = next(p for p in massif.phases if p.name == "idle-empty")
    assert idle.duration_s == pytest.approx(0.1 * TIME_STRETCH, abs=0.3)
    _assert_phase_end_snapshots_in_place(massif)
    assert massif.summary["cpu_us_per_request"] > traced.summary["cpu_us_per_request"]

    # The run's curve is massif's: its largest heap is the largest useful heap ms_print reads in the file.
    main = massif.path / massif.document["files"]["massif"][0]
    heaps = [heap for _time, heap in _heap_rows(massif.path / "heap.csv")]
    assert max(heaps) == max(_ms_print_useful(main))

    check = crosscheck(traced, massif)
    assert check is not None and [row.phase for row in check.phases] == list(PHASES)
    # massif sees more (the interpreter's start-up, C mallocs): a baseline, the same at every phase end ...
    assert check.baseline_bytes > 1_000_000 and check.difference_spread_bytes < 0.02 * check.baseline_bytes
    # ... and what a held connection adds, the two independent probes agree on (within 10%: ~50 B).
    tracemalloc_held, massif_held = check.held_per_connection()
    # nofd's coroutine parks in one frame since the connection generator was split: ~250-290 B.
    assert 150 < tracemalloc_held < 2000 and massif_held == pytest.approx(tracemalloc_held, rel=0.10)
    assert all(row.massif_extra_bytes and row.massif_extra_bytes > 0 for row in check.phases)
    text = "\n".join(crosscheck_markdown([check]))
    assert "### nofd: massif's heap beside tracemalloc's" in text and "| idle-held |" in text
    assert "What a held connection adds agrees" in text
