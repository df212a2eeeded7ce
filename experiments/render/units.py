"""Human-readable figures for charts and reports: sizes in B / KiB / MiB, percentages, metric values.

One function per rounding rule, each written here only. (The viewer's tables, on the same HTML page,
round sizes as tracemalloc prints them: ``tracemalloc_viewer.units.tracemalloc_bytes``, its own rule.)"""

from __future__ import annotations

from ..dataset.metrics import METRICS

KIB = 1024
MIB = 1024 * 1024

#: Metrics given per slot, always shown in bytes with one decimal (they are compared to C sizes).
PER_SLOT_METRICS = ("bytes_per_slot", "c_bytes_per_slot")

MISSING = "–"


def human_bytes(value: float | None) -> str:
    """``512 B``, ``3.2 KiB``, ``402.3 MiB``: bytes below 1 KiB, then KiB or MiB with one decimal."""
    if value is None:
        return MISSING
    magnitude = abs(value)
    if magnitude < KIB:
        return whole_bytes(value)
    if magnitude < MIB:
        return f"{value / KIB:,.1f} KiB"
    return f"{value / MIB:,.1f} MiB"


def whole_bytes(value: float | None) -> str:
    """Bytes rounded to whole bytes: ``6,105 B``, ``-12 B``."""
    return MISSING if value is None else f"{value:,.0f} B"


def slot_bytes(value: float | None) -> str:
    """Bytes per slot with one decimal: ``6,105.3 B``, ``16.0 B``."""
    return MISSING if value is None else f"{value:,.1f} B"


def exact_bytes(value: float) -> str:
    """Whole bytes when ``value`` is whole (``6,105 B``), else one decimal (``16.5 B``): a C size beside
    a Python one, a slot's parts."""
    return f"{int(value):,} B" if value == int(value) else slot_bytes(value)


def share(part: float | None, whole: float | None) -> str:
    """``part`` as a percentage of ``whole`` with one decimal (``12.5%``); ``–`` when either is
    missing or ``whole`` is 0."""
    if part is None or not whole:
        return MISSING
    return f"{100 * part / whole:.1f}%"


def percent_change(fraction_saved: float | None, decimals: int = 0) -> str:
    """A reduction as a signed change: 0.94 saved -> ``-94%``; -0.1 saved (10% more) -> ``+10%``.
    Near -100% more decimals are shown (``-99.7%``), so a change never reads as all memory gone
    when it is not."""
    if fraction_saved is None:
        return MISSING
    change = -fraction_saved * 100
    while decimals < 3 and round(abs(change), decimals) >= 100 > abs(change):
        decimals += 1
    text = f"{change:+.{decimals}f}%"
    # A change that rounds to zero is no change: no sign.
    return text[1:] if float(text[:-1]) == 0 else text


def format_in_unit(unit: str, value: float | int | None) -> str:
    """``value`` in ``unit``: ``bytes`` (B/KiB/MiB), ``req/s``, ``s``, ``ms``, ``us``, ``count``;
    any other unit as a plain number."""
    if value is None:
        return MISSING
    if unit == "bytes":
        return human_bytes(value)
    if unit == "req/s":
        return f"{value:,.0f} req/s"
    if unit == "s":
        return f"{value:,.2f} s"
    if unit == "ms":
        return f"{value:,.2f} ms"
    if unit == "us":
        return f"{value:,.1f} us"
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:,.4g}"


def format_metric(name: str, value: float | int | None) -> str:
    """``value`` of metric ``name`` in its unit, as the report's tables show it."""
    if value is None:
        return MISSING
    if name == "c_bytes_per_slot":
        return whole_bytes(value)  # a C size is whole bytes
    if name in PER_SLOT_METRICS:
        return slot_bytes(value)
    return format_in_unit(METRICS[name].unit if name in METRICS else "", value)
