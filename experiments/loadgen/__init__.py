"""A bounded asyncio HTTP/1.1 load generator for loopback servers, run in its own process.

One module per part, each importing only those above it:

- ``params``: loopback-only hosts, the one request, bounds and fd room; ``histogram``: latencies;
  ``response``: the response parser;
- ``generator``, the library: :class:`LoadGenerator` holds keep-alive connections (asyncio Protocols,
  one outstanding request per connection: keep-alive, never pipelining) and runs ``ramp``, ``load`` and ``drain``, each
  returning a :class:`PhaseResult` (requests, errors by kind, req/s, latency percentiles in ms, bytes);
- ``child``, the process: ``python -m experiments.loadgen`` in one-shot mode (``-c 50 -d 10``, like
  wrk) or command mode (``--commands``: one command per stdin line, one JSON line per reply on stdout);
- ``driver``: :class:`LoadGeneratorProcess`, what the experiment runner and the bench use to drive
  command mode from outside.

Bounds: loopback addresses only; every connect and every request has a timeout; ``load`` lasts at most
``MAX_LOAD_S`` seconds and stops after ``MAX_REQUESTS`` when given; the process exits after
``--max-lifetime`` seconds whatever happens; connections are opened at most ``connect_concurrency`` at a
time, so a ramp of thousands does not overflow the server's listen backlog, and a ramp starts no connect
after its deadline nor once that many clients in a row were not held: it ends with what was accepted.
Each connection that ends is recorded by what the client saw (``END_KINDS``: who closed it, with a
request outstanding or not, after how many responses and how long after the last).
"""

from .driver import LoadGeneratorProcess
from .generator import END_KINDS, LoadGenerator, PhaseResult
from .histogram import LatencyHistogram
from .params import (
    DEFAULT_CONNECT_CONCURRENCY,
    DEFAULT_RAMP_S,
    DEFAULT_STALL_S,
    DEFAULT_MAX_LIFETIME_S,
    DEFAULT_TIMEOUT_S,
    EXIT_LIFETIME,
    FD_MARGIN,
    MAX_LOAD_S,
    FdLimitError,
    LoadGeneratorError,
    ensure_fd_capacity,
    fd_hard_limit,
    loopback_host,
    request_bytes,
)
from .response import ProtocolError, ResponseParser, parse_response_head

__all__ = [
    "END_KINDS",     "DEFAULT_CONNECT_CONCURRENCY", "DEFAULT_RAMP_S", "DEFAULT_STALL_S", "DEFAULT_MAX_LIFETIME_S", "DEFAULT_TIMEOUT_S", "EXIT_LIFETIME", "FD_MARGIN",
    "MAX_LOAD_S", "FdLimitError", "LatencyHistogram", "LoadGenerator", "LoadGeneratorError",
    "LoadGeneratorProcess", "PhaseResult", "ProtocolError", "ResponseParser", "ensure_fd_capacity",
    "fd_hard_limit", "loopback_host", "parse_response_head", "request_bytes",
]
