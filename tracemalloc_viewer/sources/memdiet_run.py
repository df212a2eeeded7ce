"""Source: a memdiet run folder (``reports/runs/<time>-<layout>-<probe>/``, written by ``memdiet run``).

The folder's files are read directly: the viewer imports nothing from ``experiments``. Times are
the run's clock, seconds since the server started (the clock of the phases in ``result.json``).

- A memray run whose capture is in the folder (``memray.bin``) is read as that capture
  (:mod:`.memray_capture`): full Python tracebacks, and memray's high-water mark as the peak.
- Otherwise the curve is every row of ``heap.csv`` (``heap_bytes``: the heap seen from inside by
  tracemalloc or memray) when it has rows, else of ``rss.csv`` (``rss_bytes``: the whole process
  seen from outside, the only series of an ``rss`` run). The series' ``source`` names the file
  (``memdiet-run:heap.csv``), so the massif.out ``desc:`` line and the chart say which.
- Detailed samples are the probe's snapshots in ``sites.csv``: one sample per time, one site per
  row, one frame deep (``file:line (function)``: the probe groups by the allocating line, so the
  run's per-site series keep one key per line), with its ``(other)`` and ``(probe)`` rows as sites
  of their own, so the sites add up to the snapshot's total. The probe chose these moments, so the
  series is marked :attr:`~..model.Series.detail_recorded`.
  A detailed sample goes just before the ``heap.csv`` row taken at the same time (or replaces it,
  when both hold the same bytes).
- The full tracemalloc dumps the runner asks for at the end of each phase
  (``snapshots/NN-PHASE.tmsnap``, listed in ``result.json``) are detailed samples too, with every
  site and its whole traceback (the run's ``--frames``: ``tracemalloc.start(N)``), so these are the
  samples whose massif trees and ``top``/``diff --frames`` show callers; they are placed just after
  the first ``heap.csv`` row at or after their phase's end (the probe's sampler writes that row,
  then takes the dump). Their paths are shortened as the probe shortens them in ``sites.csv``
  (relative to the server's working directory, or after ``site-packages``, or from the standard
  library's ``pythonX.Y`` folder; every frame of a traceback alike), and the probe's own allocations (the allocating line
  in the probe's code, whoever called it) are one ``(probe)`` site as in ``sites.csv``, so a site has
  one label in every snapshot. :func:`site_samples` returns these detailed samples alone.
- The probe records sites every few seconds, so the curve's peak may have none: its sites are
  then those of the nearest detailed sample plus one ``(not attributed)`` site holding the
  difference (never negative: the peak is the largest sample), and a note says so. A curve from
  ``rss.csv`` has no sites at all: its peak holds one site for the whole process.
"""

from __future__ import annotations

import bisect
import csv
import importlib.util
import io
import os
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import ViewerInputError
from ..model import Frame, Sample, Series, Site, merge_sites
from ..names import FileKeys, chosen_names
from ..untrusted import (CSV_MAX_BYTES, LINE_LIMIT, check_inside, check_name, check_time, member, parse_size,
                         parse_time, read_json, read_text, regular_file, shown)
from .memray_capture import load as load_memray_capture
from .tracemalloc_dumps import load_dump, stacks_note

if TYPE_CHECKING:
    from .options import LoadOptions

NAME = "memdiet-run"

#: The run-folder formats this source reads (``experiments.dataset.results.SCHEMA`` and the older one that
#: named what was run ``layout``, ``SCHEMA_WITH_LAYOUT``; a test keeps them equal).
SCHEMA = "memdiet.run/2"
SCHEMA_WITH_LAYOUT = "memdiet.run/1"
READABLE_SCHEMAS = (SCHEMA_WITH_LAYOUT, SCHEMA)
RESULT_FILE = "result.json"
HEAP_FILE = "heap.csv"
RSS_FILE = "rss.csv"
SITES_FILE = "sites.csv"
MEMRAY_FILE = "memray.bin"
#: The columns read, and the one that gives each file's curve.
HEAP_COLUMNS = ("time_s", "heap_bytes")
RSS_COLUMNS = ("time_s", "rss_bytes")
SITES_COLUMNS = ("time_s", "site", "bytes", "count")

