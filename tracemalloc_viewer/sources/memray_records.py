"""Low-level decoding of a memray capture, shared by the viewer's memray source
(:mod:`.memray_capture`) and memdiet's ``memray`` probe (``experiments.measure.probes.memray``).

- :func:`open_capture`: a ``memray.FileReader`` that reads every memory record (memray downsamples
  beyond 10,000 by default);
- :func:`memory_records`: the memory records, in order; a record's ``time`` is absolute
  (milliseconds since the epoch), its ``heap`` the bytes live;
- :func:`frames`: a record's Python stack as :class:`~tracemalloc_viewer.model.Frame` objects;
- :func:`live_spans`: which memory records each temporal allocation record's intervals are live at;
  over it, in one pass over the temporal allocation records, :func:`live_totals` (bytes and blocks
  live at every wanted record, grouped by a key of the caller's choosing: the probe's per-site
  series) and :func:`live_sites` (the sites live at a few wanted records: the viewer's samples).

Nothing here places times on a clock, adds memray's high-water mark or chooses what a site is: each
caller does that.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Callable, Hashable, Iterable, Iterator, Sequence, TypeVar

from ..model import Frame, Site, merge_sites

#: Read every memory record (FileReader downsamples beyond 10,000 by default).
MAX_MEMORY_RECORDS = 10_000_000

K = TypeVar("K", bound=Hashable)


def open_capture(path: Path | str):
    """A ``memray.FileReader`` on ``path`` that keeps every memory record (close it when done)."""
    from memray import FileReader  # imported here: a heavy import, and only memray captures need it

    return FileReader(str(path), max_memory_records=MAX_MEMORY_RECORDS)


def memory_records(reader) -> list:
    """Every memory record of the capture, in order (``time``: ms since the epoch, ``heap``: bytes)."""
    return list(reader.get_memory_snapshots())


def frames(record) -> tuple[Frame, ...]:
    """The record's Python frames, most recent call first (the order tracemalloc gives raw frames)."""
    # memray gives (function, file, line) tuples.
    return tuple(Frame(filename, lineno, function) for function, filename, lineno in record.stack_trace())


def live_spans(records: Iterable, indices: Sequence[int]) -> Iterator[tuple[object, list[tuple[int, int, int, int]]]]:
    """Each record with its intervals as ``(start, end, n_bytes, n_allocations)``: live at the
    positions ``start .. end-1`` of ``indices`` (sorted memory-record indices, or high-water-mark
    indices for the high-water-mark records).

    A temporal record's interval says its ``n_bytes`` (``n_allocations`` blocks) were allocated before
    index ``a`` and freed before index ``d`` (never, when None): live at indices ``a .. d-1``, so at
    the positions from the first index ``>= a`` to the first ``>= d``, exclusive.
    """
    positions = len(indices)
    # Every index wanted (a full series): a position is the index itself, capped.
    every = isinstance(indices, range) and indices == range(positions)
    for record in records:
        spans = []
        for interval in record.intervals:
            freed = interval.deallocated_before_snapshot
            if every:
                start = min(interval.allocated_before_snapshot, positions)
                end = positions if freed is None else min(freed, positions)
            else:
                start = bisect.bisect_left(indices, interval.allocated_before_snapshot)
                end = positions if freed is None else bisect.bisect_left(indices, freed)
            spans.append((start, end, interval.n_bytes, interval.n_allocations))
        yield record, spans


def live_totals(records: Iterable, indices: Sequence[int],
                key: Callable[[object], K]) -> tuple[dict[K, list[int]], dict[K, list[int]]]:
    """Bytes and blocks live at each of ``indices``, grouped by ``key(record)``: ``(sizes, counts)``,
    for every key one value per position of ``indices``. ``key`` is called once for every record, in
    the records' order, which is also the keys' order.

    Each span (:func:`live_spans`) adds ``+n`` at its start and ``-n`` at its end to its key's
    difference array, whose running sum is the key's live bytes at every position: one pass over the
    records however long each allocation lives, and memory per key, not per allocation.
    """
    positions = len(indices)
    size_deltas: dict[K, list[int]] = {}
    count_deltas: dict[K, list[int]] = {}
    for record, spans in live_spans(records, indices):
        label = key(record)
        size_delta = size_deltas.get(label)
        if size_delta is None:
            size_delta = size_deltas[label] = [0] * (positions + 1)
            count_deltas[label] = [0] * (positions + 1)
        count_delta = count_deltas[label]
        for start, end, n_bytes, n_allocations in spans:
            size_delta[start] += n_bytes
            size_delta[end] -= n_bytes
            count_delta[start] += n_allocations
            count_delta[end] -= n_allocations
    return ({label: _running(delta, positions) for label, delta in size_deltas.items()},
            {label: _running(delta, positions) for label, delta in count_deltas.items()})


def live_sites(records: Iterable, indices: Sequence[int]) -> dict[int, tuple[Site, ...]]:
    """The sites live at each of ``indices``, keyed by index: each index's sites in the order their
    first live allocation's record comes, equal tracebacks merged (:func:`.model.merge_sites`).

    Memory and time grow with the allocations live at the wanted indices, not with every index, and
    a record's frames are decoded only if it has an allocation live at one of them.
    """
    live: dict[int, list[Site]] = {position: [] for position in range(len(indices))}
    for record, spans in live_spans(records, indices):
        record_frames = None
        for start, end, n_bytes, n_allocations in spans:
            if start >= end or (not n_bytes and not n_allocations):
                continue
            record_frames = record_frames if record_frames is not None else frames(record)
            site = Site(record_frames, n_bytes, n_allocations)
            for position in range(start, end):
                live[position].append(site)
    return {index: merge_sites(live[position]) for position, index in enumerate(indices)}


def _running(delta: list[int], positions: int) -> list[int]:
    running = 0
    values = []
    for value in delta[:positions]:
        running += value
        values.append(running)
    return values
