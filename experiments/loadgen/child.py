"""The process: ``python -m experiments.loadgen`` in one-shot mode (``-c 50 -d 10``, like wrk) or
command mode (``--commands``: one command per stdin line, one JSON line per reply on stdout)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import signal
import sys
import threading
import traceback
from typing import Any, Sequence

from .generator import LoadGenerator
from .params import (
    DEFAULT_CONNECT_CONCURRENCY,
    DEFAULT_MAX_LIFETIME_S,
    DEFAULT_TIMEOUT_S,
    EXIT_LIFETIME,
    MAX_LOAD_S,
    LoadGeneratorError,
    ensure_fd_capacity,
    fd_hard_limit,
)


def _event_loop_factory() -> tuple[Any, str]:
    """uvloop's loop when it is installed (it is not a dependency), else asyncio's."""
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return asyncio.new_event_loop, "asyncio"
    return uvloop.new_event_loop, "uvloop"


def _parse_command(line: str) -> tuple[str, list[str]]:
    words = line.split()
    return words[0].lower(), words[1:]


def _seconds(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise LoadGeneratorError(f"{what} must be seconds, got {text!r}") from None


def _whole_number(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise LoadGeneratorError(f"{what} must be a whole number, got {text!r}") from None


async def execute_command(generator: LoadGenerator, line: str) -> dict[str, Any]:
    """Run one command-mode line (``ramp C``, ``load SECONDS [MAX_REQUESTS]``, ``drain``, ``status``)
    and return its reply. Raises :class:`LoadGeneratorError` for a bad command."""
    verb, args = _parse_command(line)
    if verb == "ramp" and len(args) in (1, 2, 3):
        count = _whole_number(args[0], "ramp's connection count")
        bounds = {}
        if len(args) >= 2:
            bounds["deadline_s"] = _seconds(args[1], "ramp's deadline")
        if len(args) == 3:
            bounds["stall_s"] = _seconds(args[2], "ramp's stall time")
        result = await generator.ramp(count, **bounds)
    elif verb == "load" and len(args) in (1, 2):
        seconds = _seconds(args[0], "load's duration")
        cap = _whole_number(args[1], "load's MAX_REQUESTS") if len(args) == 2 else None
        result = await generator.load(seconds, cap)
    elif verb == "load-fresh" and len(args) in (2, 3):
        seconds = _seconds(args[0], "load-fresh's duration")
        workers = _whole_number(args[1], "load-fresh's WORKERS")
        cap = _whole_number(args[2], "load-fresh's MAX_REQUESTS") if len(args) == 3 else None
        result = await generator.load_fresh(seconds, workers, cap)
    elif verb == "drain" and not args:
        result = await generator.drain()
    elif verb == "status" and not args:
        # What ended since the last result, without resetting it: the runner watches held clients.
        return {"ok": True, "command": verb, "connections_open": generator.open_connections,
                "ended": generator.ended_so_far()}
    else:
        raise LoadGeneratorError(
            f"unknown command {line!r}: expected 'ramp C [SECONDS [STALL_S]]', 'load SECONDS [MAX_REQUESTS]', "
            "'load-fresh SECONDS WORKERS [MAX_REQUESTS]', 'drain', 'status' or 'quit'"
        )
    return {"ok": True, "command": verb, **result.to_dict()}


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue:
    """Stdin's lines (str) on a queue, then None at EOF. A thread does the blocking reads, with
    os.read rather than sys.stdin so no buffered-file lock is held at interpreter exit."""
    lines: asyncio.Queue = asyncio.Queue()

    def put(item: str | None) -> None:
        try:
            loop.call_soon_threadsafe(lines.put_nowait, item)
        except RuntimeError:  # the loop has closed: we are exiting
            pass

    def read() -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(0, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                put(line.decode("utf-8", errors="replace"))
        if pending:
            put(pending.decode("utf-8", errors="replace"))
        put(None)

    threading.Thread(target=read, name="loadgen-stdin", daemon=True).start()
    return lines


async def _command_mode(generator: LoadGenerator, ready: dict[str, Any]) -> int:
    lines = _stdin_lines(asyncio.get_running_loop())
    _emit(ready)
    sequence = 0
    try:
        while (line := await lines.get()) is not None:
            line = line.strip()
            if not line:
                continue
            sequence += 1
            if line.lower() == "quit":
                _emit({"ok": True, "command": "quit", "seq": sequence})
                break
            try:
                reply = await execute_command(generator, line)
            except LoadGeneratorError as error:
                reply = {"ok": False, "error": str(error)}
            except Exception as error:  # a bug: keep stdout one JSON line, the traceback on stderr
                traceback.print_exc(file=sys.stderr)
                reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            reply["seq"] = sequence
            _emit(reply)
    finally:
        await generator.__aexit__(None, None, None)
    return 0


async def _one_shot(generator: LoadGenerator, args: argparse.Namespace, loop_name: str) -> int:
    async with generator:
        try:
            ramp = await generator.ramp(args.connections)
        except LoadGeneratorError as error:
            print(f"{PROG}: error: {error}", file=sys.stderr)
            return 2
        load = await generator.load(args.duration, args.max_requests)
        drain = await generator.drain()
    if args.json:
        _emit({"ramp": ramp.to_dict(), "load": load.to_dict(), "drain": drain.to_dict()})
    else:
        print(f"{args.connections} connections to {generator.host}:{generator.port}{generator.path} "
              f"for {args.duration:g} s ({loop_name} event loop)")
        for result in (ramp, load, drain):
            print(result.summary())
    return 0


PROG = "python -m experiments.loadgen"


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one readable line, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(kind: type, what: str, ceiling: float | None = None):
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}: expected a number, got {text!r}") from None
        if not value > 0 or (ceiling is not None and value > ceiling):
            bound = f" and at most {ceiling:g}" if ceiling is not None else ""
            raise argparse.ArgumentTypeError(f"{what}: must be more than 0{bound}, got {text}")
        return value

    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog=PROG, description="Bounded keep-alive HTTP/1.1 load against a loopback server.")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address of the server (default: 127.0.0.1)")
    parser.add_argument("--port", type=_positive(int, "port", 65535), required=True, help="server port")
    parser.add_argument("--path", default="/", help="path every request asks for (default: /)")
    parser.add_argument("--commands", action="store_true",
                        help="command mode: read 'ramp C [SECONDS [STALL_S]]', 'load SECONDS [MAX_REQUESTS]', "
                             "'load-fresh SECONDS WORKERS [MAX_REQUESTS]', 'drain', 'status', 'quit' "
                             "lines on stdin, write one JSON line per command on stdout")
    parser.add_argument("-c", "--connections", type=_positive(int, "connections"), default=50,
                        help="one-shot mode: connections (default: 50)")
    parser.add_argument("-d", "--duration", type=_positive(float, "duration", MAX_LOAD_S), default=10.0,
                        help=f"one-shot mode: seconds of load (default: 10, at most {MAX_LOAD_S:g})")
    parser.add_argument("--max-requests", type=_positive(int, "max requests"), default=None,
                        help="one-shot mode: stop the load after this many requests")
    parser.add_argument("--json", action="store_true", help="one-shot mode: print the results as one JSON line")
    parser.add_argument("--timeout", type=_positive(float, "timeout", 3600), default=DEFAULT_TIMEOUT_S,
                        help=f"seconds a connect or a response may take (default: {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--connect-concurrency", type=_positive(int, "connect concurrency"),
                        default=DEFAULT_CONNECT_CONCURRENCY,
                        help=f"connects in flight at once (default: {DEFAULT_CONNECT_CONCURRENCY})")
    parser.add_argument("--max-lifetime", type=_positive(float, "max lifetime", 86400), default=DEFAULT_MAX_LIFETIME_S,
                        help=f"seconds after which the process exits whatever happens (default: {DEFAULT_MAX_LIFETIME_S:g})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The process's entry point (it sets a SIGALRM hard stop: do not call it inside another program)."""
    args = build_parser().parse_args(argv)
    try:
        generator = LoadGenerator(args.host, args.port, args.path, timeout_s=args.timeout,
                                  connect_concurrency=args.connect_concurrency)
        if not args.commands:
            ensure_fd_capacity(args.connections)
    except LoadGeneratorError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    # The hard stop: SIGALRM's default action ends the process even if the loop is stuck.
    signal.alarm(math.ceil(args.max_lifetime) + 5)
    loop_factory, loop_name = _event_loop_factory()
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ready = {"ok": True, "ready": True, "pid": os.getpid(), "host": generator.host, "port": generator.port,
             "path": generator.path, "event_loop": loop_name, "nofile_soft": soft,
             "nofile_hard": fd_hard_limit(), "max_lifetime_s": args.max_lifetime, "timeout_s": args.timeout}

    async def bounded() -> int:
        try:
            async with asyncio.timeout(args.max_lifetime):
                if args.commands:
                    return await _command_mode(generator, ready)
                return await _one_shot(generator, args, loop_name)
        except TimeoutError:
            print(f"{PROG}: max lifetime of {args.max_lifetime:g} s reached; exiting", file=sys.stderr)
            return EXIT_LIFETIME

    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(bounded())
    except BrokenPipeError:  # whoever read stdout went away
        return 1
    except KeyboardInterrupt:
        return 130