#: ``file:line (function)``, ``file:line`` or a bare label such as ``(other)``.
_SITE_LABEL = re.compile(r"^(?P<file>.*):(?P<line>\d+)(?: \((?P<function>.*)\))?$")
#: ``snapshots/NN-PHASE.tmsnap``: the dump taken at the end of phase PHASE.
_DUMP_NAME = re.compile(r"^\d+-(?P<phase>.+)\.tmsnap$")
#: Pseudo-sites: what the probe's top sites leave, and what the probe itself holds. A pseudo-site
#: is a frame with line 0 whose file is the label (``top`` and ``timeline`` show just that) and
#: whose function says what it holds (massif trees show ``0xADDR: what ((other):0)``).
OTHER_SITE = "(other)"
PROBE_SITE = "(probe)"
_PSEUDO_SITES = {
    OTHER_SITE: "sites after the probe's top ones",
    PROBE_SITE: "the tracing probe's own allocations",
}


def claims(paths: Sequence[Path]) -> bool:
    return len(paths) == 1 and _folder(paths[0]) is not None


def load(paths: Sequence[Path], options: "LoadOptions") -> Series:
    folder = _folder(paths[0])
    assert folder is not None, "load() called on paths this source does not claim"
    document = _read_result(folder)
    command = _command(document)
    notes = [f"run: {folder.name} ({subject_name(document)} layout, {document.get('probe', '?')} probe, "
             f"status {document.get('status', '?')})"]
    if not folder.name.isprintable():
        notes[0] = f"run: {ascii(folder.name)}" + notes[0][len(f"run: {folder.name}"):]
    listed = document["files"].get("memray") or MEMRAY_FILE  # a list: one capture per process, not read here
    capture = member(folder, listed, f"{folder / RESULT_FILE}: files.memray") if isinstance(listed, str) else None
    if capture is not None and os.path.lexists(capture) and importlib.util.find_spec("memray") is not None:
        regular_file(capture, inside=folder)
        return _from_capture(folder, capture, options, command, notes)
    heap = _read_curve(folder / HEAP_FILE, HEAP_COLUMNS)
    if heap:
        notes.append(_curve_note(HEAP_FILE, len(heap)))
        recorded = _read_sites(folder / SITES_FILE)
        dumps = _read_dumps(folder, document, recorded, sorted(time_s for time_s, _size in heap), notes)
        recorded = _without_dump_twins(recorded, dumps)
        if recorded or dumps:
            notes.append(f"detailed: {_count(recorded, 'snapshot')} in {SITES_FILE} (the probe's top sites, one "
                         f"frame each: the allocating line) and {_count(dumps, 'full dump')} at phase ends (every "
                         f"site with its traceback); all shown unless denser than --detailed-freq")
        else:
            notes.append(f"detailed: none ({SITES_FILE} and the phase-end dumps are missing or empty)")
        return _from_curve(heap, recorded, dumps, HEAP_FILE, command, notes)
    rss = _read_curve(folder / RSS_FILE, RSS_COLUMNS)
    if rss:
        notes.append(_curve_note(RSS_FILE, len(rss)))
        return _from_curve(rss, [], [], RSS_FILE, command, notes)
    raise ViewerInputError(f"empty series: {folder} has no samples in {HEAP_FILE} or {RSS_FILE}")


