"""aiohttp's web server (``web.run_app``, its default asyncio event loop), one route."""

from __future__ import annotations

from server.fdlimit import raise_soft_to_hard

from ._common import BACKLOG, BODY, KEEP_ALIVE_TIMEOUT_S, parse_args


def main() -> None:
    args = parse_args("aiohttp_app")
    raise_soft_to_hard()
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/", hello)
    web.run_app(app, host=args.host, port=args.port, access_log=None, keepalive_timeout=KEEP_ALIVE_TIMEOUT_S,
                backlog=BACKLOG, print=None)


if __name__ == "__main__":
    main()
