"""Where a profiled server's time goes: one cProfile stats file turned into a small dataset.

``memdiet bench --profile`` runs every subject once more under ``python -m cProfile -o FILE``
during a throughput run (:class:`.measure.ProfiledRun`); :func:`profile_dataset` reads that file:

- ``profiled_s``: seconds on cProfile's clock over the server's whole life (start-up, the load,
  shutdown). cProfile's default clock is the wall clock, so a function's own time includes time the
  process was blocked in it: waiting in ``epoll.poll`` (or ``select``) is its own category for that
  reason, apart from the system calls that do work.
- ``categories``: own time ("tottime") grouped by what the code is (:func:`category_rules`): for
  memdiet by server module; for a peer its app, its packages and asyncio; for both, system calls,
  waiting for events, other. C functions that are neither system calls nor a package's own (``len``,
  bytes and regex methods, ``generator.send``...) count with the code that called them, split by
  caller as cProfile records it.
- ``top_functions``: the functions with the most own time, each with the category it counts in.

Every row gives seconds, its share of ``profiled_s`` and microseconds per request (the requests the
throughput tool got answered in that run). cProfile adds a fixed cost to every Python call, so these
compare subjects and categories; they are not the unprofiled server's timings.
"""

from __future__ import annotations

import pstats
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .launch import REPO_ROOT
from ..dataset.bench_format import OTHER, SHARED_CATEGORIES, SYSTEM_CALLS, WAITING
from .subjects import Peer, Subject

#: Functions listed by own time in each dataset.
TOP_FUNCTIONS = 12

ASYNCIO = "asyncio internals (asyncio/, selectors.py)"
PEER_APP = "peer app (experiments/bench/peers/)"

#: memdiet's server by file, first match wins (a folder ends with "/").
MEMDIET_FILES: tuple[tuple[str, str], ...] = (
    ("server/http.py", "HTTP parsing (server/http.py)"),
    ("server/connection.py", "connection coroutine (server/connection.py)"),
    ("server/loop.py", "event loop (server/loop.py)"),
    ("server/deathqueue.py", "expiry queue (server/deathqueue.py)"),
    ("server/layouts/", "layout table accessors (server/layouts/)"),
    ("server/handlers.py", "handlers and routing (server/handlers.py)"),
    ("server/request.py", "request state (server/request.py)"),
    ("server/", "rest of server/ (start-up: cli.py...)"),
)

#: What cProfile cannot see in a peer that runs on uvloop.
UVLOOP_NOTE = ("uvloop and httptools are compiled and invisible to cProfile: the time of uvloop's event loop "
               "and transports (their system calls and epoll waits included) and of httptools' parser is "
               "counted in the Python functions that call into them (asyncio's runner, uvicorn's protocol)")

#: C functions that wait for events; their own time includes idle time on the wall clock.
_WAITING_FUNCTIONS = {("select.epoll", "poll"), ("select.poll", "poll"), ("select", "select"),
                      ("select.devpoll", "poll"), ("time", "sleep")}
#: C functions that enter the kernel, by owner (module or type); None: every function of that owner.
_SYSTEM_CALL_OWNERS: dict[str, set[str] | None] = {
    "posix": None,
    "_socket.socket": None,
    "select.epoll": {"register", "modify", "unregister", "close"},
}
#: Methods of those owners that stay in user space.
_NOT_SYSTEM_CALLS = {("_socket.socket", "fileno"), ("_socket.socket", "gettimeout"),
                     ("_socket.socket", "getblocking"), ("_socket.socket", "detach"), ("posix", "fspath")}
_STDLIB_FILE = re.compile(r"/lib/python\d+\.\d+/(?!site-packages/|dist-packages/)(.+)$")
_PACKAGE_FILE = re.compile(r"/(?:site|dist)-packages/(.+)$")
_C_METHOD = re.compile(r"<method '(\w+)' of '([\w.]+)' objects>")
_C_FUNCTION = re.compile(r"<built-in method ([\w.]+)>")

FunctionKey = tuple[str, int, str]