# --- the series ----------------------------------------------------------------------------------
def _from_curve(curve: list[tuple[float, int]], recorded: list[Sample], dumps: list[Sample], curve_file: str,
                command: str, notes: list[str]) -> Series:
    """The curve's samples with the detailed ones among them: ``recorded`` (sites.csv) just before
    the curve's sample of the same time, ``dumps`` just after it."""
    # A curve row equal to a recorded sample (same time, same bytes: memray's series) is that sample.
    twins = Counter((sample.time_s, sample.total_bytes) for sample in recorded)
    rows = []
    for row in curve:
        if twins[row]:
            twins[row] -= 1
        else:
            rows.append(row)
    # Sort key (time, 0 recorded / 1 curve / 2 dump): the probe takes a sites.csv snapshot just
    # after writing the heap row of its time, and so a dump (see _read_dumps); a recorded sample still
    # goes first, so that on a tie in bytes the peak is the sample that has sites.
    keyed = [((sample.time_s, 0), sample) for sample in recorded]
    keyed += [((time_s, 1), Sample(time_s, size)) for time_s, size in rows]
    keyed += [((sample.time_s, 2), sample) for sample in dumps]
    keyed.sort(key=lambda pair: pair[0])
    samples = [sample for _key, sample in keyed]
    series = Series(samples, command=command, source=f"{NAME}:{curve_file}", time_source="capture",
                    notes=notes, detail_recorded=True)
    _give_peak_sites(series, recorded + dumps, curve_file)
    return series


def _curve_note(curve_file: str, count: int) -> str:
    what = "heap bytes from inside the server" if curve_file == HEAP_FILE else "whole-process RSS from outside"
    return f"curve: every row of {curve_file} ({count} samples, {what}), seconds since the server started"


def _give_peak_sites(series: Series, detailed: list[Sample], curve_file: str) -> None:
    """Give the peak sites when it has none (see the module docstring), in place."""
    index = series.peak_index
    peak = series.samples[index]
    if peak.sites is not None:
        return
    if not detailed:
        reason = ("this probe records no allocation sites" if curve_file == RSS_FILE
                  else "no allocation sites were recorded in this run")
        whole = Frame(f"(whole {'process' if curve_file == RSS_FILE else 'heap'})", 0, f"{reason}, {curve_file}")
        series.samples[index] = replace(peak, sites=(Site((whole,), peak.total_bytes, 0),))
        series.notes.append(f"peak ({peak.time_s:.3f} s): {reason}; its tree is one node")
        return
    nearest = min(detailed, key=lambda sample: (abs(sample.time_s - peak.time_s), sample.time_s))
    rest = peak.total_bytes - nearest.total_bytes  # >= 0: the peak is the largest sample
    what = f"the peak minus the detailed sample at {nearest.time_s:.3f} s"
    extra = (Site((Frame("(not attributed)", 0, what),), rest, 0),) if rest else ()
    series.samples[index] = replace(peak, sites=tuple(nearest.sites or ()) + extra)
    series.notes.append(f"peak ({peak.time_s:.3f} s): no sites recorded there; its tree is the detailed sample "
                        f"at {nearest.time_s:.3f} s plus {rest} B not attributed")


def _from_capture(folder: Path, capture: Path, options: "LoadOptions", command: str, notes: list[str]) -> Series:
    series = load_memray_capture([capture], options)
    # memray's times start at its first memory record, which heap.csv holds on the run's clock.
    heap = _read_curve(folder / HEAP_FILE, HEAP_COLUMNS)
    offset = heap[0][0] if heap else 0.0
    samples = [replace(sample, time_s=sample.time_s + offset) for sample in series.samples]
    clock = "seconds since the server started" if heap else "seconds since the capture's first record"
    notes.append(f"curve: the memray capture {capture.name} (full Python tracebacks), {clock}")
    return Series(samples, command=command, source=f"{NAME}:{capture.name}", time_source="capture",
                  notes=notes + series.notes, detail_recorded=series.detail_recorded)


# --- reading the folder --------------------------------------------------------------------------
def _folder(path: Path) -> Path | None:
    """The run folder ``path`` names (the folder, or its result.json), or None."""
    if path.is_dir() and (path / RESULT_FILE).is_file():
        return path
    if path.name == RESULT_FILE and path.is_file():
        return path.parent
    return None


