"""Viewing a dump runs no code (issue 16, "Also"): ``.tmsnap`` files are pickles, and the viewer
loads them with an unpickler that admits only tracemalloc's own classes and plain containers."""

from __future__ import annotations

import os
import pickle
import tracemalloc

import pytest

from tests.fixtures.viewer_support import tracemalloc_series, viewer  # noqa: F401 (fixture)
from tracemalloc_viewer import ViewerInputError, load_snapshot
from tracemalloc_viewer.sources.tracemalloc_dumps import snapshot_sites
from tracemalloc_viewer.stats import statistics


class _RunsCode:
    """Unpickles as ``callable(*args)``: what a crafted dump does."""

    def __init__(self, callable_, *args):
        self.callable, self.args = callable_, args

    def __reduce__(self):
        return self.callable, self.args


def _crafted(path, marker, how: str) -> None:
    if how == "os.system":
        payload = _RunsCode(os.system, f"touch {marker}")
    elif how == "builtins.exec":
        payload = _RunsCode(exec, f"open({str(marker)!r}, 'w').close()")
    else:  # hidden inside a real snapshot's state, where a loader that checks only the result would look
        snapshot = tracemalloc.Snapshot([], 1)
        snapshot.traceback_limit = _RunsCode(exec, f"open({str(marker)!r}, 'w').close()")
        payload = snapshot
    path.write_bytes(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))


@pytest.mark.parametrize("how, refused", [("os.system", "posix.system"), ("builtins.exec", "builtins.exec"),
                                          ("inside a snapshot", "builtins.exec")])
@pytest.mark.parametrize("command", ["top", "chart"])
def test_a_crafted_dump_is_refused_in_one_line_and_runs_nothing(tmp_path, how, refused, command):
    dump, marker = tmp_path / "evil.tmsnap", tmp_path / "ran"
    _crafted(dump, marker, how)
    result = viewer(command, dump)
    assert not marker.exists(), "the dump's code ran"
    assert result.returncode == 2, (result.stdout, result.stderr)
    [line] = result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    assert str(dump) in line and refused in line, line


def test_load_snapshot_refuses_with_the_viewers_error(tmp_path):
    dump, marker = tmp_path / "evil.tmsnap", tmp_path / "ran"
    _crafted(dump, marker, "os.system")
    with pytest.raises(ViewerInputError, match="refused"):
        load_snapshot(dump)
    assert not marker.exists()


def test_a_real_dump_loads_as_tracemalloc_loads_it(tracemalloc_series):
    for dump in tracemalloc_series.dumps:
        ours, theirs = load_snapshot(dump), tracemalloc.Snapshot.load(str(dump))
        assert isinstance(ours, tracemalloc.Snapshot)
        assert ours.traceback_limit == theirs.traceback_limit
        for by in ("lineno", "traceback"):
            assert ours.statistics(by) == theirs.statistics(by)
        assert statistics(snapshot_sites(ours)) == statistics(snapshot_sites(theirs))
