"""Source: one memray capture file (``memray run -o FILE`` or ``memray.Tracker(FILE)``).

The curve is memray's memory records (``FileReader.get_memory_snapshots()``: heap bytes every
``memory_interval_ms``), read at full resolution. Sites come from the temporal allocation records
(``get_temporal_allocation_records``): the allocations live at a memory record are those allocated
before it and not freed before it, so their sizes add up to that record's heap exactly.

memray's peak (its high-water mark, ``get_temporal_high_water_mark_allocation_records``) usually
falls between two memory records; it is then added as a sample of its own, placed at the end of the
interval in which it happened, with the sites live at that moment. Aggregated captures
(``--aggregate``) keep no history: their only sites are the peak's
(``get_high_watermark_allocation_records``), placed at the largest memory record.

memray's heap at a memory record and the allocation records live at it can differ by a few bytes
(64 B seen once in a run of 0.2 s): the sites then get one more, :data:`UNMATCHED_SITE`, holding the
difference when the heap is larger, and a sample's total becomes its sites' sum when they are
larger; a note says how often and by how much. A difference beyond :data:`MAX_UNMATCHED_BYTES` is
not memray's jitter but a damaged capture, and is refused.

Frames are memray's Python frames (function names included); native frames are not used.
memray reads a cut-off compressed capture as a shorter one without complaint, so the lz4 stream is
checked for completeness first (:mod:`.lz4_frame`). The capture is decoded by :mod:`.memray_records`,
which memdiet's memray probe shares.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import ViewerInputError, first_bytes
from ..untrusted import regular_file
from ..model import Frame, Sample, Series, Site, merge_sites
from .lz4_frame import MAGIC as LZ4_MAGIC, truncation
from .memray_records import frames, live_sites, memory_records, open_capture

if TYPE_CHECKING:
    from .options import LoadOptions

NAME = "memray"

#: The site that holds what memray's heap record counts and its live allocation records do not.
UNMATCHED_SITE = "(memray: heap record ahead of its allocation records)"
#: Largest difference taken as memray's own jitter, not a damaged capture.
MAX_UNMATCHED_BYTES = 64 * 1024

#: memray writes its header uncompressed (``memray``) or, after the tracker closes, as an lz4 frame.
_MAGICS = (b"memray", LZ4_MAGIC)


def claims(paths: Sequence[Path]) -> bool:
    return all(path.is_file() and first_bytes(path, 6).startswith(_MAGICS) for path in paths)


def load(paths: Sequence[Path], options: "LoadOptions") -> Series:
    if len(paths) != 1:
        raise ViewerInputError(f"{paths[0]}: give one memray capture at a time (got {len(paths)})")
    path = paths[0]
    regular_file(path)  # memray's reader opens it itself: no symlink, device or FIFO reaches it
    if first_bytes(path, 4) == LZ4_MAGIC:
        problem = truncation(path)
        if problem:
            raise ViewerInputError(f"{path}: truncated memray capture (its lz4 stream {problem})")
    try:
        return _load(path, options)
    except ViewerInputError:
        raise
    except Exception as error:  # memray's reader on a damaged capture raises what its C++ side throws
        text = " ".join(str(error).split())[:200]
        raise ViewerInputError(f"{path}: truncated or corrupt memray capture ({type(error).__name__}: {text})") from None


def _load(path: Path, options: "LoadOptions") -> Series:
    from memray import FileFormat  # imported here: only this source needs memray

    reader = open_capture(path)
    try:
        records = memory_records(reader)
        if not records:
            raise ViewerInputError(f"empty series: {path} holds no memory records")
        origin_ms = records[0].time
        times = [(record.time - origin_ms) / 1000 for record in records]
        heaps = [record.heap for record in records]
        notes = [f"time: memray's memory records (every {_interval_ms(records)} ms)"]
        metadata = reader.metadata
        end_s = max(times[-1], metadata.end_time.timestamp() - origin_ms / 1000)
        if metadata.file_format == FileFormat.AGGREGATED_ALLOCATIONS:
            samples = _aggregated_samples(reader, times, heaps, notes)
        else:
            samples = _temporal_samples(reader, times, heaps, end_s, options, notes)
        return Series(samples, command=metadata.command_line or str(path), source=NAME,
                      time_source="capture", notes=notes)
    finally:
        reader.close()


def _temporal_samples(reader, times: list[float], heaps: list[int], end_s: float,
                      options: "LoadOptions", notes: list[str]) -> list[Sample]:
    count = len(heaps)
    peak_records, high_water_marks = reader.get_temporal_high_water_mark_allocation_records(merge_threads=True)
    # high_water_marks[k] is the largest heap between memory records k-1 and k (k == count: after the last).
    peak_interval = max(range(len(high_water_marks)), key=high_water_marks.__getitem__)
    peak_bytes = high_water_marks[peak_interval]
    insert_peak = peak_bytes > max(heaps)
    # Detail is about positions in the final series, which gains the peak at peak_interval.
    final_count = count + insert_peak
    wanted = [index for index in range(count)
              if options.detail.wants(index + (insert_peak and index >= peak_interval), final_count)]
    if not insert_peak:
        wanted = sorted(set(wanted) | {heaps.index(max(heaps))})
    sites = live_sites(reader.get_temporal_allocation_records(merge_threads=True), wanted) if wanted else {}
    unmatched: list[int] = []
    samples = [_sample(times[index], heaps[index], sites.get(index), unmatched) for index in range(count)]
    if insert_peak:
        peak_sites = live_sites(peak_records, [peak_interval])[peak_interval]
        peak_time = times[peak_interval] if peak_interval < count else end_s
        samples.insert(peak_interval, _sample(peak_time, peak_bytes, peak_sites, unmatched))
        start = times[peak_interval - 1] if peak_interval > 0 else 0.0
        notes.append(f"peak: memray's high-water mark, reached between {start:.3f} s and {peak_time:.3f} s, "
                     f"drawn at {peak_time:.3f} s")
    if unmatched:
        notes.append(f"unmatched: at {len(unmatched)} of {len(wanted) + insert_peak} detailed samples memray's heap "
                     f"and its live allocation records differ, by {max(map(abs, unmatched))} B at most")
    return samples


def _sample(time_s: float, heap_bytes: int, sites, unmatched: list[int]) -> Sample:
    """A sample whose sites add up to its total: memray's small heap-vs-records jitter goes into
    :data:`UNMATCHED_SITE` (heap larger) or the total (records larger), and into ``unmatched``."""
    if sites is None:
        return Sample(time_s, heap_bytes)
    difference = heap_bytes - sum(site.size for site in sites)
    if difference:
        if abs(difference) > MAX_UNMATCHED_BYTES:
            raise ValueError(f"sample at {time_s:.3f} s: sites add up to {heap_bytes - difference} B, "
                             f"memray's heap is {heap_bytes} B")
        unmatched.append(difference)
        if difference > 0:
            sites = (*sites, Site((Frame("<memray>", 0, UNMATCHED_SITE),), difference, 0))
        else:
            heap_bytes -= difference
    return Sample(time_s, heap_bytes, sites)


def _aggregated_samples(reader, times: list[float], heaps: list[int], notes: list[str]) -> list[Sample]:
    peak_sites = merge_sites([
        Site(frames(record), record.size, record.n_allocations)
        for record in reader.get_high_watermark_allocation_records(merge_threads=True)
    ])
    peak_bytes = sum(site.size for site in peak_sites)
    largest = heaps.index(max(heaps))
    if peak_bytes < heaps[largest]:
        raise ViewerInputError("aggregated capture: high-water mark below the largest memory record")
    samples = [Sample(time, heap) for time, heap in zip(times, heaps)]
    samples.insert(largest + 1, Sample(times[largest], peak_bytes, peak_sites))
    notes.append("peak: aggregated capture, the high-water mark's time is unknown; drawn at the largest memory record")
    return samples


def _interval_ms(records) -> int:
    if len(records) < 2:
        return 0
    gaps = sorted(later.time - earlier.time for earlier, later in zip(records, records[1:]))
    return int(gaps[len(gaps) // 2])
