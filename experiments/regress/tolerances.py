"""The regression check's tolerance policy: how far each summary figure may move before it fails.

Rules: a figure fails only when it moves in its worse direction by more than the larger of a
fraction of the baseline figure and an absolute floor in the metric's unit. Each number below comes
from runs measured side by side on this project's machine, and the comment beside it says which; a
new metric of :data:`experiments.dataset.metrics.METRICS` without a line here gets a loose default
by its kind (and tests/experiments/test_regress.py fails until it has its own). The policy is
written into each baseline file, so a baseline is judged by the tolerances it was made with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from ..dataset.metrics import METRICS, Metric


@dataclass(frozen=True)
class Tolerance:
    """How far a figure may move in its worse direction before it is a regression: the larger of
    ``relative`` (a fraction of the baseline figure) and ``absolute`` (in the metric's unit).
    ``why`` says where the numbers come from."""

    relative: float
    absolute: float
    why: str

    def allowed(self, baseline: float) -> float:
        """The largest change from ``baseline`` (in the metric's unit) that still holds."""
        return max(self.relative * abs(baseline), self.absolute)

    def to_json(self) -> dict[str, Any]:
        return {"relative": self.relative, "absolute": self.absolute, "why": self.why}


# Measured on this project's machine (2 cores, CPython 3.11): seven quick matrices (max_conns 8,192,
# C = 100) over half an hour, other work running beside them. Spread = (max - min) / median of a
# layout's figure, for the worst layout:
#   table_heap_bytes, bytes_per_slot 0.04%; c_bytes_per_slot 0; errors always 0;
#   idle/held heap 0.33% / 0.54% (ranges of 5.0 / 7.6 KB); after heap 3.4% and loaded-peak heap 4.3%
#     (ranges of 79 / 82 KB: the tracemalloc probe's own retained snapshot data is in the heap total,
#     and how much depends on when its last detailed snapshot fell);
#   RSS (idle, held, loaded peak, after) 0.65% (110 KB), idle USS 1.1%; tracer_bytes 0.47%;
#   per held connection: RSS 1 page / C (41 B), heap 35 B (3.5 KB in total); per active connection:
#     RSS 2 pages / C (82 B), heap 809 B (81 KB in total, the probe again);
#   req/s: the slowest run made 36% of the fastest's (a neighbour busy on the other core);
#   latency: p50 0.02-4.5 ms (bimodal), p99 4-20 ms.
# Four more matrices after the tracemalloc probe changed when it takes its first detailed snapshot
# agreed more closely (after / loaded-peak heap ranges 19 / 12 KB, req/s 77% of the fastest); the
# tolerances below keep the wider margins of the first seven.
#: Heap figures the same code reproduces: 1% is 25x the spread of table_heap_bytes and bytes_per_slot,
#: and less than one more 8-byte field per slot adds in any layout but naive: those are the precise gate.
DETERMINISTIC_RELATIVE = 0.01
#: Whole-heap totals also carry the probe's own data: a floor of twice the largest range measured
#: (after and loaded-peak heap, 79-82 KB) and, for idle and held heap, four times theirs (7.6 KB).
HEAP_PROBE_NOISE_BYTES, STEADY_HEAP_NOISE_BYTES = 160 * 1024, 32 * 1024
#: Heap figures that depend on timing (peak under load, the tracer's own bookkeeping).
TIMING_HEAP_RELATIVE = 0.05
#: RSS and USS: 10%, nine times the spread measured side by side, because CI runs on another machine
#: of the same kind (other page cache, library mappings, allocator arenas) and RSS counts the whole
#: process. A layout's own growth is caught by the heap figures, not by RSS.
RSS_RELATIVE = 0.10
#: Per-connection figures are (a figure in one phase - in another) / C, so the whole-process noise
#: lands on them divided by C: RSS moves in 4 KiB pages (measured up to 2 pages between runs, allowed
#: 4); active-connection heap carries the probe's noise (HEAP_PROBE_NOISE_BYTES). Held-connection heap
#: is the live heap at two phase ends, the probe's leftovers collected: four quick runs each of nofd,
#: split and packed (8,192 slots, C = 100) moved by at most 154 B in total (packed 4.31-5.85 B per
#: connection, nofd 517.18-518.17, split 663.16-663.85); 512 B, 3.3 times that, keeps one more 8-byte
#: field per held connection a regression at C = 100.
RSS_PAGES_NOISE_BYTES, HELD_HEAP_NOISE_BYTES = 4 * 4096, 512
#: Throughput may drop to a fifth of the baseline (the slowest run here made 36% of the fastest's);
#: a real slowdown of the loop (say an O(max_conns) scan per event) costs far more than that.
THROUGHPUT_DROP = 0.80
#: CPU time per request is throughput seen from the server's side: the mirror of THROUGHPUT_DROP, it
#: may grow to 5x the baseline (+400%) before it fails. It moves less than req/s (the load generator's
#: own limits are not in it), but a neighbour on the other core still slows every instruction.
CPU_RISE = 4.0
#: Latency on 2 shared cores is bimodal: only a rise past 11x the baseline and past 20 ms fails,
#: which is a stall (a delayed-ACK wait is 40 ms), not noise (p99 measured up to 20 ms, 5x its low).
LATENCY_RISE, LATENCY_FLOOR_MS = 10.0, 20.0

_WHY_RSS = "whole process: 0.65% (RSS) and 1.1% (USS) spread side by side; other machines differ more"
_WHY_CPU = "throughput seen from the server: only a rise to 5x fails, as only a drop to a fifth does for req/s"
_WHY_HEAP_TOTAL = "heap total: includes the probe's own data, which moved by up to 82 KB between runs"


def tolerance_policy(names: Iterable[str], connections: int) -> dict[str, Tolerance]:
    """``{metric: Tolerance}`` for ``names``, for a matrix with ``connections`` clients (C), from
    the spreads measured above."""
    per_connection = 1 / max(connections, 1)
    known = {
        "idle_rss_bytes": Tolerance(RSS_RELATIVE, 0.0, _WHY_RSS),
        "held_rss_bytes": Tolerance(RSS_RELATIVE, 0.0, _WHY_RSS),
        "loaded_peak_rss_bytes": Tolerance(RSS_RELATIVE, 0.0, _WHY_RSS),
        "after_rss_bytes": Tolerance(RSS_RELATIVE, 0.0, _WHY_RSS),
        "idle_uss_bytes": Tolerance(RSS_RELATIVE, 0.0, _WHY_RSS),
        "rss_bytes_per_held_connection": Tolerance(RSS_RELATIVE, RSS_PAGES_NOISE_BYTES * per_connection,
                                                   "RSS moves in 4 KiB pages: 4 pages / C of noise allowed"),
        "rss_bytes_per_active_connection": Tolerance(RSS_RELATIVE, RSS_PAGES_NOISE_BYTES * per_connection,
                                                     "RSS moves in 4 KiB pages: 4 pages / C of noise allowed"),
        "table_heap_bytes": Tolerance(DETERMINISTIC_RELATIVE, 0.0, "deterministic: 0.04% spread measured"),
        "bytes_per_slot": Tolerance(DETERMINISTIC_RELATIVE, 0.0, "deterministic: 0.04% spread measured"),
        "idle_heap_bytes": Tolerance(DETERMINISTIC_RELATIVE, STEADY_HEAP_NOISE_BYTES,
                                     "heap total in a steady phase: 7.6 KB largest range measured"),
        "held_heap_bytes": Tolerance(DETERMINISTIC_RELATIVE, STEADY_HEAP_NOISE_BYTES,
                                     "heap total in a steady phase: 7.6 KB largest range measured"),
        "after_heap_bytes": Tolerance(DETERMINISTIC_RELATIVE, HEAP_PROBE_NOISE_BYTES, _WHY_HEAP_TOTAL),
        "loaded_peak_heap_bytes": Tolerance(TIMING_HEAP_RELATIVE, HEAP_PROBE_NOISE_BYTES, _WHY_HEAP_TOTAL),
        "heap_bytes_per_held_connection": Tolerance(DETERMINISTIC_RELATIVE, HELD_HEAP_NOISE_BYTES * per_connection,
                                                    "live heap at two phase ends, / C: 154 B / C largest range measured"),
        "heap_bytes_per_active_connection": Tolerance(TIMING_HEAP_RELATIVE, HEAP_PROBE_NOISE_BYTES * per_connection,
                                                      "heap under load minus idle, / C: 81 KB / C measured"),
        "tracer_bytes": Tolerance(TIMING_HEAP_RELATIVE, 0.0, "tracemalloc's own memory: 0.47% spread measured"),
        "c_bytes_per_slot": Tolerance(0.0, 0.0, "ctypes.sizeof of the slot's C struct: exact"),
        "requests": Tolerance(THROUGHPUT_DROP, 0.0, "the slowest run made 36% of the fastest's: only a collapse fails"),
        "req_per_s": Tolerance(THROUGHPUT_DROP, 0.0, "the slowest run made 36% of the fastest's: only a collapse fails"),
        "errors": Tolerance(0.0, 0.0, "a loopback load test has no reason to fail a request: any error fails"),
        "cpu_us_per_request": Tolerance(CPU_RISE, 0.0, _WHY_CPU),
        "main_thread_cpu_us_per_request": Tolerance(CPU_RISE, 0.0, _WHY_CPU),
        "latency_p50_ms": Tolerance(LATENCY_RISE, LATENCY_FLOOR_MS, "bimodal on 2 shared cores: only a stall fails"),
        "latency_p99_ms": Tolerance(LATENCY_RISE, LATENCY_FLOOR_MS, "bimodal on 2 shared cores: only a stall fails"),
    }
    return {name: known.get(name) or _fallback_tolerance(METRICS.get(name)) for name in names}


def _fallback_tolerance(metric: Metric | None) -> Tolerance:
    """For a metric added to METRICS after this policy was written: by its kind, loosely."""
    if metric is not None and metric.deterministic:
        return Tolerance(DETERMINISTIC_RELATIVE, HEAP_PROBE_NOISE_BYTES if metric.unit == "bytes" else 0.0,
                         "new deterministic metric: the heap-total default")
    return Tolerance(RSS_RELATIVE if metric is None or metric.lower_is_better else THROUGHPUT_DROP, 0.0,
                     "new metric: the loose default")
