"""Latency recording: a fixed-size log-linear histogram (HdrHistogram-like)."""

from __future__ import annotations

import math
from array import array
from typing import Sequence


class LatencyHistogram:
    """Latencies in a fixed-size log-linear histogram (like HdrHistogram): exact to the microsecond
    below 2,048 us, then within 1/1,024 (0.1 %) of the value, up to about 19 hours. Its memory
    (~220 KB) does not grow with the number of requests."""

    _EXACT = 2048  # microseconds recorded exactly; also 2 x the sub-buckets per power of two
    _SUB_BITS = 10
    _MAX_SHIFT = 25
    _SIZE = ((_MAX_SHIFT + 1) << _SUB_BITS) + _EXACT

    __slots__ = ("counts", "count", "min_s", "max_s")

    def __init__(self) -> None:
        self.counts = array("Q", bytes(8 * self._SIZE))
        #: Latencies recorded.
        self.count = 0
        #: Smallest and largest latency recorded, in seconds (exact).
        self.min_s = math.inf
        self.max_s = 0.0

    def record(self, seconds: float) -> None:
        """Record one latency, in seconds."""
        micros = int(seconds * 1e6)
        if micros < 2048:
            index = micros if micros > 0 else 0
        else:
            shift = micros.bit_length() - 11
            index = (shift << 10) + (micros >> shift)
            if index >= self._SIZE:
                index = self._SIZE - 1
        self.counts[index] += 1
        self.count += 1
        if seconds > self.max_s:
            self.max_s = seconds
        if seconds < self.min_s:
            self.min_s = seconds

    @classmethod
    def _bucket_middle_us(cls, index: int) -> float:
        if index < cls._EXACT:
            return index + 0.5
        shift = (index >> cls._SUB_BITS) - 1
        mantissa = index - (shift << cls._SUB_BITS)
        return (mantissa + 0.5) * (1 << shift)

    def percentiles_ms(self, quantiles: Sequence[float]) -> list[float | None]:
        """The latency (ms) at each quantile (0..1, ascending): the middle of the bucket holding the
        ``ceil(q * count)``-th smallest latency, kept within the exact min and max. None when empty."""
        if not self.count:
            return [None] * len(quantiles)
        ranks = [max(1, math.ceil(q * self.count)) for q in quantiles]
        values: list[float | None] = []
        seen = 0
        wanted = 0
        for index, bucket in enumerate(self.counts):
            if not bucket:
                continue
            seen += bucket
            while wanted < len(ranks) and seen >= ranks[wanted]:
                middle_s = self._bucket_middle_us(index) / 1e6
                values.append(min(max(middle_s, self.min_s), self.max_s) * 1000)
                wanted += 1
            if wanted == len(ranks):
                break
        return values