def _read_result(folder: Path) -> dict:
    """result.json, checked field by field where this source reads it (see :mod:`..untrusted`)."""
    path = folder / RESULT_FILE
    document = read_json(path, inside=folder)
    if not isinstance(document, dict):
        raise ViewerInputError(f"{path}: not a memdiet result (not a JSON object)")
    if document.get("schema") not in READABLE_SCHEMAS:
        raise ViewerInputError(f"{path}: not a memdiet result (schema {shown(document.get('schema'))}, "
                               f"expected {SCHEMA!r})")
    for key in ("layout", "probe"):
        if key in document:
            check_name(document[key], f"{path}: {key}")
    subject = document.get("subject")
    if isinstance(subject, dict) and "name" in subject:
        check_name(subject["name"], f"{path}: subject.name")
    if not isinstance(document.get("status", ""), str):
        raise ViewerInputError(f"{path}: status: expected a string")
    phases = document.get("phases") or []
    if not isinstance(phases, list):
        raise ViewerInputError(f"{path}: phases: expected a list")
    for index, phase in enumerate(phases):
        if not isinstance(phase, dict) or not isinstance(phase.get("name"), str):
            raise ViewerInputError(f"{path}: phases[{index}]: expected an object with a name")
        for key in ("start_s", "end_s"):
            if key in phase:
                check_time(phase[key], f"{path}: phases[{index}].{key}")
    files = document.setdefault("files", {})
    if not isinstance(files, dict):
        raise ViewerInputError(f"{path}: files: expected an object, got {type(files).__name__}")
    snapshots = files.get("snapshots") or []
    if not isinstance(snapshots, list):
        raise ViewerInputError(f"{path}: files.snapshots: expected a list")
    for index, name in enumerate(snapshots):
        member(folder, name, f"{path}: files.snapshots[{index}]")
    times = files.get("snapshot_times_s") or {}
    if not isinstance(times, dict):
        raise ViewerInputError(f"{path}: files.snapshot_times_s: expected an object")
    for name, value in times.items():
        check_time(value, f"{path}: files.snapshot_times_s[{shown(name)}]")
    command = document.get("server_command")
    if command is not None and not (isinstance(command, list) and all(isinstance(word, str) for word in command)):
        raise ViewerInputError(f"{path}: server_command: expected a list of strings")
    return document


def subject_name(document: dict) -> str:
    """What a run ran, from its checked result.json: ``subject.name``, or ``layout`` in the older
    format; ``?`` when it does not say."""
    if document.get("schema") == SCHEMA_WITH_LAYOUT:
        return document.get("layout", "?")
    subject = document.get("subject")
    return subject.get("name", "?") if isinstance(subject, dict) else "?"


def _command(document: dict) -> str:
    command = document.get("server_command")
    if isinstance(command, list) and command:
        return " ".join(command) if all(word.isprintable() for word in command) else ascii(command)
    return f"memdiet run --layout {subject_name(document)} --probe {document.get('probe', '?')}"


def _rows(path: Path, columns: Sequence[str]):
    """(line number, {column: text}) for each row of the CSV ``path`` (none when it is missing); the
    file must be a regular file in its run folder (no symlink), the header must start with
    ``columns`` and every row must have the header's width. An error line names the file and the
    line, and quotes none of it."""
    if not os.path.lexists(path):
        return
    text = read_text(path, CSV_MAX_BYTES, inside=path.parent)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None or tuple(header[:len(columns)]) != tuple(columns):
            raise ViewerInputError(f"{path}:1: expected the columns {','.join(columns)} (the header line is not that)")
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise ViewerInputError(f"{path}:{line}: {len(row)} fields, expected {len(header)} (truncated?)")
            yield line, dict(zip(header, row))
    except csv.Error as error:
        raise ViewerInputError(f"{path}: not a CSV file ({' '.join(str(error).split())})") from None


def _read_curve(path: Path, columns: tuple[str, str]) -> list[tuple[float, int]]:
    """(time_s, bytes) per row of ``path``, ``columns`` naming the time and the bytes."""
    time_column, bytes_column = columns
    return [(_number(path, line, row[time_column], float), _number(path, line, row[bytes_column], int))
            for line, row in _rows(path, columns)]


