"""Source: a series of ``tracemalloc.Snapshot.dump()`` files.

Each dump becomes one sample whose sites are its traces grouped by traceback: the whole traceback
the dump holds (as many frames as ``tracemalloc.start(N)`` kept, most recent first), so the massif
trees and ``top``/``diff --frames`` show the callers; a note says how many frames the dumps kept. A
sample's time is taken, in ``auto`` mode, from the first of these that is available for every dump:

1. a JSON sidecar next to the dump, ``DUMP.json`` or ``DUMP`` with its suffix replaced by ``.json``,
   holding ``{"time_s": <seconds on any clock>}`` (and optionally ``"cmd": "<what was run>"``);
2. the dump file's modification time, unless all dumps share one;
3. the dump's position in the series (``time_s`` is then the index, and outputs say so).

Samples are put in time order (a stable sort: equal times keep the command-line order) and shifted
so that the first is at 0 s. Dumps are pickles: they are loaded by :func:`load_snapshot`, which admits
only tracemalloc's own classes, so a crafted file is refused instead of running code.
"""

from __future__ import annotations

import io
import os
import pickle
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from ..pickle_bounds import PickleBoundsError, check as check_pickle_bounds
from ..errors import ViewerInputError, first_bytes
from ..model import Frame, Sample, Series, Site
from ..untrusted import (DUMP_MAX_BYTES, JSON_MAX_BYTES, SIZE_LIMIT, check_line, check_size, check_time, read_bytes,
                         read_json, regular_file, shown)

if TYPE_CHECKING:
    from .options import LoadOptions

NAME = "tracemalloc"

#: ``Snapshot.dump`` writes a pickle with the highest protocol: it starts with PROTO (0x80).
_PICKLE_PROTO = b"\x80"


def claims(paths: Sequence[Path]) -> bool:
    return all(path.is_file() and first_bytes(path, 1) == _PICKLE_PROTO for path in paths)


def load(paths: Sequence[Path], options: "LoadOptions") -> Series:
    dumps = [load_dump(path) for path in paths]
    samples_by_path = [(path, sites) for path, (sites, _limit) in zip(paths, dumps)]
    times, time_source = _times(paths, options.time_mode)
    order = sorted(range(len(paths)), key=lambda index: times[index])
    origin = times[order[0]]
    samples = []
    for index in order:
        _path, sites = samples_by_path[index]
        samples.append(Sample(times[index] - origin, sum(site.size for site in sites), sites))
    command = _sidecar_command(paths) or _describe(paths)
    notes = [f"time: {_TIME_NOTES[time_source]}", stacks_note(limit for _sites, limit in dumps)]
    return Series(samples, command=command, source=NAME, time_source=time_source, notes=notes)


def stacks_note(limits: Iterable[int], what: str = "the dumps") -> str:
    """One line saying how many frames per traceback ``what`` kept (their ``traceback_limit``s)."""
    kept = sorted(set(limits))
    if not kept:
        return f"stacks: {what} hold no traceback"
    if kept[-1] == 1:
        return (f"stacks: {what} kept 1 frame per traceback (tracemalloc's default): the allocating line only, "
                f"no callers (tracemalloc.start(N), a memdiet run's --frames N, keeps N)")
    frames = f"up to {kept[0]}" if len(kept) == 1 else f"{kept[0]} to {kept[-1]} (by dump)"
    return f"stacks: {what} kept {frames} frames per traceback (tracemalloc.start(N)), the allocating line first"


#: The globals a ``Snapshot.dump`` file may name: tracemalloc's own data classes (a dump names
#: ``Snapshot`` and ``_Traces``; the others are tracemalloc's plain records). Anything else (``os.system``,
#: ``builtins.exec``, ...) is refused: a pickle runs whatever callable it names.
ALLOWED_GLOBALS = frozenset(("tracemalloc", name) for name in ("Snapshot", "_Traces", "Trace", "Traceback", "Frame"))


class RefusedGlobal(pickle.UnpicklingError):
    """A dump named a global outside :data:`ALLOWED_GLOBALS`."""


