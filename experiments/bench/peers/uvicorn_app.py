"""uvicorn with httptools and uvloop, one process, serving a bare ASGI callable (no framework)."""

from __future__ import annotations

import signal

from server.fdlimit import raise_soft_to_hard

from ._common import BACKLOG, BODY, KEEP_ALIVE_TIMEOUT_S, parse_args

HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    args = parse_args("uvicorn_app")
    raise_soft_to_hard()
    # uvicorn shuts down gracefully on SIGTERM, then restores the handler it found and re-raises the
    # signal. With the default handler that kills the process before exit handlers run (so
    # ``python -m cProfile`` never writes its stats); with this one it exits 0, like the other peers.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools", lifespan="off",
                access_log=False, log_level="warning", timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S, backlog=BACKLOG)


if __name__ == "__main__":
    main()
