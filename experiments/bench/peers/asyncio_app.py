"""The standard library's floor: ``asyncio.start_server`` (streams, default event loop) answering
every request head with a fixed keep-alive response. No framework, no HTTP parsing beyond finding
the end of the head (``GET`` requests carry no body)."""

from __future__ import annotations

import asyncio
import signal

from server.fdlimit import raise_soft_to_hard

from ._common import BACKLOG, BODY, parse_args

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(BODY)) + BODY


async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(host: str, port: int) -> None:
    server = await asyncio.start_server(respond, host, port, backlog=BACKLOG)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # exit 0 on SIGTERM, like the other subjects
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    args = parse_args("asyncio_app")
    raise_soft_to_hard()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