def _read_sites(path: Path) -> list[Sample]:
    """One sample per time in ``sites.csv``, in time order."""
    by_time: dict[float, list[Site]] = {}
    for line, row in _rows(path, SITES_COLUMNS):
        time_s = _number(path, line, row["time_s"], float)
        site = Site((_frame(row["site"]),), _number(path, line, row["bytes"], int),
                    _number(path, line, row["count"], int))
        by_time.setdefault(time_s, []).append(site)
    samples = []
    for time_s in sorted(by_time):
        sites = merge_sites(by_time[time_s])
        samples.append(Sample(time_s, sum(site.size for site in sites), sites))
    return samples


def site_samples(folder: str | Path) -> list[Sample]:
    """Every moment of a memdiet run folder that has its allocation sites, in time order: the probe's
    ``sites.csv`` snapshots and the full dumps taken at the end of each phase, on the run's clock
    (seconds since the server started), each a :class:`~..model.Sample` whose sites add up to its
    total. A sites.csv site is one frame (``file:line``, the function as sites.csv names it); a dump's
    site is its traceback, the allocating line first (as many frames as the run kept). Frames are keyed
    alike in every sample: the dumps' absolute paths take sites.csv's short form, and the probe's own
    allocations are one ``(probe)`` site in the dumps as in sites.csv; sites.csv snapshots also hold
    ``(other)`` (the sites after the probe's top ones). A renderer stacks these over the run.

    Raises :class:`ViewerInputError` when ``folder`` is not a readable run folder."""
    folder = _folder(Path(folder)) or Path(folder)
    document = _read_result(folder)
    recorded = _read_sites(folder / SITES_FILE)
    heap_times = sorted(time_s for time_s, _size in _read_curve(folder / HEAP_FILE, HEAP_COLUMNS))
    dumps = _read_dumps(folder, document, recorded, heap_times, [])
    return sorted(_without_dump_twins(recorded, dumps) + dumps, key=lambda sample: sample.time_s)


#: Seconds within which a sites.csv snapshot and a phase-end dump are the same moment.
_SAME_MOMENT_S = 1e-6


def _without_dump_twins(recorded: list[Sample], dumps: Sequence[Sample]) -> list[Sample]:
    """``recorded`` less the sites.csv snapshots the probe made from a phase-end dump (same time as
    the dump): the dump holds every site, the snapshot only the probe's top ones, so one moment is
    shown once, from the dump."""
    dump_times = sorted(sample.time_s for sample in dumps)

    def is_twin(time_s: float) -> bool:
        at = bisect.bisect_left(dump_times, time_s - _SAME_MOMENT_S)
        return at < len(dump_times) and dump_times[at] <= time_s + _SAME_MOMENT_S

    return [sample for sample in recorded if not is_twin(sample.time_s)]


def _read_dumps(folder: Path, document: dict, recorded: Sequence[Sample], heap_times: Sequence[float],
                notes: list[str]) -> list[Sample]:
    """The phase-end dumps listed in result.json, in time order (a note counts those not found).

    A dump is placed at the time result.json records for it (``files.snapshot_times_s``); a run
    that does not record it (an older one) places it at the first of the sorted ``heap_times`` at or
    after the end of its phase: the runner asks for it as the phase ends, and the probe's sampler
    writes a heap row, then dumps."""
    ends = {phase.get("name"): phase.get("end_s") for phase in document.get("phases") or [] if isinstance(phase, dict)}
    loaded: list[tuple[float, tuple[Site, ...]]] = []
    limits: list[int] = []
    listed = (document.get("files") or {}).get("snapshots") or []
    # Where the run recorded when each dump was taken (on the run's clock), that time is used.
    recorded_times = (document.get("files") or {}).get("snapshot_times_s") or {}
    for name in listed:
        path = member(folder, name, f"{folder / RESULT_FILE}: files.snapshots")
        match = _DUMP_NAME.match(path.name)
        end_s = ends.get(match["phase"]) if match else None
        if isinstance(end_s, (int, float)) and os.path.lexists(path):
            check_inside(path, folder)
            after = bisect.bisect_left(heap_times, end_s)
            time_s = heap_times[after] if after < len(heap_times) else float(end_s)
            if isinstance(recorded_times.get(str(name)), (int, float)):
                time_s = float(recorded_times[str(name)])
            sites, limit = load_dump(path)
            loaded.append((time_s, sites))
            limits.append(limit)
    if len(loaded) < len(listed):
        notes.append(f"{len(listed) - len(loaded)} of the {len(listed)} dumps listed in {RESULT_FILE} not read "
                     f"(missing, or not named after a phase)")
    if not loaded:
        return []
    notes.append(stacks_note(limits, "the phase-end dumps"))
    csv_frames = {frame for sample in recorded for site in sample.sites or () for frame in site.frames}
    dump_frames = {frame for _time_s, sites in loaded for site in sites for frame in site.frames}
    relabel = _Relabel(csv_frames, dump_frames)
    samples = []
    for time_s, sites in sorted(loaded, key=lambda pair: pair[0]):
        sites = merge_sites([relabel.site(site) for site in sites])
        samples.append(Sample(time_s, sum(site.size for site in sites), sites))
    return samples


