"""The heap graph of this process, written for analysis outside it (``experiments/owners``). The
tracemalloc sampler (``server/tracing.py``) calls it in a forked copy of the process, so that the
walk's own allocations never reach the process measured.

One file per moment (the end of idle-empty, of idle-held, or on demand): every object the garbage
collector tracks, every object they refer to (``gc.get_referents``: untracked strings, ints, bytes,
untracked tuples and dicts too, with what those refer to), each with its type, ``sys.getsizeof`` and,
where tracemalloc traces it, the line that allocated it; and the roots: the modules in ``sys.modules``
(what a running function alone refers to is found by the reader: nothing in the graph refers to it).

Rules: standard library only (this file is loaded by path into programs that were not edited for it,
as ``server/tracing.py`` is); the probe's own objects are never part of the graph: the list
``gc.get_objects()`` returns and the objects the caller names (its sampler, thread, buffers) are left
out, with the modules whose name begins ``_memdiet_``;
the walk keeps the heap it adds small and gives it all back before it returns (one list of the
tracked objects, one chunk of records at a time, and a set of the untracked objects that more than
one object refers to: a set of every untracked object seen, whose ints tracemalloc traces one by one,
left nofd's RSS 8 MiB higher after its first graph at 65,536 slots, and none at all made the walk
write each shared string at each reference, 2.4 times the records and 2.4 to 4 times the time), so
the next phase starts on the heap it would have had. An untracked object with one referrer may still
be written twice (the reader keeps one).

The format (version 1), all integers little-endian: the magic ``MDHGRAF1``; then chunks, each a
4-byte length and that many bytes of zlib-compressed unsigned 64-bit words, a chunk of length 0
ending them; then a 4-byte length and a JSON trailer (``version``, ``pid``, ``python``, ``nodes``,
``edges``, ``types``, ``sites``, ``roots``, ``seconds``, ...). The words are records, one per object:
``address, type index, size, site index + 1 (0: unknown), flags (1: tracked by gc, 2: an instance
of a Python class with an instance ``__dict__``, bits 16-31 its referent count), n, n referent
addresses`` (``None``, ``True``, ``False``, ``...`` and ``NotImplemented`` are not written). Addresses are ``id()``: numeric ids the reader renumbers. An untracked object referred to
from several places may appear more than once; the reader keeps the first. The file is written under
a temporary name and renamed when complete.
"""

from __future__ import annotations

import _thread
import gc
import json
import os
import sys
import time
import tracemalloc
import zlib
from array import array
from collections.abc import Iterable
from typing import Any

MAGIC = b"MDHGRAF1"
VERSION = 1
#: Flag bit: the object is tracked by the garbage collector.
TRACKED = 1
#: Words per chunk before it is compressed and written: 512 KiB of words in the heap at a time.
CHUNK_WORDS = 1 << 16
#: Flag bit: an instance of a class defined in Python with an instance ``__dict__`` (a ``__slots__``
#: candidate); bits 16 to 31 hold how many referents it has (attribute values and its type, capped).
HAS_DICT = 2
#: Type flags: Py_TPFLAGS_HAVE_GC (an untracked object of such a type, a tuple of ints, can still
#: refer to others) and Py_TPFLAGS_HEAPTYPE (a class made by a class statement).
GC_TYPE = 1 << 14
HEAP_TYPE = 1 << 9
#: References the walk itself holds to an object it is about to write.
WALK_REFERENCES = 3
#: Module names of the probe's own modules (the bootstrap loads them under these private names).
PROBE_MODULE_PREFIX = "_memdiet_"


