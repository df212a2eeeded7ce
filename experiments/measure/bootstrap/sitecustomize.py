"""memdiet's bootstrap: the tracemalloc, memray or allocators probe started in a Python program that was not
edited for it. This folder is put first on the subject's PYTHONPATH; the interpreter imports
``sitecustomize`` at start-up (:mod:`site`), in every Python process of the subject's tree: the one
the runner starts, the workers it spawns, and, through :func:`os.register_at_fork`, the workers it
forks.

Rules: standard library only, and nothing at all unless ``MEMDIET_TRACE_PROBE`` is set; each process
writes into a folder of its own, ``$MEMDIET_TRACE_DIR/pid-PID/``, starting with ``process.json`` (pid,
parent pid, argv, how it began: ``start`` or ``fork``). For ``tracemalloc`` it runs memdiet's own
sampler (``server/tracing.py``, loaded from ``MEMDIET_TRACING_PY`` under a private name so the subject's
own modules are never shadowed): totals at ``MEMDIET_TRACE_HZ``, detailed snapshots every
``MEMDIET_DETAIL_INTERVAL`` seconds, and a full dump each time the runner raises the count in
``$MEMDIET_TRACE_DIR/dump-requests`` (the subject keeps its own signal handlers), and with
``MEMDIET_HEAP_GRAPH=1`` a heap graph (``server/heapgraph.py``) each time the runner writes a new name
into ``graph-requests``. For ``memray`` it
starts ``memray.Tracker`` with native frames and ``follow_fork`` (forked children write
``memray.bin.PID`` beside their parent's capture), stopped at exit. For ``allocators`` it traces nothing: a thread writes the allocators' figures
(``snapshots/NNN.alloc.json``) for each dump asked for, after a full collection. A ``sitecustomize`` that this one
shadows (Debian's, a virtualenv's) is run after it.

With ``MEMDIET_TRACE_CHECK`` set to a file, it traces nothing: it imports and starts the probe's tracer
once (into a scratch capture, stopped at once) and writes what happened to that file as JSON
(``ok``, ``executable``, ``missing``: the module that could not be imported, ``error``), so the runner can
refuse a subject whose interpreter cannot run the probe before the run (``inject.check_interpreter``).
"""

import os
import sys


def _process_dir(root: str, how: str) -> str:
    folder = os.path.join(root, f"pid-{os.getpid()}")
    os.makedirs(folder, exist_ok=True)
    import json

    with open(os.path.join(folder, "process.json"), "w") as handle:
        json.dump({"pid": os.getpid(), "ppid": os.getppid(), "argv": list(getattr(sys, "orig_argv", None) or sys.argv),
                   "began": how}, handle)
    return folder


def _requests_so_far(path: str) -> int:
    try:
        with open(path, "rb") as handle:
            return int(handle.read() or b"0")
    except (OSError, ValueError):
        return 0


def _start_tracemalloc(root: str) -> None:
    import importlib.util
    import tracemalloc

    spec = importlib.util.spec_from_file_location("_memdiet_tracing", os.environ["MEMDIET_TRACING_PY"])
    tracing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tracing)
    requests = os.path.join(root, "dump-requests")
    options = {"hz": float(os.environ.get("MEMDIET_TRACE_HZ", "50")),
               "detail_interval_s": float(os.environ.get("MEMDIET_DETAIL_INTERVAL", "2"))}
    # The probe's allocator reader (ctypes, tempfile) is loaded and warmed before tracing starts:
    # the probe's, not the program's heap.
    tracing.memstats_module().allocator_stats()
    # With MEMDIET_HEAP_GRAPH=1 (memdiet run --heap-graph) the sampler writes heap graphs too: its
    # writer (server/heapgraph.py) loaded by path, before tracing starts; without it, nothing of it.
    graphs = tracing._sibling("heapgraph") if os.environ.get("MEMDIET_HEAP_GRAPH") == "1" else None
    sampler_class = graphs.graph_sampler(tracing.TracemallocSampler) if graphs is not None else tracing.TracemallocSampler
    tracemalloc.start(int(os.environ.get("MEMDIET_TRACE_FRAMES", "1")))

    def begin(how: str) -> None:
        folder = _process_dir(root, how)
        sampler = sampler_class(folder, dump_request_file=requests,
                                first_dump_index=_requests_so_far(requests), **options)
        sampler.start()

    begin("start")
    # A forked child keeps tracemalloc's traces (its copy of the parent's heap) but not the sampler's
    # thread: it starts a sampler of its own, in its own folder.
    # The copy a sampler forks to write a heap graph is not a worker: no sampler in it.
    os.register_at_fork(after_in_child=lambda: None if graphs is not None and graphs.forking else begin("fork"))


