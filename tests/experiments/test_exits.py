"""experiments/measure/exits.py: the kernel's exit events of processes this test starts (a child killed
by a signal, one that exits with a code), and how a death is joined with the phase and the clients."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from experiments.dataset.results import Phase
from experiments.measure.exits import ExitWatcher, death_text, deaths


@pytest.fixture
def watcher():
    one = ExitWatcher()
    one.start()
    yield one
    one.stop()


def _wait_for(watcher: ExitWatcher, pid: int) -> tuple[float, int]:
    deadline = time.monotonic() + 10
    while (seen := watcher.exit_of(pid)) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert seen is not None, watcher.error
    return seen


def test_a_killed_child_and_an_exit_code_are_seen_with_their_time(watcher) -> None:
    if watcher.error:  # not root: CI runs as root, where a skip fails the run (MEMDIET_STRICT_SKIPS)
        pytest.skip(watcher.error)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    before = time.monotonic()
    sleeper.send_signal(signal.SIGKILL)  # a process this test started, by its pid
    sleeper.wait(10)
    when, status = _wait_for(watcher, sleeper.pid)
    assert before - 0.5 <= when <= time.monotonic() + 0.5
    time.sleep(0.6)  # its exit after idle-held's end below
    exiting = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    assert exiting.wait(30) == 3
    _when, code = _wait_for(watcher, exiting.pid)
    changes = [{"pid": sleeper.pid, "name": "python", "event": "ended", "phase": "idle-held", "between_s": [0, 9]},
               {"pid": exiting.pid, "name": "python", "event": "ended", "phase": "load", "between_s": [0, 9]}]
    t0 = before - 5.0  # the run's clock: the kill at 5 s, in idle-held
    phases = [Phase("idle-empty", 0.0, 4.0), Phase("idle-held", 4.0, 5.5), Phase("load", 5.5, 400.0)]
    closed = [{"phase": "idle-held", "time_s": 5.2, "closed": 7, "how": {"reset_idle": {"count": 7}}},
              {"phase": "idle-held", "time_s": 5.45, "closed": 1, "how": {"closed_idle": {"count": 1}}},
              {"phase": "idle-held", "time_s": 3.0, "closed": 2, "how": {}}]
    killed, exited = deaths(changes, watcher, t0, phases, closed)
    assert killed["signal"] == "SIGKILL" and killed["exit_code"] is None and killed["phase"] == "idle-held"
    assert killed["clients_lost"] == 8 and killed["lost_how"] == {"reset_idle": 7, "closed_idle": 1}
    assert "killed by SIGKILL; 8 clients ended within 1 s after it" in death_text(killed)
    assert exited["exit_code"] == 3 and exited["signal"] is None and exited["phase"] == "load"
    assert exited["clients_lost"] is None and "counted in idle-held and ramp only" in death_text(exited)


def test_without_an_exit_event_the_status_is_said_not_seen() -> None:
    change = {"pid": 2 ** 22 + 12345, "name": "worker", "event": "ended", "phase": "ramp or idle-held",
              "between_s": [3.0, 3.4]}
    (death,) = deaths([change], ExitWatcher(), 0.0, [], [])
    assert death["signal"] is None and death["exit_code"] is None and "not seen" in death["seen"]
    assert "its exit status not seen" in death_text(death) and death["phase"] == "ramp or idle-held"