def write_graph(path: str, exclude: Iterable[Any] = (), note: dict[str, Any] | None = None,
                collect: bool = True, own_thread: bool = False) -> dict[str, Any]:
    """Write this process's heap graph to ``path`` (see the module docstring); ``exclude`` are the
    caller's own objects, left out with everything the walk itself holds. ``collect``: a full
    collection first (a forked copy skips it: the finalizers of garbage are its parent's to run).
    Returns the trailer.

    ``own_thread``: the walk runs in a thread of its own (``_thread``, no ``threading`` frames), so that
    tracemalloc, which records the call stack of each object the walk allocates, finds two short
    frames of this module above it, never the caller's (the sampler's loop is long, and its line is
    looked up at each allocation: see :func:`_index_lines`). For the forked copy: the thread's state
    (360 B) is freed a moment after the thread ends, so a heap measured in the same process right
    after the walk may or may not hold it."""
    if not own_thread:
        if tracemalloc.is_tracing():
            _index_lines()
        return _walk(path, exclude, note, collect)
    done = _thread.allocate_lock()
    done.acquire()
    # [arguments..., the lock, the thread's end (released once its state is gone), the outcome]
    box: list[Any] = [path, tuple(exclude), note, collect, done, None, None]
    _thread.start_new_thread(_walk_in_thread, (box,))
    done.acquire()
    ended = box[5]
    if ended is not None:  # wait until the thread's own state is freed too: it is no heap of the caller's
        ended.acquire()
    outcome = box[6]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _walk_in_thread(box: list[Any]) -> None:
    path, exclude, note, collect, done = box[:5]
    # CPython's lock released when this thread's state is deleted (threading.Thread.join waits on it).
    set_sentinel = getattr(_thread, "_set_sentinel", None)
    box[5] = set_sentinel() if set_sentinel is not None else None
    try:
        if tracemalloc.is_tracing():
            _index_lines()
        box[6] = _walk(path, (*exclude, box), note, collect)
    except BaseException as error:  # raised again in the caller's thread
        box[6] = error
    finally:
        path = exclude = note = None
        done.release()


def _walk(path: str, exclude: Iterable[Any], note: dict[str, Any] | None, collect: bool) -> dict[str, Any]:
    started = time.monotonic()
    if collect:
        gc.collect()
    objects = gc.get_objects()
    skipped = {id(objects)}
    for item in exclude:  # the caller's objects, and what their attributes hold (read as referents:
        skipped.add(id(item))  # item.__dict__ would make the dict of an instance that has none yet)
        skipped.update(id(value) for value in gc.get_referents(item) if gc.is_tracked(value) and not isinstance(value, type))
    for name, module in list(sys.modules.items()):
        if name.startswith(PROBE_MODULE_PREFIX):
            skipped.add(id(module))
            skipped.add(id(getattr(module, "__dict__", None)))
    # The threads' frames are not asked for (sys._current_frames, f_back): that would make a frame
    # object for every running function, kept as long as it runs, heap the next phase would count.
    # What only a running function refers to is a root all the same: nothing in the graph refers to it.
    roots_modules = [id(module) for name, module in list(sys.modules.items())
                     if module is not None and not name.startswith(PROBE_MODULE_PREFIX)]
    types: dict[type, int] = {}
    sites: dict[tuple[str, int], int] = {}
    tracing = tracemalloc.is_tracing()
    temp = path + ".tmp"
    words = array("Q")
    counts = [0, 0]  # nodes, edges
    singletons = {id(None), id(True), id(False), id(Ellipsis), id(NotImplemented)}
    handle = open(temp, "wb")
    # No collection while the walk runs: it would traverse every object again, over and over, as
    # the walk's own small lists come and go (and could free what the walk is about to visit).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        handle.write(MAGIC)

        # One loop, names bound locally: it runs once per object (hundreds of thousands at the full scale).
        get_referents, is_tracked, getsizeof = gc.get_referents, gc.is_tracked, sys.getsizeof
        # The raw frames, most recent first (what tracemalloc.get_object_traceback wraps in a
        # Traceback and its Frames: two more objects, and Python calls, per object).
        get_frames = getattr(tracemalloc, "_get_object_traceback", None)
        get_traceback = tracemalloc.get_object_traceback
        left_out = skipped | singletons
        extend, getrefcount = words.extend, sys.getrefcount
        seen_shared: set[int] = set()
        flag_bits, dict_flag = TRACKED, HAS_DICT
        pending: list[Any] = []
        for obj in objects:
            if id(obj) in skipped:
                continue
            pending.append(obj)
            while pending:
                obj = pending.pop()
                flags = flag_bits if is_tracked(obj) else 0
                # An untracked object is written once if others refer to it too (an interned name, a
                # shared tuple): more than one referrer besides the walk's three (its list of the
                # parent's referents, this name, getrefcount's argument).
                if not flags and getrefcount(obj) > WALK_REFERENCES + 1:
                    if id(obj) in seen_shared:
                        continue
                    seen_shared.add(id(obj))
                kind = type(obj)
                index = types.get(kind)
                if index is None:
                    index = types[kind] = len(types)
                try:
                    size = getsizeof(obj)
                except Exception:  # a type whose __sizeof__ fails: its size unknown, not the walk's end
                    size = 0
                site = 0
                if tracing:
                    if get_frames is not None:
                        frames = get_frames(obj)
                        key = frames[0] if frames else None
                    else:
                        traceback = get_traceback(obj)
                        key = (traceback[-1].filename, traceback[-1].lineno) if traceback is not None else None
                    if key is not None:  # the most recent frame's (filename, line)
                        site = sites.get(key)
                        if site is None:
                            site = sites[key] = len(sites)
                        site += 1
                if flags or kind.__flags__ & GC_TYPE:
                    try:
                        referents = get_referents(obj)
                    except Exception:
                        referents = []
                else:
                    referents = []
                if flags and kind.__dictoffset__ and kind.__flags__ & HEAP_TYPE:
                    # Read from the referents, never from obj.__dict__, which would make the dict it names.
                    flags |= dict_flag | (min(len(referents), 0xFFFF) << 16)
                ids = [id(ref) for ref in referents]
                if not left_out.isdisjoint(ids):
                    kept = [(ref, ident) for ref, ident in zip(referents, ids) if ident not in left_out]
                    referents, ids = [ref for ref, _ in kept], [ident for _, ident in kept]
                extend((id(obj), index, size, site, flags, len(ids)))
                extend(ids)
                counts[0] += 1
                counts[1] += len(ids)
                if len(words) >= CHUNK_WORDS:
                    data = zlib.compress(words.tobytes(), 1)
                    handle.write(len(data).to_bytes(4, "little"))
                    handle.write(data)
                    del words[:]
                pending.extend(ref for ref in referents if not is_tracked(ref))
            obj = None
        if words:
            data = zlib.compress(words.tobytes(), 1)
            handle.write(len(data).to_bytes(4, "little"))
            handle.write(data)
        handle.write((0).to_bytes(4, "little"))
        trailer = {
            "version": VERSION, "pid": os.getpid(), "python": sys.version.split()[0],
            "nodes": counts[0], "edges": counts[1],
            "types": [f"{kind.__module__}.{kind.__qualname__}" for kind in types],
            "sites": [f"{filename}:{lineno}" for filename, lineno in sites],
            "roots": {"modules": roots_modules, "frames": []},
            "tracing": tracing, "seconds": round(time.monotonic() - started, 3), **(note or {}),
        }
        data = json.dumps(trailer).encode()
        handle.write(len(data).to_bytes(4, "little"))
        handle.write(data)
    finally:
        handle.close()
        if was_enabled:
            gc.enable()
    os.replace(temp, path)
    # Gives back what the walk made: the list of objects, the set, the tables (and the free lists'
    # spare blocks, as the tracemalloc sampler does after its own work).
    del objects, words, types, sites, seen_shared
    gc.collect()
    return trailer


