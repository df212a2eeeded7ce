"""Small synthetic run folders, schema-valid, written with experiments.results' own writers.

For unit tests of everything that reads results (renderers, report): no server is started. The
memory model is made up but shaped like a real run: an interpreter baseline, a connection table of
``max_conns`` slots at the layout's bytes per slot, a cost per held connection, a bump under load,
the tracer's bookkeeping on top for the tracing probes. Summary metrics are computed from these
series by :func:`experiments.metrics.summarize`, as the runner does, so tests can recompute them.
"""

from __future__ import annotations

import random
from pathlib import Path

from experiments import results
from experiments.metrics import summarize
from experiments.results import Phase
from server.layouts import LAYOUTS

#: Made-up bytes per slot, close to what the layouts measure.
FAKE_BYTES_PER_SLOT = {"naive": 6105.3, "split": 128.7, "bitfields": 96.7, "nofd": 80.7, "packed": 16.0}
#: Made-up bytes per held keep-alive connection (coroutine, socket object...).
FAKE_BYTES_PER_HELD = {"naive": 2400.0, "split": 3100.0, "bitfields": 3100.0, "nofd": 3000.0, "packed": 900.0}
INTERPRETER_BYTES = 14 * 1024 * 1024
#: Heap the interpreter and server hold before any table (modules, code objects...).
BASE_HEAP_BYTES = 400_000.0
#: Phase lengths in seconds (short: the files stay small).
PHASE_SECONDS = {"idle-empty": 1.0, "ramp": 0.4, "idle-held": 1.0, "load": 1.2, "drain": 0.3, "idle-after": 1.0}
SAMPLE_HZ = 25
DETAILED_EVERY_S = 0.5
FAKE_ENVIRONMENT = {
    "commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False, "python": "3.11.7",
    "python_implementation": "CPython", "memray": "1.11.0", "psutil": "5.9.8", "cpu_model": "Fake CPU @ 2.0GHz",
    "cpu_count": 2, "memory_total_bytes": 8 * 1024 ** 3, "kernel": "6.1.0-fake", "machine": "x86_64",
    "rlimit_nofile": {"soft": 1024, "hard": 1048576},
}


def _phases(start_s: float = 0.3) -> list[Phase]:
    phases, t = [], start_s
    for name in results.PHASES:
        phases.append(Phase(name, round(t, 3), round(t + PHASE_SECONDS[name], 3)))
        t += PHASE_SECONDS[name]
    return phases


def _held_fraction(t: float, phases: list[Phase]) -> tuple[float, float]:
    """(fraction of the C connections open at ``t``, extra load factor at ``t``)."""
    by_name = {p.name: p for p in phases}
    ramp, load, drain = by_name["ramp"], by_name["load"], by_name["drain"]
    if t < ramp.start_s:
        return 0.0, 0.0
    if t < ramp.end_s:
        return (t - ramp.start_s) / ramp.duration_s, 0.0
    if t < load.start_s:
        return 1.0, 0.0
    if t < load.end_s:
        return 1.0, 1.0
    if t < drain.end_s:
        return 1.0 - (t - drain.start_s) / drain.duration_s, 0.0
    return 0.0, 0.0


