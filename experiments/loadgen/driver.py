"""Driving the load-generator process from outside: what the experiment runner and the bench use."""

from __future__ import annotations

import collections
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .params import (
    DEFAULT_MAX_LIFETIME_S,
    DEFAULT_TIMEOUT_S,
    LoadGeneratorError,
    loopback_host,
)


class LoadGeneratorProcess:
    """``python -m experiments.loadgen --commands`` as a child process, driven line by line.

    ::

        with LoadGeneratorProcess(python=sys.executable) as generator:
            generator.start("127.0.0.1", port)
            reply = generator.command("ramp 1000", timeout_s=60)   # the JSON reply, as a dict
            if not reply["ok"]: ...                                # reply["error"] says why

    :meth:`command` returns the child's reply (``ok`` false for a refused or failed command) and
    raises :class:`LoadGeneratorError` when the child dies or does not answer within ``timeout_s``
    seconds: give ``load D`` a timeout above D plus the request timeout. ``max_lifetime_s`` bounds the
    child's life; ``request_timeout_s`` is its per-connect and per-response timeout.
    """

    def __init__(
        self,
        python: str = sys.executable,
        *,
        max_lifetime_s: float = DEFAULT_MAX_LIFETIME_S,
        request_timeout_s: float = DEFAULT_TIMEOUT_S,
        ready_timeout_s: float = 30.0,
    ) -> None:
        self.python = python
        self.max_lifetime_s = max_lifetime_s
        self.request_timeout_s = request_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen | None = None
        #: The child's ``ready`` message (pid, event loop, fd limits...), once started.
        self.ready: dict[str, Any] | None = None
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._threads: list[threading.Thread] = []
        self._sent = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stderr_tail(self) -> str:
        """The child's last stderr lines (for error messages)."""
        return "".join(self._stderr_tail)

    def start(self, host: str, port: int, path: str = "/") -> dict[str, Any]:
        """Start the child against ``host:port`` and wait for its ready message, which is returned."""
        if self.process is not None:
            raise LoadGeneratorError("already started")
        loopback_host(host)  # refuse here, with the same message, rather than in the child
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (package_root, env.get("PYTHONPATH"))))
        argv = [self.python, "-m", "experiments.loadgen", "--commands", "--host", host, "--port", str(port),
                "--path", path, "--timeout", str(self.request_timeout_s),
                "--max-lifetime", str(self.max_lifetime_s)]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", bufsize=1, env=env,
        )
        self._threads = [
            threading.Thread(target=self._pump, args=(self.process.stdout, self._replies.put, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.process.stderr, self._stderr_tail.append, False), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        try:
            self.ready = self._read_reply(self.ready_timeout_s, "the ready message")
        except LoadGeneratorError:
            self.close(grace_s=0)
            raise
        if not self.ready.get("ready"):
            self.close(grace_s=0)
            raise LoadGeneratorError(f"load generator did not start: {self.ready.get('error', self.ready)}")
        return self.ready

    def command(self, line: str, timeout_s: float) -> dict[str, Any]:
        """Send one command line and return the child's JSON reply as a dict."""
        process = self.process
        if process is None or self.ready is None:
            raise LoadGeneratorError("not started")
        if "\n" in line or not line.strip():
            raise LoadGeneratorError(f"a command is one non-empty line, got {line!r}")
        try:
            process.stdin.write(line + "\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise LoadGeneratorError(self._death_note(f"could not send {line!r}")) from None
        self._sent += 1
        deadline = time.monotonic() + timeout_s
        while True:  # skip replies to earlier commands that timed out
            reply = self._read_reply(deadline - time.monotonic(), f"the reply to {line!r}")
            if reply.get("seq", self._sent) >= self._sent:
                return reply

    def close(self, grace_s: float = 5.0) -> int | None:
        """Stop the child: ``quit``, then SIGTERM by PID after ``grace_s`` seconds, then SIGKILL.
        Returns its exit code (negative: the signal that ended it)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            try:
                process.stdin.write("quit\n")
                process.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass
            if not self._exited_within(grace_s):
                process.terminate()  # Popen signals its own PID only
                if not self._exited_within(grace_s):
                    process.kill()
                    process.wait(10)
        for stream in (process.stdin, process.stdout, process.stderr):
            try:
                stream.close()
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=2)
        return process.returncode

    def _exited_within(self, seconds: float) -> bool:
        try:
            self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def __enter__(self) -> LoadGeneratorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # internals
    @staticmethod
    def _pump(stream, sink, mark_eof: bool) -> None:
        """Copy a child's pipe, line by line, into ``sink`` (then None when ``mark_eof``)."""
        try:
            for line in stream:
                sink(line)
        except (OSError, ValueError):
            pass
        if mark_eof:
            sink(None)

    def _read_reply(self, timeout_s: float, what: str) -> dict[str, Any]:
        try:
            line = self._replies.get(timeout=max(timeout_s, 0))
        except queue.Empty:
            raise LoadGeneratorError(f"no answer from the load generator within the timeout, waiting for {what}") from None
        if line is None:
            self._replies.put(None)  # every later read sees the EOF too
            raise LoadGeneratorError(self._death_note(f"load generator exited while waiting for {what}"))
        try:
            reply = json.loads(line)
        except json.JSONDecodeError:
            raise LoadGeneratorError(f"load generator wrote a line that is not JSON: {line[:200]!r}") from None
        if not isinstance(reply, dict):
            raise LoadGeneratorError(f"load generator wrote unexpected JSON: {line[:200]!r}")
        return reply

    def _death_note(self, message: str) -> str:
        code = self.process.poll() if self.process is not None else None
        tail = self.stderr_tail().strip()
        return f"{message} (exit code {code}){': ' + tail if tail else ''}"