class ProfileError(Exception):
    """The stats file is missing or unreadable; the message says which and why."""


@dataclass(frozen=True)
class CategoryRules:
    """How one subject's functions are grouped. ``files``: (path relative to ``root``, or a folder
    ending in "/", category), first match wins; ``packages``: installed packages that are each their
    own category; ``asyncio``: whether asyncio's code (and its C accelerator) is a category of its
    own; ``note``: what cProfile cannot see in this subject (shown with its figures)."""

    root: Path
    files: tuple[tuple[str, str], ...]
    packages: tuple[str, ...] = ()
    asyncio: bool = False
    note: str | None = None

    def categories(self) -> list[str]:
        """Every category :meth:`classify` can return, in the order tables show them."""
        names = [category for _, category in self.files] + list(self.packages)
        names += [ASYNCIO] if self.asyncio else []
        return list(dict.fromkeys(names + list(SHARED_CATEGORIES)))

    def classify(self, key: FunctionKey) -> str | None:
        """The category of one function (cProfile's ``(file, line, name)``); None for a C function
        that counts with its callers."""
        filename, _, name = key
        if filename == "~":
            return self._classify_c(name)
        # Installed packages first: the virtualenv may live inside the repository.
        if match := _PACKAGE_FILE.search(filename):
            package = match[1].split("/")[0]
            return package if package in self.packages else OTHER
        if match := _STDLIB_FILE.search(filename):
            is_asyncio = match[1].startswith("asyncio/") or match[1] == "selectors.py"
            return ASYNCIO if is_asyncio and self.asyncio else OTHER
        path = _relative_to(Path(filename), self.root)
        for prefix, category in self.files:
            if path is not None and (path == prefix or (prefix.endswith("/") and path.startswith(prefix))):
                return category
        return OTHER

    def _classify_c(self, name: str) -> str | None:
        owner, function = _c_function(name)
        if (owner, function) in _WAITING_FUNCTIONS:
            return WAITING
        if owner in _SYSTEM_CALL_OWNERS and (owner, function) not in _NOT_SYSTEM_CALLS:
            functions = _SYSTEM_CALL_OWNERS[owner]
            if functions is None or function in functions:
                return SYSTEM_CALLS
        package = owner.split(".")[0]
        if package == "_asyncio" and self.asyncio:
            return ASYNCIO
        if package in self.packages:
            return package
        return None


def category_rules(subject: Subject, root: Path = REPO_ROOT) -> CategoryRules:
    """The grouping for ``subject``: memdiet's server modules, or a peer's app and packages."""
    if subject.kind == "memdiet":
        return CategoryRules(root, MEMDIET_FILES)
    packages = tuple(subject.packages) if isinstance(subject, Peer) else ()
    return CategoryRules(root, (("experiments/bench/peers/", PEER_APP),), packages, asyncio=True,
                         note=UVLOOP_NOTE if "uvloop" in packages else None)


def _relative_to(path: Path, root: Path) -> str | None:
    if not path.is_absolute():
        return path.as_posix()  # a module run from the working directory, which is the root
    for base in (root, root.resolve()):
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            continue
    return None


def _c_function(name: str) -> tuple[str, str]:
    """(owner, function) of a C function's cProfile name: ``<method 'poll' of 'select.epoll'
    objects>`` -> ("select.epoll", "poll"); ``<built-in method posix.write>`` -> ("posix", "write")."""
    if match := _C_METHOD.fullmatch(name):
        return match[2], match[1]
    if match := _C_FUNCTION.fullmatch(name):
        owner, _, function = match[1].rpartition(".")
        return owner, function
    return "", name


def function_label(key: FunctionKey, root: Path = REPO_ROOT) -> str:
    """A function as reports show it: ``server/http.py:111(parse_head)``,
    ``asyncio/streams.py:575(readuntil)``, ``<built-in method posix.write>``."""
    filename, line, name = key
    if filename == "~":
        return name
    match = _PACKAGE_FILE.search(filename) or _STDLIB_FILE.search(filename)
    path = match[1] if match else _relative_to(Path(filename), root) or filename
    return f"{path}:{line}({name})"