class _Relabel:
    """Turns a dump's site (absolute paths, no function names, the probe's own allocations among the
    others) into the form sites.csv gives the same site: file names keyed as
    :class:`~..names.FileKeys` keys them against sites.csv's (relative to the server's working
    directory, or after ``site-packages``, or from the standard library's ``pythonX.Y`` folder); the
    function as sites.csv names the line, else as the source file names it now; and an allocation
    made by the probe's own code (its traceback's most recent frame in ``server/tracing.py`` or in
    tracemalloc itself, the files the probe's filters leave out of sites.csv) one ``(probe)`` site."""

    def __init__(self, csv_frames: set[Frame], dump_frames: set[Frame]) -> None:
        self.keys = FileKeys(frame.filename for frame in csv_frames | dump_frames)
        self.functions = chosen_names(dump_frames, self.keys.key)
        # sites.csv's name wins: a site keeps one label in every snapshot of the run.
        self.functions.update({(frame.filename, frame.lineno): frame.function for frame in csv_frames
                               if frame.function is not None})
        self.probe = (_frame(PROBE_SITE),)
        self.cache: dict[Frame, Frame] = {}

    def site(self, site: Site) -> Site:
        if site.frames and _is_probe_file(site.frames[0].filename):
            return Site(self.probe, site.size, site.count)
        return Site(tuple(map(self.frame, site.frames)), site.size, site.count)

    def frame(self, frame: Frame) -> Frame:
        done = self.cache.get(frame)
        if done is None:
            filename = self.keys.key(frame.filename)
            done = self.cache[frame] = Frame(filename, frame.lineno, self.functions.get((filename, frame.lineno)))
        return done


def _is_probe_file(path: str) -> bool:
    """True for the probe's own code: memdiet's ``server/tracing.py``, or the standard library's
    ``tracemalloc.py`` (``.../pythonX.Y/tracemalloc.py``)."""
    parts = path.replace("\\", "/").split("/")
    return parts[-2:] == ["server", "tracing.py"] or (
        parts[-1] == "tracemalloc.py" and len(parts) > 1 and re.match(r"^python\d+\.\d+t?$", parts[-2]) is not None)


def _count(items: Sequence, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _frame(label: str) -> Frame:
    if label in _PSEUDO_SITES:
        return Frame(label, 0, _PSEUDO_SITES[label])
    match = _SITE_LABEL.match(label)
    if match is None or len(match["line"]) > 10 or int(match["line"]) >= LINE_LIMIT:  # no line (memray's "<unknown>")
        return Frame(label, 0)
    return Frame(match["file"], int(match["line"]), match["function"])


def _number(path: Path, line: int, text: str, kind: type):
    """A CSV cell: a size (``int``: 0 <= n < 2**63) or a time (``float``: finite, >= 0)."""
    where = f"{path}:{line}"
    return parse_size(text, where) if kind is int else parse_time(text, where)
