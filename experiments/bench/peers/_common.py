"""What every peer app shares: its command line and its answer.

Standard library only: a peer's idle RSS should be its framework's, not ours. Each peer raises
RLIMIT_NOFILE's soft limit to the hard one with server.fdlimit, as memdiet's server does, so every
subject can hold as many connections: a module of a few lines, which loads nothing of the server but
the package docstring.
"""

from __future__ import annotations

import argparse
from typing import Sequence

#: The body every subject answers ``GET /`` with.
BODY = b"Hello, World!"
#: Seconds an idle keep-alive connection is kept: far longer than any measurement holds it.
KEEP_ALIVE_TIMEOUT_S = 3600
#: Listen backlog, as memdiet's server uses, so a ramp of thousands of connects is not throttled.
BACKLOG = 4096


def parse_args(prog: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``--host`` (default 127.0.0.1) and ``--port`` (default 0: a free one, found by the bench
    from /proc/net/tcp)."""
    parser = argparse.ArgumentParser(prog=prog, description="A benchmark peer: GET / -> 200 Hello, World!")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    return parser.parse_args(argv)
