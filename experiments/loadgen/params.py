"""Parameters and limits of a load: loopback-only hosts, the one request, bounds, and the
file-descriptor room a ramp needs (RLIMIT_NOFILE itself is read and raised by server.fdlimit).
Every other loadgen module imports its constants and errors from here."""

from __future__ import annotations

import ipaddress
import re

# fd_hard_limit keeps its name here: the loadgen package and its users import it from this module.
from server.fdlimit import TooFewDescriptors, make_room
from server.fdlimit import hard_limit as fd_hard_limit  # noqa: F401 (re-exported)
from ..errors import ExperimentError

#: Longest ``load``, in seconds.
MAX_LOAD_S = 600.0
#: Default seconds a connect, or a request's response, may take before it counts as a ``timeout``.
DEFAULT_TIMEOUT_S = 10.0
#: Default seconds after which a ramp starts no more connects (it ends with what was accepted).
DEFAULT_RAMP_S = 60.0
#: Default seconds without a connect completed or a response after which a ramp has stalled: what is
#: outstanding is aborted. Loopback answers a hello-world in milliseconds; a server that answers nothing
#: for this long has no worker free or a full backlog.
DEFAULT_STALL_S = 3.0
#: Default number of connects in flight at once during a ramp.
DEFAULT_CONNECT_CONCURRENCY = 256
#: Default bound on the process's whole life, in seconds.
DEFAULT_MAX_LIFETIME_S = 900.0
#: File descriptors kept free beyond the connections (stdio, epoll, self-pipe, imports...).
FD_MARGIN = 64
#: A response head longer than this (bytes) is a protocol error rather than a reason to buffer forever.
MAX_RESPONSE_HEAD = 65536
#: Exit code of the process when ``--max-lifetime`` ends it.
EXIT_LIFETIME = 3

_PATH = re.compile(r"/[\x21-\x7e]*")


class LoadGeneratorError(ExperimentError):
    """A refused parameter (non-loopback host, bad path, too many connections) or, in
    :class:`LoadGeneratorProcess`, a child that died, timed out or answered nonsense."""


class FdLimitError(LoadGeneratorError):
    """More connections were asked for than RLIMIT_NOFILE's hard limit allows."""


# --- parameters -------------------------------------------------------------------------------------
def loopback_host(host: str) -> str:
    """The IP address to connect to for ``host``, which must be ``localhost``, in 127.0.0.0/8 or
    ``::1`` (brackets allowed); raises :class:`LoadGeneratorError` for anything else."""
    text = host.strip()
    if text.lower() == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise LoadGeneratorError(
            f"host {host!r} is not a loopback address: the load generator only connects to 127.0.0.0/8, ::1 or localhost"
        )
    return str(address)


def request_bytes(host: str, path: str) -> bytes:
    """The one request every connection sends: ``GET path HTTP/1.1`` with a Host header."""
    if not _PATH.fullmatch(path):
        raise LoadGeneratorError(f"path {path!r} must start with '/' and hold only visible ASCII characters")
    host_header = f"[{host}]" if ":" in host else host
    return f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n\r\n".encode("ascii")


def ensure_fd_capacity(extra: int) -> int:
    """Make room for ``extra`` more file descriptors (see :func:`server.fdlimit.make_room`, with
    ``FD_MARGIN`` spare). Returns the soft limit in force; raises :class:`FdLimitError`, naming the
    limit, when even the hard limit is too low."""
    try:
        return make_room(extra, FD_MARGIN)
    except TooFewDescriptors as error:
        raise FdLimitError(
            f"{extra} connections need about {error.needed} file descriptors, above this process's "
            f"RLIMIT_NOFILE hard limit of {error.hard} (raise it with `ulimit -Hn` as root, or ask for fewer)"
        ) from None
