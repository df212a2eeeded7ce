"""Test helpers: run ``python -m server`` as a subprocess, and talk raw HTTP/1.1 to it over sockets.

Nothing here asserts on timings: every wait is a poll against a deadline that only bounds how long a
broken server can hang a test.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Seconds a server may take to print its ``listening on`` line, or to exit after a signal.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
#: Seconds a single socket read may block before a test fails instead of hanging.
READ_TIMEOUT = 10.0
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Slots for servers whose test does not care: --max-conns must be given, because its default is
#: RLIMIT_NOFILE, and the naive layout costs ~6 KB per slot.
DEFAULT_MAX_CONNS = 128


class ServerProcess:
    """A ``python -m server`` subprocess, started with :meth:`start`, stopped with :meth:`stop`.

    ``address`` is the ``(host, port)`` it listens on, read from its first stdout line; its stderr
    goes to a temporary file (a pipe nobody reads could fill and block the server).
    """

    def __init__(self, process: subprocess.Popen, stderr_file, listening_line: str) -> None:
        self.process = process
        #: The server's first stdout line, ``listening on 127.0.0.1:PORT``.
        self.listening_line = listening_line
        host, port = listening_line.removeprefix("listening on ").rsplit(":", 1)
        self.address = (host, int(port))
        self._stderr_file = stderr_file

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(cls, layout: str, *options: str, max_conns: int = DEFAULT_MAX_CONNS,
              nofile_limit: int | None = None) -> ServerProcess:
        """Start a server with ``--layout layout --port 0 --max-conns max_conns`` plus ``options``
        and wait (up to ``START_TIMEOUT`` s) for its ``listening on 127.0.0.1:PORT`` line.
        ``nofile_limit`` sets RLIMIT_NOFILE (soft and hard, so the server cannot raise it) in the
        child before it starts."""
        argv = [sys.executable, "-m", "server", "--layout", layout, "--port", "0",
                "--max-conns", str(max_conns), *options]
        stderr_file = tempfile.TemporaryFile()
        limit_fds = None
        if nofile_limit is not None:
            def limit_fds() -> None:  # runs in the child between fork and exec
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile_limit, nofile_limit))
        process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr_file,
                                   preexec_fn=limit_fds)
        try:
            line = read_line(process.stdout, time.monotonic() + START_TIMEOUT)
            if not line.startswith("listening on "):
                raise AssertionError(f"unexpected first line {line!r}; stderr: {_read_all(stderr_file)}")
            return cls(process, stderr_file, line)
        except BaseException:
            process.kill()
            process.wait()
            stderr_file.close()
            raise

    def signal(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum`` to the server by PID and return its exit code (killing it and failing if
        it has not exited within ``STOP_TIMEOUT`` s)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"server {self.pid} ignored signal {signum}; stderr: {self.stderr()}") from None

    def stop(self) -> None:
        """SIGTERM the server (unless it has already exited), check it exited 0 and logged no
        traceback, and release its pipes."""
        try:
            code = self.process.returncode if self.process.returncode is not None else self.signal()
            stderr = self.stderr()
            assert code == 0, f"server exited {code}; stderr: {stderr}"
            assert "Traceback" not in stderr, f"server logged an exception: {stderr}"
        finally:
            self.process.stdout.close()
            self._stderr_file.close()

    def stderr(self) -> str:
        """Everything the server wrote to stderr so far."""
        return _read_all(self._stderr_file)

    def assert_alive(self) -> None:
        """Fail if the server has exited or has logged a traceback."""
        assert self.process.poll() is None, f"server exited {self.process.returncode}; stderr: {self.stderr()}"
        stderr = self.stderr()
        assert "Traceback" not in stderr, f"server logged an exception: {stderr}"

    def rss_bytes(self) -> int:
        """The server's resident set size in bytes, read from /proc from outside (no request)."""
        with open(f"/proc/{self.pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE

    def open_fds(self) -> int:
        """Number of file descriptors the server holds, from /proc."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server has used so far, in seconds, from /proc."""
        with open(f"/proc/{self.pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def client(self, source: str | None = None) -> RawClient:
        """A new connection to the server (from ``source``, a loopback address, when given)."""
        return RawClient.connect(self.address, source=source)

    def get(self, target: str, *, source: str | None = None) -> Response:
        """One ``GET target`` on a fresh connection, closed afterwards."""
        with self.client(source) as client:
            client.send(request_bytes("GET", target))
            return client.read_response()

    def stats(self) -> dict:
        response = self.get("/__stats")
        assert response.status == 200, response
        return json.loads(response.body)

    def traced_heap_bytes(self) -> int:
        """``tracemalloc_current_bytes`` from ``/__stats`` on a fresh connection (the server must run
        with ``--trace tracemalloc``). Taken the same way each time, so the request's own
        allocations weigh the same in every figure."""
        return self.stats()["tracemalloc_current_bytes"]

    def assert_serving(self) -> None:
        """Fail unless the server answers ``GET /`` on a fresh connection."""
        response = self.get("/")
        assert (response.status, response.body) == (200, b"Hello, World!"), response


@contextmanager
def running_server(layout: str, *options: str, **kwargs) -> Iterator[ServerProcess]:
    """A started server (see :meth:`ServerProcess.start`), stopped on exit with its exit checked."""
    server = ServerProcess.start(layout, *options, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def read_line(stream, deadline: float) -> str:
    """Read one line from a pipe without blocking past ``deadline`` (a ``time.monotonic()`` value)."""
    fd = stream.fileno()
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no complete line before the deadline, got {data!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 1)  # one byte at a time: nothing after the line is taken
            if not chunk:
                raise AssertionError(f"stream closed after {data!r}")
            data += chunk
    return data.decode().rstrip("\n")


def _read_all(file) -> str:
    file.seek(0)
    return file.read().decode(errors="replace")


def request_bytes(method: str, target: str, *, version: str = "1.1", headers: dict[str, str] | None = None,
                  body: bytes = b"") -> bytes:
    """A request as bytes; HTTP/1.1 requests get ``Host: test`` unless ``headers`` names a Host."""
    lines = [f"{method} {target} HTTP/{version}"]
    fields = dict(headers or {})
    if version == "1.1" and not any(name.lower() == "host" for name in fields):
        fields = {"Host": "test", **fields}
    lines += [f"{name}: {value}" for name, value in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


@dataclass
class Response:
    """One parsed response: ``status`` code, ``headers`` as a lowercased-name -> value dict (str),
    ``body`` bytes (empty for HEAD)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def connection(self) -> str:
        return self.headers.get("connection", "").lower()

    def echo(self) -> dict[str, str]:
        """The ``/echo`` body as a dict: ``"target"`` -> ``"/echo?a"``, ``"client"`` -> ``"127.0.0.1 5555"``..."""
        return dict(line.split(": ", 1) for line in self.body.decode("ascii").splitlines())


class RawClient:
    """A blocking TCP client that reads responses honoring ``Content-Length`` and keeps any bytes
    past one response for the next (so pipelined responses can be read one by one)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(READ_TIMEOUT)
        self._buffer = b""

    @classmethod
    def connect(cls, address: tuple[str, int], *, source: str | None = None,
                socket_buffers: int | None = None) -> RawClient:
        """Connect to ``address`` (from ``source`` when given). ``socket_buffers`` sets SO_RCVBUF
        and SO_SNDBUF in bytes before connecting (the kernel doubles them and stops autotuning
        them), so a client that does not read fills up after little data."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if socket_buffers is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, socket_buffers)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, socket_buffers)
            sock.settimeout(READ_TIMEOUT)
            if source is not None:
                sock.bind((source, 0))
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _receive(self) -> bytes:
        data = self.sock.recv(65536)
        self._buffer += data
        return data

    def read_response(self, *, head_only: bool = False) -> Response:
        """Read one response; ``head_only`` for the answer to HEAD (its Content-Length sends no body)."""
        while b"\r\n\r\n" not in self._buffer:
            if not self._receive():
                raise ConnectionError(f"EOF before a complete response head, got {self._buffer!r}")
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        version, status, _reason = status_line.split(" ", 2)
        assert version == "HTTP/1.1", status_line
        headers = {}
        for line in header_lines:
            name, value = line.split(":", 1)
            assert name.lower() not in headers, f"repeated header {name} in {head!r}"
            headers[name.lower()] = value.strip()
        length = 0 if head_only else int(headers["content-length"])
        while len(self._buffer) < length:
            if not self._receive():
                raise ConnectionError(f"EOF inside a body of {length} bytes, got {self._buffer!r}")
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return Response(int(status), headers, body)

    def exchange(self, data: bytes, *, head_only: bool = False) -> Response:
        self.send(data)
        return self.read_response(head_only=head_only)

    def at_eof(self, timeout: float = READ_TIMEOUT) -> bool:
        """Wait up to ``timeout`` s for the server to close: True on EOF (or reset) with nothing
        unread, False if the connection is still open when the time is up."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.sock.settimeout(remaining)
                if not self._receive():
                    break
        except socket.timeout:
            return False
        except ConnectionResetError:
            pass
        finally:
            self.sock.settimeout(READ_TIMEOUT)
        assert not self._buffer, f"unexpected bytes before EOF: {self._buffer!r}"
        return True

    def reset(self) -> None:
        """Close with SO_LINGER 0, so the kernel sends a RST instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def tcp_unacknowledged_bytes() -> dict[tuple[int, int], int]:
    """Bytes each IPv4 TCP connection of this machine has written and its peer's kernel has not yet
    acknowledged (``tx_queue`` of /proc/net/tcp: write_seq - snd_una), by (local port, remote port).
    On loopback a byte is acknowledged as soon as it lands in the peer's receive buffer, so bytes
    stay here only while the peer's receive window is closed: the peer is not reading."""
    queues: dict[tuple[int, int], int] = {}
    with open("/proc/net/tcp") as table:
        next(table)  # the header line
        for line in table:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            queues[local_port, remote_port] = int(fields[4].split(":")[0], 16)
    return queues


def poll_until(condition, timeout: float, interval: float = 0.02, message: str = "condition") -> None:
    """Call ``condition()`` until it returns true, failing after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not met within {timeout} s")
        time.sleep(interval)