def _index_lines() -> None:
    """Make CPython 3.11 index the walk's line numbers before it runs. Under tracemalloc each object the
    walk allocates (an int for each ``id()``, its lists) is traced with the line that allocated it,
    and 3.11 finds that line by scanning the function's location table from its start, unless the code
    object has its line array, which it makes when a function starts while a profile function is set.
    The walk is long: without the array the walk of nofd's table at 65,536 slots took 13.1 s, with it
    3.0 s (0.8 s untraced). So a profile function is set until :func:`_walk` and the comprehensions
    inside it have each started once (or a few thousand calls have passed), then removed. Elsewhere
    (other versions, no such array) it costs those few calls and changes nothing."""
    codes = {_walk.__code__, *(const for const in _walk.__code__.co_consts if hasattr(const, "co_code"))}
    calls = [0]

    def hook(frame: Any, event: str, arg: Any) -> None:
        calls[0] += 1
        codes.discard(frame.f_code)
        if not codes or calls[0] > 10_000:
            sys.setprofile(None)

    sys.setprofile(hook)


#: The file through which the runner asks for a heap graph: its content names the graph
#: (``snapshots/NAME.graph``), a new name each time; beside ``dump-requests`` for an injected program.
GRAPH_REQUESTS = "graph-requests"
#: True while a sampler forks the copy that writes a heap graph (read by the bootstrap's at-fork hook,
#: which starts no sampler in that copy).
forking = False


def graph_name(raw: bytes) -> str | None:
    """The graph name a request file holds, or None unless it is 1 to 40 letters, digits, ``-``, ``_``."""
    name = raw.decode("ascii", "replace").strip()
    if 0 < len(name) <= 40 and all(c.isalnum() or c in "-_" for c in name) and name.isascii():
        return name
    return None


