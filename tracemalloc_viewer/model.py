"""The viewer's data model: a series of timed heap samples, some with their allocation sites.

Every source (tracemalloc dumps, memray captures, ...) turns its input into a :class:`Series`;
every output (top, diff, timeline, chart, massif) reads only a :class:`Series` or a sample's sites.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


@dataclass(frozen=True)
class Frame:
    """One frame of an allocation traceback.

    ``filename`` and ``lineno`` as the tracer recorded them. ``function`` is the function name when
    the tracer knows it (memray does, tracemalloc does not: outputs look it up in the source, see
    :mod:`tracemalloc_viewer.names`). ``lineno`` is 0 for a whole-file key (``--by filename``).
    """

    filename: str
    lineno: int
    function: str | None = None


@dataclass(frozen=True)
class Site:
    """Live allocations sharing one traceback at one sample.

    ``frames``: the traceback, most recent call first (the allocating line is ``frames[0]``);
    ``size``: bytes live; ``count``: memory blocks live.
    """

    frames: tuple[Frame, ...]
    size: int
    count: int


@dataclass(frozen=True)
class Sample:
    """The heap at one moment.

    ``time_s``: seconds since the first sample of the series (or the sample's index when the
    series has no clock, see :attr:`Series.time_source`). ``total_bytes``: heap bytes live.
    ``sites``: the live allocations grouped by traceback, or None when this sample has only the total.
    When present, the sites' sizes add up to ``total_bytes`` exactly (checked).
    """

    time_s: float
    total_bytes: int
    sites: tuple[Site, ...] | None = None

    def __post_init__(self) -> None:
        if self.total_bytes < 0:
            raise ValueError(f"negative heap total {self.total_bytes}")
        if self.sites is not None:
            attributed = sum(site.size for site in self.sites)
            if attributed != self.total_bytes:
                raise ValueError(
                    f"sample at {self.time_s:.3f} s: sites add up to {attributed} B, total is {self.total_bytes} B")


#: Where a series' times come from.
TIME_SOURCES = ("sidecar", "mtime", "index", "capture")


@dataclass
class Series:
    """Samples in time order, from one source.

    ``command``: what was measured (a command line, or a description of the input files).
    ``source``: the source's name (``tracemalloc``, ``memray``, ...).
    ``time_source``: ``sidecar`` (times from JSON files next to the dumps), ``mtime`` (file
    modification times), ``index`` (no clock: ``time_s`` is the sample's position), ``capture``
    (timestamps recorded in the capture itself).
    ``notes``: one-line remarks a reader should see (e.g. how a peak's time was placed).
    ``detail_recorded``: True when the source has sites only at the samples its recorder chose to
    detail (as massif chooses while it runs, e.g. a memdiet run's ``sites.csv``): those are then the
    candidates, shown as densely as :class:`Detail` asks (about one per ``every`` samples) and all
    of them when they are sparser (see :func:`detailed_indices`).
    """

    samples: list[Sample]
    command: str
    source: str
    time_source: str
    notes: list[str] = field(default_factory=list)
    detail_recorded: bool = False

    def __post_init__(self) -> None:
        if self.time_source not in TIME_SOURCES:
            raise ValueError(f"unknown time source {self.time_source!r}")
        for earlier, later in zip(self.samples, self.samples[1:]):
            if later.time_s < earlier.time_s:
                raise ValueError("samples are not in time order")

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def peak_index(self) -> int:
        """Index of the sample with the largest total (the first one on a tie)."""
        if not self.samples:
            raise ValueError("empty series has no peak")
        totals = [sample.total_bytes for sample in self.samples]
        return totals.index(max(totals))

    @property
    def peak(self) -> Sample:
        return self.samples[self.peak_index]

    @property
    def has_clock(self) -> bool:
        """False when times are only sample indices."""
        return self.time_source != "index"


@dataclass(frozen=True)
class Detail:
    """Which samples an output shows in detail (with their allocation sites), as massif does.

    ``every``: every ``every``-th sample (1 = all of them; massif's ``--detailed-freq``, default 10).
    ``at_most``: if set, the stride grows so that no more than about this many are detailed.
    The peak is always detailed. Sources compute sites for at least these samples.
    """

    every: int = 10
    at_most: int | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError("detailed frequency must be at least 1")
        if self.at_most is not None and self.at_most < 1:
            raise ValueError("at_most must be at least 1")

    def stride(self, n_samples: int) -> int:
        if self.at_most is None:
            return self.every
        return max(self.every, -(-n_samples // self.at_most))

    def wants(self, index: int, n_samples: int) -> bool:
        """True if sample ``index`` of ``n_samples`` is shown in detail (the peak aside)."""
        stride = self.stride(n_samples)
        return (index + 1) % stride == 0


#: Detail for commands that read only the peak's sites (``top``, ``diff``).
PEAK_ONLY = Detail(every=2**62)


def detailed_indices(series: Series, detail: Detail) -> list[int]:
    """Indices of the samples to show in detail: those ``detail`` wants that have sites, and the peak.

    When the recorder chose the samples with sites (:attr:`Series.detail_recorded`), every k-th of
    them is shown, k as small as keeps them at about one per ``detail``'s stride of samples: all of
    them when they are sparser than that."""
    count = len(series)
    if count == 0:
        return []
    peak = series.peak_index
    if series.detail_recorded:
        recorded = [index for index, sample in enumerate(series.samples) if sample.sites is not None]
        keep_every = max(1, -(-len(recorded) * detail.stride(count) // count))  # ceil
        return [index for position, index in enumerate(recorded)
                if index == peak or (position + 1) % keep_every == 0]
    return [
        index for index, sample in enumerate(series.samples)
        if sample.sites is not None and (index == peak or detail.wants(index, count))
    ]


def merge_sites(sites: Sequence[Site]) -> tuple[Site, ...]:
    """Sites with equal tracebacks merged into one (sizes and counts added), zero-size ones dropped."""
    merged: dict[tuple[Frame, ...], list[int]] = {}
    for site in sites:
        entry = merged.setdefault(site.frames, [0, 0])
        entry[0] += site.size
        entry[1] += site.count
    return tuple(Site(frames, size, count) for frames, (size, count) in merged.items() if size or count)