class _SnapshotUnpickler(pickle.Unpickler):
    """Loads tracemalloc's classes and plain containers (lists, tuples, dicts, strings, numbers:
    pickle builds those without naming any global) and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise RefusedGlobal(f"{module}.{name}")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("a persistent id (tracemalloc dumps have none)")


def load_snapshot(path: str | Path) -> tracemalloc.Snapshot:
    """The snapshot a ``tracemalloc.Snapshot.dump(path)`` file holds, as ``tracemalloc.Snapshot.load``
    gives it, but loading it runs no code and trusts nothing: the file must be a regular file of at
    most :data:`~..untrusted.DUMP_MAX_BYTES`; its opcodes are walked first (:mod:`..pickle_bounds`:
    memo indices, lengths, nothing after STOP); the pickle may name only tracemalloc's own classes
    (:data:`ALLOWED_GLOBALS`); and the traces must have the shape and bounds tracemalloc writes
    (:func:`_check_traces`), checked before anything is hashed.

    Raises :class:`ViewerInputError` with one line naming the file and the fault: unreadable,
    truncated, not a snapshot, a bound broken, or a global refused."""
    path = Path(path)
    data = read_bytes(path, DUMP_MAX_BYTES)
    try:
        check_pickle_bounds(data)
    except PickleBoundsError as error:
        raise ViewerInputError(f"{path}: truncated or corrupt tracemalloc snapshot, refused before loading: "
                               f"{error} (not what Snapshot.dump writes)") from None
    try:
        snapshot = _SnapshotUnpickler(io.BytesIO(data)).load()
    except RefusedGlobal as error:
        raise ViewerInputError(f"{path}: refused to load: the pickle calls {shown(str(error))}, not a tracemalloc "
                               f"class (a crafted or foreign pickle; nothing was run)") from None
    except (EOFError, pickle.UnpicklingError) as error:
        raise ViewerInputError(f"{path}: truncated or corrupt tracemalloc snapshot ({_describe_error(error)})") from None
    except Exception as error:  # unpickling garbage can raise almost anything
        raise ViewerInputError(f"{path}: not a tracemalloc snapshot ({_describe_error(error)})") from None
    if not isinstance(snapshot, tracemalloc.Snapshot):
        raise ViewerInputError(f"{path}: not a tracemalloc snapshot (it holds a {type(snapshot).__name__})")
    _check_traces(snapshot, path)
    return snapshot


#: tracemalloc keeps at most this many frames per traceback (``tracemalloc.start`` refuses more).
MAX_FRAMES = 65535


def _check_traces(snapshot: tracemalloc.Snapshot, path: Path) -> None:
    """Refuse a loaded snapshot whose fields tracemalloc's own methods (and :func:`snapshot_sites`)
    would trust: ``traceback_limit`` an integer within 0..65535; each trace a tuple (domain, size,
    frames[, total frames]) of integers within bounds; each traceback a tuple of at most 65535
    (file name, line) pairs, a ``str`` and an integer below 2**32. A traceback object shared by many
    traces is checked once (the checks stay linear in the file's size)."""
    state = vars(snapshot)
    limit = state.get("traceback_limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_FRAMES:
        raise ViewerInputError(f"{path}: not a tracemalloc snapshot (its traceback_limit is not an integer 0..{MAX_FRAMES})")
    traces = state.get("traces")
    raw = vars(traces).get("_traces") if isinstance(traces, tracemalloc._Traces) else None
    if not isinstance(raw, (list, tuple)):
        raise ViewerInputError(f"{path}: not a tracemalloc snapshot (its traces are not a list)")
    checked: set[int] = set()
    total = 0
    for index, trace in enumerate(raw):
        where = f"{path}: trace {index}"
        if not (type(trace) is tuple and 3 <= len(trace) <= 4):
            raise ViewerInputError(f"{where}: not a (domain, size, frames[, total frames]) tuple")
        check_size(trace[0], f"{where}: domain")
        total += check_size(trace[1], f"{where}: size")
        if len(trace) == 4 and trace[3] is not None:
            check_size(trace[3], f"{where}: total frames")
        frames = trace[2]
        if id(frames) in checked:
            continue
        if type(frames) is not tuple or len(frames) > MAX_FRAMES:
            raise ViewerInputError(f"{where}: its traceback is not a tuple of at most {MAX_FRAMES} frames")
        for position, frame in enumerate(frames):
            if type(frame) is not tuple or len(frame) != 2:
                raise ViewerInputError(f"{where}: frame {position} is not a (file name, line) pair")
            if type(frame[0]) is not str:
                raise ViewerInputError(f"{where}: frame {position}: the file name is of type {type(frame[0]).__name__}, "
                                       f"not a string")
            check_line(frame[1], f"{where}: frame {position}")
        checked.add(id(frames))  # the object stays alive in the snapshot, so its id is not reused
    if total >= SIZE_LIMIT:
        raise ViewerInputError(f"{path}: the traces add up to more than 2**63 bytes; not a real heap")


def load_sites(path: Path) -> tuple[Site, ...]:
    """The dump's traces grouped by traceback (all domains, as ``Snapshot.statistics`` counts them)."""
    return load_dump(path)[0]


def load_dump(path: Path) -> tuple[tuple[Site, ...], int]:
    """:func:`load_sites`, and the frames tracemalloc kept per traceback when the dump was taken (its
    ``traceback_limit``: the ``N`` of ``tracemalloc.start(N)``)."""
    snapshot = load_snapshot(path)
    return snapshot_sites(snapshot), snapshot.traceback_limit


def snapshot_sites(snapshot: tracemalloc.Snapshot) -> tuple[Site, ...]:
    """A snapshot's traces grouped by traceback: one site per distinct traceback.

    Traces are first grouped by the identity of their traceback tuple (a dump shares one object
    among the traces that had the same traceback), and each distinct object is then hashed once: a
    tuple's hash is not cached, so hashing per trace made a long shared traceback quadratic."""
    by_object: dict[int, list] = {}
    for size, raw_frames in _raw_traces(snapshot):
        entry = by_object.get(id(raw_frames))
        if entry is None:
            by_object[id(raw_frames)] = [raw_frames, size, 1]
        else:
            entry[1] += size
            entry[2] += 1
    grouped: dict[tuple, list[int]] = {}
    for raw_frames, size, count in by_object.values():
        entry = grouped.get(raw_frames)
        if entry is None:
            grouped[raw_frames] = [size, count]
        else:
            entry[0] += size
            entry[1] += count
    return tuple(
        Site(tuple(Frame(filename, lineno) for filename, lineno in raw_frames), size, count)
        for raw_frames, (size, count) in grouped.items()
    )


def _raw_traces(snapshot: tracemalloc.Snapshot):
    """(size, ((filename, lineno), ...) most recent first) per trace.

    The raw tuples (``Snapshot.traces._traces``, what ``Snapshot.statistics`` itself reads) are ten
    times faster to group than ``Trace`` objects, which matters at a million traces; the public API
    is the fallback should that attribute ever change."""
    raw = getattr(snapshot.traces, "_traces", None)
    if isinstance(raw, (list, tuple)) and (not raw or (isinstance(raw[0], tuple) and len(raw[0]) >= 3)):
        for trace in raw:
            yield trace[1], trace[2]
        return
    for trace in snapshot.traces:
        # A Traceback iterates oldest frame first; sites keep the most recent first.
        yield trace.size, tuple((frame.filename, frame.lineno) for frame in reversed(trace.traceback))


# --- times ---------------------------------------------------------------------------------------
_TIME_NOTES = {
    "sidecar": "from the JSON sidecar files (time_s)",
    "mtime": "from the dump files' modification times",
    "index": "none recorded; x is the snapshot index",
}


def _times(paths: Sequence[Path], mode: str) -> tuple[list[float], str]:
    if mode in ("auto", "sidecar"):
        sidecars = [_sidecar(path) for path in paths]
        if all(sidecar is not None for sidecar in sidecars):
            return [_sidecar_time(sidecar) for sidecar in sidecars], "sidecar"
        if mode == "sidecar":
            missing = next(path for path, sidecar in zip(paths, sidecars) if sidecar is None)
            raise ViewerInputError(f"{missing}: no sidecar {missing}.json (--time sidecar)")
    if mode in ("auto", "mtime"):
        mtimes = [os.stat(path).st_mtime_ns / 1e9 for path in paths]
        if mode == "mtime" or len(set(mtimes)) > 1:
            return mtimes, "mtime"
    return [float(index) for index in range(len(paths))], "index"


def _sidecar(path: Path) -> Path | None:
    for candidate in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if candidate != path and candidate.is_file():
            return candidate
    return None


def _read_sidecar(sidecar: Path) -> dict:
    document = read_json(sidecar, JSON_MAX_BYTES)
    if not isinstance(document, dict):
        raise ViewerInputError(f"{sidecar}: sidecar must be a JSON object")
    return document


def _sidecar_time(sidecar: Path) -> float:
    value = _read_sidecar(sidecar).get("time_s")
    if value is None:
        raise ViewerInputError(f"{sidecar}: sidecar needs a number \"time_s\" (seconds)")
    return check_time(value, f"{sidecar}: time_s")


def _sidecar_command(paths: Sequence[Path]) -> str | None:
    sidecar = _sidecar(paths[0])
    if sidecar is None:
        return None
    command = _read_sidecar(sidecar).get("cmd")
    return command if isinstance(command, str) and command else None


# --- helpers -------------------------------------------------------------------------------------
def _describe(paths: Sequence[Path]) -> str:
    if len(paths) == 1:
        return f"tracemalloc dump {paths[0]}"
    return f"tracemalloc dumps {paths[0]} .. {paths[-1]} ({len(paths)} files)"


def _describe_error(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