def _start_allocators(root: str) -> None:
    """No tracer: a thread that, for each phase-end dump asked for in ``dump-requests``, runs a full
    collection and writes the allocators' figures (pymalloc's, glibc malloc's) to
    ``snapshots/NNN.alloc.json``, the file the RSS ledger reads beside a tracemalloc dump."""
    import importlib.util
    import json
    import threading

    spec = importlib.util.spec_from_file_location("_memdiet_tracing", os.environ["MEMDIET_TRACING_PY"])
    tracing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tracing)
    memstats = tracing.memstats_module()
    memstats.allocator_stats()  # ctypes and its functions loaded now, not at the first phase end
    requests = os.path.join(root, "dump-requests")

    def serve(folder: str, done: int) -> None:
        import gc
        import time

        while True:
            time.sleep(0.02)
            asked = _requests_so_far(requests)
            while done < asked:
                gc.collect()
                stats = memstats.allocator_stats()
                path = os.path.join(folder, "snapshots", f"{done:03d}.alloc.json")
                with open(path + ".tmp", "w") as handle:
                    json.dump(stats, handle)
                os.replace(path + ".tmp", path)
                done += 1

    def begin(how: str) -> None:
        folder = _process_dir(root, how)
        os.makedirs(os.path.join(folder, "snapshots"), exist_ok=True)
        threading.Thread(target=serve, args=(folder, _requests_so_far(requests)), name="memdiet-allocators",
                         daemon=True).start()
        with open(os.path.join(folder, "ready.json"), "w") as handle:
            handle.write("{}")

    begin("start")
    os.register_at_fork(after_in_child=lambda: begin("fork"))


def _start_memray(root: str) -> None:
    import atexit

    import memray

    folder = _process_dir(root, "start")
    tracker = memray.Tracker(os.path.join(folder, "memray.bin"), native_traces=True, follow_fork=True,
                             trace_python_allocators=True, memory_interval_ms=10)
    tracker.__enter__()
    atexit.register(tracker.__exit__, None, None, None)


def _check(probe: str, report: str) -> None:
    """Import and start ``probe``'s tracer once, trace nothing, and write the outcome to ``report``."""
    import json

    outcome = {"ok": False, "executable": sys.executable, "version": sys.version.split()[0], "missing": None,
               "error": None}
    try:
        if probe == "allocators":
            import importlib.util

            spec = importlib.util.spec_from_file_location("_memdiet_tracing", os.environ["MEMDIET_TRACING_PY"])
            tracing = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(tracing)
            tracing.memstats_module().allocator_stats()
        elif probe == "tracemalloc":
            import importlib.util
            import tracemalloc

            spec = importlib.util.spec_from_file_location("_memdiet_tracing", os.environ["MEMDIET_TRACING_PY"])
            tracing = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(tracing)
            tracing.memstats_module().allocator_stats()
            tracemalloc.start(1)
            tracemalloc.stop()
        elif probe == "memray":
            import tempfile

            import memray

            with tempfile.TemporaryDirectory() as scratch:
                with memray.Tracker(os.path.join(scratch, "check.bin"), native_traces=True,
                                    trace_python_allocators=True):
                    pass
        else:
            raise ValueError(f"unknown probe {probe!r}")
        outcome["ok"] = True
    except ImportError as error:  # ModuleNotFoundError included: name the module
        outcome["missing"] = getattr(error, "name", None)
        outcome["error"] = f"{type(error).__name__}: {error}"
    except Exception as error:
        outcome["error"] = f"{type(error).__name__}: {error}"
    with open(report, "w") as handle:
        json.dump(outcome, handle)


def _chain_shadowed_sitecustomize() -> None:
    """Run the ``sitecustomize`` this module hides (the next one on sys.path), as the interpreter would
    have."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    path = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


def _main() -> None:
    probe, root = os.environ.get("MEMDIET_TRACE_PROBE"), os.environ.get("MEMDIET_TRACE_DIR")
    check = os.environ.get("MEMDIET_TRACE_CHECK")
    if probe and check:
        _check(probe, check)
    elif probe and root:
        try:
            if probe == "tracemalloc":
                _start_tracemalloc(root)
            elif probe == "memray":
                _start_memray(root)
            elif probe == "allocators":
                _start_allocators(root)
        except Exception as error:  # the program runs on; the runner reports the missing series
            print(f"memdiet bootstrap: {probe} not started in pid {os.getpid()}: {error!r}", file=sys.stderr)
    _chain_shadowed_sitecustomize()


_main()
