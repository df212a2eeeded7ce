"""The ``rss`` probe: nothing inside the server, so its RSS and req/s are the clean figures.

Rules: it adds no tracer; the run's sampler (:mod:`.sampler`) is all it measures.
"""

from __future__ import annotations

from .base import Probe
from .sampler import FULL_INFO_EVERY


class RssProbe(Probe):
    name = "rss"
    note = ("Nothing traced inside the server: RSS at the sample rate and USS/PSS every "
            f"{FULL_INFO_EVERY}th sample, read from /proc in the runner. The server runs as in "
            "production; the sampler's reads cost it no CPU of its own.")
