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

import json
import os
import pickle
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from ..errors import ViewerInputError, first_bytes
from ..model import Frame, Sample, Series, Site

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
    gives it, but loading it runs no code: the pickle may name only tracemalloc's own classes
    (:data:`ALLOWED_GLOBALS`), and the traces must have the shape tracemalloc writes.

    Raises :class:`ViewerInputError` with one line naming the file and the fault: unreadable,
    truncated, not a snapshot, or a global refused (the dump is not what ``Snapshot.dump`` writes)."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            snapshot = _SnapshotUnpickler(file).load()
    except OSError as error:
        raise ViewerInputError(f"{path}: cannot read ({error.strerror or error})") from None
    except RefusedGlobal as error:
        raise ViewerInputError(f"{path}: refused to load: the pickle calls {error}, not a tracemalloc class "
                               f"(a crafted or foreign pickle; nothing was run)") from None
    except (EOFError, pickle.UnpicklingError) as error:
        raise ViewerInputError(f"{path}: truncated or corrupt tracemalloc snapshot ({_describe_error(error)})") from None
    except Exception as error:  # unpickling garbage can raise almost anything
        raise ViewerInputError(f"{path}: not a tracemalloc snapshot ({_describe_error(error)})") from None
    if not isinstance(snapshot, tracemalloc.Snapshot):
        raise ViewerInputError(f"{path}: not a tracemalloc snapshot (it holds a {type(snapshot).__name__})")
    problem = _shape_problem(snapshot)
    if problem:
        raise ViewerInputError(f"{path}: not a tracemalloc snapshot ({problem})")
    return snapshot


def _shape_problem(snapshot: tracemalloc.Snapshot) -> str | None:
    """What is wrong with a loaded snapshot's fields, or None: tracemalloc's own methods trust them."""
    state = vars(snapshot)
    if not isinstance(state.get("traceback_limit"), int):
        return "its traceback_limit is not an integer"
    traces = state.get("traces")
    raw = vars(traces).get("_traces") if isinstance(traces, tracemalloc._Traces) else None
    if not isinstance(raw, (list, tuple)):
        return "its traces are not a list"
    for trace in raw:
        if not (isinstance(trace, tuple) and len(trace) >= 3 and isinstance(trace[0], int)
                and isinstance(trace[1], int) and isinstance(trace[2], tuple)):
            return "a trace is not (domain, size, frames, ...)"
    return None


def load_sites(path: Path) -> tuple[Site, ...]:
    """The dump's traces grouped by traceback (all domains, as ``Snapshot.statistics`` counts them)."""
    return load_dump(path)[0]


def load_dump(path: Path) -> tuple[tuple[Site, ...], int]:
    """:func:`load_sites`, and the frames tracemalloc kept per traceback when the dump was taken (its
    ``traceback_limit``: the ``N`` of ``tracemalloc.start(N)``)."""
    snapshot = load_snapshot(path)
    try:
        return snapshot_sites(snapshot), snapshot.traceback_limit
    except (TypeError, ValueError) as error:  # a frame that is not (filename, lineno)
        raise ViewerInputError(f"{path}: not a tracemalloc snapshot ({_describe_error(error)})") from None


def snapshot_sites(snapshot: tracemalloc.Snapshot) -> tuple[Site, ...]:
    """A snapshot's traces grouped by traceback: one site per distinct traceback."""
    grouped: dict[tuple, list[int]] = {}
    for size, raw_frames in _raw_traces(snapshot):
        entry = grouped.get(raw_frames)
        if entry is None:
            grouped[raw_frames] = [size, 1]
        else:
            entry[0] += size
            entry[1] += 1
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
    try:
        document = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ViewerInputError(f"{sidecar}: unreadable sidecar ({_describe_error(error)})") from None
    if not isinstance(document, dict):
        raise ViewerInputError(f"{sidecar}: sidecar must be a JSON object")
    return document


def _sidecar_time(sidecar: Path) -> float:
    value = _read_sidecar(sidecar).get("time_s")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ViewerInputError(f"{sidecar}: sidecar needs a number \"time_s\" (seconds)")
    return float(value)


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
