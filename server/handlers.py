"""Routes. A handler gets the server, the connection's fd and the parsed request, and returns
``(status, body, content_type, extra_headers)``; it never knows which layout holds the state.

- ``/``        GET/HEAD: 200 ``Hello, World!``
- ``/echo``    GET/HEAD/POST: the request as text: method, target, header count, client address and
  port (from the layout, which in ``nofd`` and ``packed`` means ``getpeername()``), body length
- ``/__stats`` GET/HEAD, loopback clients only (127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6;
  ``--stats-from`` names other addresses or networks instead, see :func:`client_allowed`): JSON with layout, max_conns, usable slots (those the
  server's own file descriptors leave to clients), open connections, RSS and tracemalloc totals when
  tracing
"""

from __future__ import annotations

import functools
import ipaddress
import json
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # type hints only: the server never loads it (see server/services.py)
    from .services import LoopServices

Response = tuple[int, bytes, bytes, tuple[tuple[bytes, bytes], ...]]

TEXT = b"text/plain; charset=utf-8"
JSON = b"application/json"
HELLO = b"Hello, World!"


def hello(server: LoopServices, fd: int, request, body: bytes) -> Response:
    return 200, HELLO, TEXT, ()


def echo(server: LoopServices, fd: int, request, body: bytes) -> Response:
    host, port = server.peer(fd)[:2]
    text = (
        f"method: {request.method.decode('ascii')}\n"
        f"target: {request.target.decode('ascii')}\n"
        f"version: HTTP/{request.version.decode('ascii')}\n"
        f"headers: {len(request.headers)}\n"
        f"client: {host} {port}\n"
        f"body: {len(body)}\n"
    )
    return 200, text.encode("ascii"), TEXT, ()


def stats(server: LoopServices, fd: int, request, body: bytes) -> Response:
    host = server.peer(fd)[0]
    if not client_allowed(host, server.local_addresses):
        return 404, b"Not Found", TEXT, ()
    payload = json.dumps(server.stats(), sort_keys=True).encode("ascii")
    return 200, payload, JSON, ()


def client_allowed(host: str, allowed: frozenset[str]) -> bool:
    """True when the client address ``host`` is one of ``allowed``: an address, or a network in CIDR
    form (``127.0.0.0/8``) it lies in. An IPv4 address mapped into IPv6 (``::ffff:127.0.0.2``) is
    matched as the IPv4 address it carries. An empty or unparsable host is never allowed."""
    if host in allowed:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return any(address in network or (mapped is not None and mapped in network) for network in _networks(allowed))


@functools.lru_cache(maxsize=16)
def _networks(allowed: frozenset[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The networks among ``allowed`` (entries with a ``/``; --stats-from checks them when parsed)."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in allowed if "/" in entry)


#: path -> (allowed methods, handler)
ROUTES: dict[bytes, tuple[frozenset[bytes], Callable[..., Response]]] = {
    b"/": (frozenset((b"GET", b"HEAD")), hello),
    b"/echo": (frozenset((b"GET", b"HEAD", b"POST")), echo),
    b"/__stats": (frozenset((b"GET", b"HEAD")), stats),
}


def route_path(target: bytes) -> bytes:
    """The path a target routes on: query string dropped; absolute-form reduced to its path."""
    if target[:1] != b"/":
        scheme_end = target.find(b"://")
        if scheme_end < 0:
            return target  # asterisk-form or garbage: routes nowhere
        path_start = target.find(b"/", scheme_end + 3)
        target = target[path_start:] if path_start >= 0 else b"/"
    query = target.find(b"?")
    return target if query < 0 else target[:query]


def dispatch(server: LoopServices, fd: int, request, body: bytes) -> Response:
    """Find the route for ``request`` and run it: 404 for an unknown path, 405 for a method the
    route does not serve."""
    route = ROUTES.get(route_path(request.target))
    if route is None:
        return 404, b"Not Found", TEXT, ()
    methods, handler = route
    if request.method not in methods:
        allow = b", ".join(sorted(methods))
        return 405, b"Method Not Allowed", TEXT, ((b"Allow", allow),)
    return handler(server, fd, request, body)
