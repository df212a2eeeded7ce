"""What a run or the bench measures: a *subject*, and how it is started, found and named.

A subject is one of three kinds:

- ``memdiet``: memdiet's own server with one layout (``python -m server --layout L``); it says where
  it listens on its first stdout line;
- ``peer``: a named server people run, started from a few-line app (``experiments/bench/peers/``:
  ``uvicorn``, ``aiohttp``, ``asyncio``) or, for ``nginx``, from a minimal configuration written to
  the run's folder;
- ``command``: any command line (``memdiet run --cmd "gunicorn ... --bind 127.0.0.1:{port}"``), split
  as a shell would (:func:`shlex.split`) but never run through a shell.

Rules: every subject listens on loopback. A command's ``{port}`` is replaced by a free loopback port
before it starts; without it, the port is found from the listening sockets of the subject's process
tree (/proc/net/tcp, :func:`.procfs.listening_sockets`), and a subject that listens on a non-loopback
address only is refused. A subject is ``python`` when it is a Python program (its argv[0] is a Python
interpreter, or a script whose ``#!`` line names one): only then can the tracemalloc and memray probes
be injected into it. :func:`resolve` turns a name (or a ``--cmd``) into a :class:`Subject` and is the
one place that knows the names.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import sys
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path

from server.layouts import LAYOUTS
from tracemalloc_viewer.untrusted import NAME_PATTERN

from ..errors import BadInput
from .inject import PYTHON_NAME, interpreter_of
from .process import FirstLine, ListeningSocket, Readiness

#: Seconds memdiet's server keeps an idle connection in the bench: far longer than a measurement holds one.
MEMDIET_KEEP_ALIVE_S = 3600
#: The placeholder a ``--cmd`` string may hold for the port it must listen on.
PORT_PLACEHOLDER = "{port}"


@dataclass(frozen=True)
class Launch:
    """How to start a subject: its argv, extra environment (added to the runner's own), working
    folder, how it tells it is ready, and the loopback port it was told to use (None: found from its
    listening sockets)."""

    argv: list[str]
    env: dict[str, str]
    readiness: Readiness
    port: int | None = None


class Subject:
    """One server under test. ``name`` is unique across kinds; ``kind`` is ``memdiet``, ``peer`` or
    ``command``; ``python``: a Python program (tracemalloc and memray can be injected);
    ``clean_exit_codes``: the exit codes (negative: a signal) that mean it stopped cleanly after
    SIGTERM; ``description`` says what it is in a sentence."""

    kind = ""
    python = True
    #: True when readiness and the port come from a ``listening on HOST:PORT`` first stdout line.
    announces_port = False
    clean_exit_codes: frozenset[int] = frozenset({0})

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description

    @property
    def label(self) -> str:
        """The name tables show: ``memdiet packed``, ``uvicorn``."""
        return self.name

    def command(self, python: str) -> list[str]:
        """The argv that starts it on 127.0.0.1, a free port."""
        raise NotImplementedError

    def launch(self, python: str, workdir: Path) -> Launch:
        """How to start it for a run; ``workdir`` is a folder of the run's own (for files a subject
        needs written before it starts, such as nginx's configuration)."""
        return Launch(self.command(python), {}, FirstLine() if self.announces_port else ListeningSocket(descendants=True))

    def profiled_command(self, python: str, stats_path: Path) -> list[str]:
        """:meth:`command` under ``python -m cProfile -o stats_path``. cProfile writes the file when
        the module's main returns or raises SystemExit, not when a signal kills the process."""
        command = self.command(python)
        if command[:2] != [python, "-m"]:
            raise ValueError(f"{self.label}: cannot profile {command!r}, which is not `python -m module`")
        return [python, "-m", "cProfile", "-o", str(stats_path), *command[1:]]

    def missing_packages(self) -> list[str]:
        """What it needs that is not installed (empty: it can run)."""
        return []

    def versions(self) -> dict[str, str | None]:
        """Versions of what it runs on."""
        return {}

    def describe(self, launch: Launch | None = None) -> dict[str, object]:
        """What result.json says about it: name, kind, description, command and versions."""
        return {"name": self.name, "kind": self.kind, "description": self.description, "python": self.python,
                "command": launch.argv if launch is not None else None, "versions": self.versions()}


class MemdietLayout(Subject):
    """memdiet's server with one layout. The runner adds ``--max-conns``, the keep-alive timeout and
    the probe's arguments; the bench runs it at its default ``--max-conns`` (RLIMIT_NOFILE, soft
    raised to hard)."""

    kind = "memdiet"
    announces_port = True

    def __init__(self, layout: str) -> None:
        super().__init__(layout, f"memdiet's server, {layout} layout")

    @property
    def label(self) -> str:
        return f"memdiet {self.name}"

    def command(self, python: str, keep_alive_s: float = MEMDIET_KEEP_ALIVE_S,
                max_conns: int | None = None) -> list[str]:
        argv = [python, "-m", "server", "--layout", self.name, "--host", "127.0.0.1", "--port", "0",
                "--keep-alive-timeout", f"{keep_alive_s:g}"]
        return argv + (["--max-conns", str(max_conns)] if max_conns is not None else [])


class Peer(Subject):
    """A popular Python server running the few-line app in :mod:`experiments.bench.peers`."""

    kind = "peer"

    def __init__(self, name: str, description: str, packages: tuple[str, ...],
                 clean_exit_codes: frozenset[int] = frozenset({0})) -> None:
        super().__init__(name, description)
        self.module = f"experiments.bench.peers.{name}_app"
        self.packages = packages
        self.clean_exit_codes = clean_exit_codes

    def command(self, python: str) -> list[str]:
        return [python, "-m", self.module, "--host", "127.0.0.1", "--port", "0"]

    def missing_packages(self) -> list[str]:
        return [package for package in self.packages if util.find_spec(package) is None]

    def versions(self) -> dict[str, str | None]:
        return {package: _version(package) for package in self.packages}


class Nginx(Subject):
    """Debian's nginx, a native server: one master and one worker on a free 127.0.0.1 port, with a
    minimal configuration (``GET /`` answers ``Hello, World!``, keep-alive for an hour) written to the
    run's folder; logs and its pid file stay there too. Measured from outside (rss) or under valgrind
    (massif), never by the Python probes."""

    kind = "peer"
    python = False
    #: nginx's fast shutdown on SIGTERM exits 0.
    clean_exit_codes = frozenset({0})
    CONFIG = """\
# Written by memdiet for one run: a minimal static server on one loopback port.
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp;
    keepalive_timeout 3600s;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type text/plain; return 200 "Hello, World!"; }}
    }}
}}
"""

    def __init__(self) -> None:
        super().__init__("nginx", "nginx (Debian's package), one worker, a minimal config on a loopback port")

    def binary(self) -> str | None:
        return shutil.which("nginx") or next((path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None)

    def missing_packages(self) -> list[str]:
        return [] if self.binary() else ["nginx (apt-get install nginx-light; make system-deps)"]

    def versions(self) -> dict[str, str | None]:
        import subprocess

        binary = self.binary()
        if binary is None:
            return {"nginx": None}
        result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
        return {"nginx": (result.stderr or result.stdout).strip().rpartition("/")[2] or None}

    def command(self, python: str) -> list[str]:
        raise ValueError("nginx is started from a configuration written for the run: use launch()")

    def launch(self, python: str, workdir: Path, connections: int = 20000) -> Launch:
        binary = self.binary()
        if binary is None:
            raise BadInput("nginx is not installed (apt-get install nginx-light, or make system-deps)")
        prefix = (workdir / "nginx").resolve()
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        port = free_loopback_port()
        config = prefix / "nginx.conf"
        # Started as root, nginx's workers would switch to nobody, which valgrind's vgdb (the massif
        # probe's phase-end snapshots) cannot reach: they stay root, which changes nothing they hold.
        user = "user root;\n" if os.geteuid() == 0 else ""
        config.write_text(user + self.CONFIG.format(prefix=prefix, port=port, connections=connections))
        argv = [binary, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
        return Launch(argv, {}, ListeningSocket(descendants=True, port=port), port)


class CommandSubject(Subject):
    """Any command line (``--cmd``): split like a shell (never run by one), ``{port}`` replaced by a
    free loopback port. ``name`` defaults to what it runs (:func:`_program_name`): ``gunicorn``,
    ``http.server`` for ``python -m http.server``, ``srv_waitress`` for ``python srv_waitress.py``."""

    kind = "command"
    clean_exit_codes = frozenset({0, -signal.SIGTERM})

    def __init__(self, command_line: str, name: str | None = None) -> None:
        try:
            self.argv = shlex.split(command_line)
        except ValueError as error:
            raise BadInput(f"--cmd {command_line!r} cannot be split like a shell would: {error}") from None
        if not self.argv:
            raise BadInput("--cmd is empty")
        # On PATH, or beside the interpreter memdiet runs on (a virtualenv's console scripts, such as
        # gunicorn, when the virtualenv is not activated).
        self.executable = shutil.which(self.argv[0]) or shutil.which(self.argv[0], path=str(Path(sys.executable).parent))
        if self.executable is None:
            raise BadInput(f"--cmd: command not found: {self.argv[0]!r} (not on PATH nor in {Path(sys.executable).parent})")
        if os.sep not in self.argv[0]:
            self.argv[0] = self.executable
        python = _is_python_program(self.executable)
        super().__init__(name or _program_name(self.argv, python), f"the command {command_line!r}")
        if not NAME_PATTERN.fullmatch(self.name) or self.name in (".", ".."):  # the rule for names read from files too
            raise BadInput(f"--name {self.name!r}: use letters, digits and _.+- only, at most 128, not . nor .. "
                           f"(it names the run folder)")
        self.python = python

    def command(self, python: str) -> list[str]:
        return list(self.argv)

    def launch(self, python: str, workdir: Path) -> Launch:
        if any(PORT_PLACEHOLDER in word for word in self.argv):
            port = free_loopback_port()
            argv = [word.replace(PORT_PLACEHOLDER, str(port)) for word in self.argv]
            return Launch(argv, {}, ListeningSocket(descendants=True, port=port), port)
        return Launch(list(self.argv), {}, ListeningSocket(descendants=True))

    def versions(self) -> dict[str, str | None]:
        # The distribution that installed a console script (gunicorn, uvicorn...) names its version.
        name = Path(self.argv[0]).name
        version = _version(name)
        return {name: version} if version else {}


PEERS: dict[str, Subject] = {peer.name: peer for peer in (
    # uvicorn re-raises the SIGTERM it caught once its graceful shutdown is done (since 0.29): the app
    # installs a handler first, so the re-raise exits 0; "by the signal" stays accepted for a SIGTERM
    # that lands before the app installed it.
    Peer("uvicorn", "uvicorn + httptools + uvloop, a bare ASGI callable", ("uvicorn", "httptools", "uvloop"),
         frozenset({0, -signal.SIGTERM})),
    Peer("aiohttp", "aiohttp's web server (web.run_app, asyncio event loop)", ("aiohttp",)),
    Peer("asyncio", "asyncio.start_server streams responder (standard library, default event loop)", ()),
)}
#: The peers a full matrix runs beside the layouts, when their packages are installed.
FULL_PEERS = ("uvicorn", "aiohttp", "asyncio")
#: Subjects that are not Python programs, by name.
NATIVE: dict[str, Subject] = {"nginx": Nginx()}


def subject_names() -> list[str]:
    """Every name :func:`resolve` accepts, layouts first."""
    return [*LAYOUTS, *PEERS, *NATIVE]


def resolve(name: str | None = None, command_line: str | None = None) -> Subject:
    """The subject named ``name`` (a layout, a peer, ``nginx``), or the ``command_line`` (``--cmd``,
    named ``name`` when given). Raises :class:`BadInput` for an unknown name, a command that is not
    found, or a peer whose packages are not installed."""
    if command_line is not None:
        return CommandSubject(command_line, name)
    if name in LAYOUTS:
        return MemdietLayout(name)
    subject = PEERS.get(name) or NATIVE.get(name)
    if subject is None:
        raise BadInput(f"unknown subject {name!r}; choose one of {', '.join(subject_names())}, or use --cmd")
    missing = subject.missing_packages()
    if missing:
        raise BadInput(f"subject {name}: not installed: {', '.join(missing)}"
                       + ("; install the peers with: .venv/bin/pip install -e '.[bench]'" if subject.python else ""))
    return subject


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's choice; another process could take it before the
    subject binds it, which the subject then reports as an error)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _program_name(argv: list[str], python: bool) -> str:
    """The name a command's runs are filed under: for a Python interpreter, the module it runs
    (``-m http.server``) or its script's stem (``srv_waitress.py``); else argv[0]'s file name.
    Characters a run folder's name does not take become ``_``."""
    name = Path(argv[0]).name
    if python and PYTHON_NAME.match(name):
        words = iter(argv[1:])
        for word in words:
            if word == "-m":
                name = next(words, name)
                break
            if word.startswith("-m") and len(word) > 2:
                name = word[2:]
                break
            if word in ("-c",):
                break
            if word in ("-W", "-X", "--check-hash-based-pycs"):
                next(words, None)
                continue
            if not word.startswith("-"):
                name = Path(word).stem or name
                break
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def _is_python_program(executable: str) -> bool:
    """True when ``executable`` is a Python interpreter, or a script whose ``#!`` line runs one."""
    if any(PYTHON_NAME.match(Path(path).name) for path in (executable, os.path.realpath(executable))):
        return True
    return interpreter_of([executable], {"PATH": os.environ.get("PATH", "")}) is not None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