def graph_sampler(base: type) -> type:
    """``server.tracing.TracemallocSampler`` (``base``, however that module was loaded) that also writes
    heap graphs: ``snapshots/NAME.graph`` each time the runner writes a new NAME into
    ``graph-requests``, looked at every sample. Only a run with ``--heap-graph`` makes one, so without it
    the subject runs server/tracing.py as it is, and loads nothing of this module.

    The graph is written by a forked copy (:meth:`_graph`). It appears (is renamed into place) only
    after the sampler's next detailed snapshot: the runner starts the next phase when the graph is
    there, so a snapshot that came due during the walk is taken between the phases, never in the
    next phase's first moments (the ramp, after idle-empty: its transient objects among the new
    connections' left nofd's pymalloc with 1.9 MB more empty pools at idle-held)."""
    # server/tracing.py's own helpers, from its namespace (the bootstrap loads it by path, into no
    # sys.modules entry).
    tracing = base.__init__.__globals__
    transient_fd, write_atomic = tracing["transient_fd"], tracing["_write_atomic"]

    class GraphSampler(base):  # type: ignore[misc, valid-type]
        def __init__(self, out_dir: Any, **options: Any) -> None:
            super().__init__(out_dir, **options)
            requests = options.get("dump_request_file")
            # Beside dump-requests (an injected program's processes share it), else in out_dir.
            folder = os.path.dirname(requests) if requests else str(self.out_dir)
            self.graph_request_file = os.path.join(folder, GRAPH_REQUESTS)
            self._graph_mtime_ns = 0
            self._graph_last: str | None = None
            self._graph_pending: tuple[str, str] | None = None
            # Loaded now, before the first phase: resource is what os.wait4 imports for the copy's
            # usage (11 KB the first time). A name already there when the sampler starts was not for it.
            import resource  # noqa: F401
            self._graph_done = self._graph_requested()

        def _sample(self, now: float) -> None:
            super()._sample(now)
            if self._graph_pending is None:
                name = self._graph_requested()
                if name is not None and name != self._graph_done:
                    self._graph(name)

        def _detailed_snapshot(self, now: float) -> None:
            super()._detailed_snapshot(now)
            if self._graph_pending is not None:
                os.replace(*self._graph_pending)
                self._graph_pending = None

        def _graph_requested(self) -> str | None:
            """The name in ``graph-requests`` (None when there is none, or it is not a name)."""
            try:
                mtime_ns = os.stat(self.graph_request_file).st_mtime_ns
                if mtime_ns != self._graph_mtime_ns:
                    with transient_fd(self.graph_request_file, os.O_RDONLY) as fd:
                        self._graph_last = graph_name(os.read(fd, 64))
                    self._graph_mtime_ns = mtime_ns
                return self._graph_last
            except OSError:
                return None

        def _graph(self, name: str) -> None:
            """Write the graph from a forked copy of this process, the sampler's own objects left out
            of it. The copy walks its heap (a copy-on-write image of this one at this instant) and
            exits; this process allocates nothing for the walk, so none of its figures (heap, RSS, the
            allocators', tracemalloc's own) holds it. ``NAME.cost.json`` beside it: the copy's peak RSS
            and the seconds it took."""
            global forking
            self._graph_done = name
            path = os.path.join(self._snapshots_dir, name + ".graph")
            started = time.monotonic()
            forking = True
            try:
                child = os.fork()
            finally:
                forking = False
            if child == 0:  # the copy: walk, write, leave at once (no atexit, no buffered file of ours flushed twice)
                status = 1
                try:
                    write_graph(path + ".child", collect=False, own_thread=True,
                                exclude=(self, self._thread, self._wake, self._stop, self._heap, self._sites,
                                         self._sites_writer))
                    status = 0
                finally:
                    os._exit(status)
            _pid, status, usage = os.wait4(child, 0)
            cost = {"seconds": round(time.monotonic() - started, 3), "copy_max_rss_bytes": usage.ru_maxrss * 1024,
                    "exit_status": os.waitstatus_to_exitcode(status)}
            write_atomic(os.path.join(self._snapshots_dir, name + ".cost.json"), json.dumps(cost).encode())
            if cost["exit_status"] == 0:
                self._graph_pending = (path + ".child", path)

    GraphSampler.__name__ = GraphSampler.__qualname__ = "GraphSampler"
    return GraphSampler


# What the first trailer would make once and keep (the JSON encoder's small caches) is made at
# import, before the first phase, not by the first graph inside a phase.
json.dumps({"warm": [0, 1 << 40], "up": "x"})
