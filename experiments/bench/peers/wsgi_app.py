"""A WSGI app for servers started with ``--cmd`` (gunicorn's examples in README and the tests):
``GET /`` answers the body every peer answers. ``gunicorn -w 2 -k gthread --keep-alive 3600 -b
127.0.0.1:{port} experiments.bench.peers.wsgi_app:app``."""

from __future__ import annotations

from typing import Callable, Iterable

from ._common import BODY

HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    start_response("200 OK", HEADERS)
    return [BODY]