def load_stats(path: Path) -> pstats.Stats:
    """The stats cProfile wrote to ``path``; :class:`ProfileError` when missing or unreadable."""
    if not path.is_file():
        raise ProfileError(f"no stats file at {path}")
    try:
        return pstats.Stats(str(path))
    except (EOFError, ValueError, TypeError, OSError) as error:
        raise ProfileError(f"unreadable stats file {path}: {error}") from None


def _own_time_by_category(stats: dict[FunctionKey, tuple], rules: CategoryRules
                          ) -> tuple[dict[str, float], dict[FunctionKey, str]]:
    """Seconds of own time per category, and the category each function counts in (for a C
    function split among callers: the one that got most of its time)."""
    direct = {key: rules.classify(key) for key in stats}
    dominant: dict[FunctionKey, str] = {}

    def caller_shares(key: FunctionKey, visiting: frozenset) -> dict[str, float]:
        """{category: seconds} of a caller-counted C function's own time."""
        _, _, own, _, callers = stats[key]
        shares: dict[str, float] = {}
        for caller, (_, _, seconds, _) in callers.items():
            category = direct.get(caller)
            if category is None:  # a C function calling another: take its callers' main category
                category = (resolve(caller, visiting | {key}) if caller in stats and caller not in visiting
                            else OTHER)
            shares[category] = shares.get(category, 0.0) + seconds
        attributed = sum(shares.values())
        if attributed > own > 0:  # recursion can make per-caller times overlap: keep the total exact
            return {category: seconds * own / attributed for category, seconds in shares.items()}
        if own - attributed > 1e-9:  # called from the profiler's root
            shares[OTHER] = shares.get(OTHER, 0.0) + own - attributed
        return shares

    def resolve(key: FunctionKey, visiting: frozenset = frozenset()) -> str:
        if key not in dominant:
            shares = caller_shares(key, visiting)
            dominant[key] = max(shares, key=shares.get) if shares else OTHER
        return dominant[key]

    totals = dict.fromkeys(rules.categories(), 0.0)
    for key, (_, _, own, _, _) in stats.items():
        category = direct[key]
        if category is not None:
            dominant[key] = category
            totals[category] = totals.get(category, 0.0) + own
            continue
        shares = caller_shares(key, frozenset())
        for category, seconds in shares.items():
            totals[category] = totals.get(category, 0.0) + seconds
        dominant.setdefault(key, max(shares, key=shares.get) if shares else OTHER)
    return totals, dominant


def _row(seconds: float, total: float, requests: int) -> dict[str, float | None]:
    return {"seconds": round(seconds, 6), "share": round(seconds / total, 4) if total else None,
            "us_per_request": round(seconds / requests * 1e6, 3) if requests else None}


def profile_dataset(stats_path: Path, requests: int, rules: CategoryRules,
                    top: int = TOP_FUNCTIONS) -> dict[str, Any]:
    """The dataset of one stats file (see the module's docstring): ``profiled_s`` (seconds),
    ``function_calls``, ``requests``, ``us_per_request`` (profiled microseconds per request),
    ``categories`` and ``top_functions`` (rows with ``seconds``, ``share``, ``us_per_request``),
    ``note``."""
    stats = load_stats(stats_path)
    raw: dict[FunctionKey, tuple] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    by_category, counted_in = _own_time_by_category(raw, rules)
    heaviest = sorted(raw, key=lambda key: raw[key][2], reverse=True)[:top]
    return {
        "timer": "wall clock (cProfile's default)",
        "profiled_s": round(total, 6),
        "function_calls": stats.total_calls,  # type: ignore[attr-defined]
        "requests": requests,
        "us_per_request": round(total / requests * 1e6, 3) if requests else None,
        "categories": [{"category": category, **_row(seconds, total, requests)}
                       for category, seconds in by_category.items()],
        "top_functions": [{"function": function_label(key, rules.root), "category": counted_in[key],
                           "calls": raw[key][1], **_row(raw[key][2], total, requests)} for key in heaviest],
        "note": rules.note,
    }