def _sites(layout: str, table: float, held: float, active: float) -> list[tuple[str, float, int]]:
    """(site, bytes, count) of a detailed snapshot: the table's sites, per-connection sites, a tail."""
    module = f"/work/main/server/layouts/{layout}.py"
    if layout == "packed":
        table_sites = [(f"{module}:43 (__init__)", table)]
    elif layout == "naive":
        table_sites = [(f"{module}:44 (__init__)", table * 0.68), (f"{module}:63 (__init__)", table * 0.26),
                       (f"{module}:58 (__init__)", table * 0.03), ("/work/main/server/layouts/_slots.py:30 (__init__)", table * 0.03)]
    else:
        table_sites = [("/work/main/server/layouts/_slots.py:30 (__init__)", table)]
    connection_sites = [("/work/main/server/loop.py:97 (_accept)", held * 0.55),
                        ("/work/main/server/connection.py:41 (serve)", held * 0.45 + active * 0.7),
                        ("/work/main/server/http.py:120 (parse_head)", active * 0.3)]
    tail = [(f"/usr/lib/python3.11/module{i}.py:{10 * i} (f{i})", 30_000.0 / i) for i in range(1, 13)]
    rows = [(site, size, max(1, int(size // 64))) for site, size in table_sites + connection_sites + tail if size > 0]
    # What the top sites leave (the interpreter's own heap, here 400,000 B in all), as the probes write it.
    rows.append((results.OTHER_SITE, BASE_HEAP_BYTES - sum(size for _site, size in tail), 2000))
    return rows


def write_fake_run(
    root: Path,
    layout: str,
    probe: str,
    *,
    max_conns: int = 4096,
    connections: int = 200,
    status: str = "complete",
    stamp: str = "20260101T000000Z",
    seed: int = 1,
    rss_noise_bytes: float = 60_000.0,
) -> Path:
    """Write the run folder ``root/<stamp>-<layout>-<probe>/`` and return its path.

    ``probe`` is ``rss`` (rss.csv only), ``tracemalloc`` (plus heap.csv, sites.csv and a massif.out
    file) or ``memray`` (plus heap.csv, sites.csv and a flamegraph.html). An ``incomplete`` run
    stops after the ramp, as an interrupted run does. Each RSS sample carries up to
    ``rss_noise_bytes`` of seeded noise; with 0, every figure follows by hand from the constants
    above (tests/test_render.py works its expected figures out that way).
    """
    rng = random.Random(f"{seed}-{layout}-{probe}")
    folder = Path(root) / f"{stamp}-{layout}-{probe}"
    model_phases = _phases()
    # An interrupted run recorded only the phases it reached.
    phases = model_phases[:2] if status == "incomplete" else model_phases
    end_s = phases[-1].end_s
    table = FAKE_BYTES_PER_SLOT[layout] * max_conns
    tracing = probe in ("tracemalloc", "memray")

    rss_rows, heap_rows, site_rows = [], [], []
    peak_heap = 0.0
    next_detailed = 0.0
    for i in range(int(end_s * SAMPLE_HZ) + 1):
        t = i / SAMPLE_HZ
        held_fraction, load_factor = _held_fraction(t, model_phases)
        held = held_fraction * connections * FAKE_BYTES_PER_HELD[layout]
        active = load_factor * connections * 1500.0 * (1 + 0.3 * rng.random())
        heap = BASE_HEAP_BYTES + table + held + active
        tracer = 0.35 * heap if probe == "tracemalloc" else (2_000_000.0 if probe == "memray" else 0.0)
        rss = INTERPRETER_BYTES + heap * 1.05 + tracer + rng.uniform(0, rss_noise_bytes)
        rss_rows.append((round(t, 4), int(rss), int(rss * 0.8), int(rss * 0.85)))
        if tracing:
            peak_heap = max(peak_heap, heap)
            heap_rows.append((round(t, 4), int(heap), int(peak_heap), int(tracer)))
            if t >= next_detailed:
                site_rows += [(round(t, 4), site, int(size), count) for site, size, count in _sites(layout, table, held, active)]
                next_detailed += DETAILED_EVERY_S

    rss = results.Series({c: [float(v) for v in column] for c, column in zip(results.RSS_COLUMNS, zip(*rss_rows))})
    heap = results.Series({c: [float(v) for v in column] for c, column in zip(results.HEAP_COLUMNS, zip(*heap_rows))}) if tracing else None
    parameters = {"layout": layout, "probe": probe, "max_conns": max_conns, "connections": connections,
                  "idle_s": PHASE_SECONDS["idle-empty"], "load_s": PHASE_SECONDS["load"], "sample_hz": SAMPLE_HZ}
    load = None
    if status == "complete":
        requests = int(2000 * (1 + rng.random()))
        load = {"ramp": {"error_count": 0},
                "load": {"requests": requests, "req_per_s": requests / PHASE_SECONDS["load"],
                         "latency_p50_ms": 1.5 + rng.random(), "latency_p99_ms": 6 + rng.random(), "error_count": 0},
                "drain": {"error_count": 0}}
    table_info = {"c_bytes_per_slot": LAYOUTS[layout].c_bytes_per_slot()}
    if tracing:
        table_info["table_heap_bytes"] = int(table)
    summary = summarize(phases, rss, heap, load, parameters, table_info)

    files = {"rss": results.RSS_FILE}
    results.write_csv(folder / results.RSS_FILE, results.RSS_COLUMNS, rss_rows)
    if tracing:
        files.update(heap=results.HEAP_FILE, sites=results.SITES_FILE)
        results.write_csv(folder / results.HEAP_FILE, results.HEAP_COLUMNS, heap_rows)
        results.write_csv(folder / results.SITES_FILE, results.SITES_COLUMNS, site_rows)
    if probe == "memray":
        files["flamegraph"] = "flamegraph.html"
        results.write_atomic(folder / "flamegraph.html", "<html><body>fake flame graph</body></html>\n")
    if probe == "tracemalloc":
        files["massif"] = "massif.out"
        results.write_atomic(folder / "massif.out", "desc: (none)\ncmd: fake\ntime_unit: ms\n")
    document = {
        "schema": results.SCHEMA,
        "status": status,
        "layout": layout,
        "probe": probe,
        "parameters": parameters,
        "phases": [{"name": p.name, "start_s": p.start_s, "end_s": p.end_s} for p in phases],
        "summary": summary,
        "load": load or {},
        "probe_notes": {"traces": probe, "slowdown": "made up"},
        "environment": FAKE_ENVIRONMENT,
        "files": files,
    }
    results.write_json(folder / results.RESULT_FILE, document)
    return folder


def write_fake_matrix(root: Path, layouts=tuple(LAYOUTS), probes=("rss", "tracemalloc"), **kwargs) -> list[Path]:
    """One complete fake run per layout and probe, under ``root``."""
    return [write_fake_run(root, layout, probe, **kwargs) for layout in layouts for probe in probes]
