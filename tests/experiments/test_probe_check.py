"""A tracer that cannot run in the subject's interpreter is refused before the run (issue 24, item 2).

memdiet used to start the subject anyway: with memray not importable in its interpreter, ``--probe
memray`` completed with exit 0 and its table showed the RSS figure in a memray row; the
ModuleNotFoundError was only in server.log. The oracle here is an interpreter made without memray (a
fresh virtualenv: it sees none of the packages of the interpreter that made it) and one that ignores
PYTHONPATH (``-I``), so the bootstrap never runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from experiments.errors import BadInput
from experiments.measure import inject
from experiments.measure.scenario import RUN

from ..fixtures import REPO


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """A virtualenv's interpreter with nothing installed (no memray, no pip)."""
    folder = tmp_path_factory.mktemp("bare-venv")
    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / "bin" / "python"
    assert subprocess.run([str(python), "-c", "import memray"], capture_output=True).returncode != 0
    return str(python)


def memdiet(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_the_interpreter_is_found_in_argv_or_the_scripts_first_line(tmp_path) -> None:
    assert inject.interpreter_of(["/usr/bin/python3", "-I", "-X", "dev", "-m", "http.server"], {}) == \
        ["/usr/bin/python3", "-I", "-X", "dev"]
    assert inject.interpreter_of([sys.executable, "app.py", "-I"], {}) == [sys.executable]
    script = tmp_path / "serve"
    script.write_text(f"#!{sys.executable} -E\nprint('hi')\n")
    assert inject.interpreter_of([str(script)], {}) == [sys.executable, "-E"]
    script.write_text("#!/usr/bin/env python3\n")
    found = inject.interpreter_of([str(script)], {"PATH": str(Path(sys.executable).parent)})
    assert found == [str(Path(sys.executable).parent / "python3")]
    script.write_text("#!/bin/sh\necho hi\n")
    assert inject.interpreter_of([str(script)], {}) is None


@pytest.mark.parametrize("probe", ["tracemalloc", "memray"])
def test_an_interpreter_that_can_run_the_probe_passes(probe: str, tmp_path) -> None:
    said = inject.check_interpreter(probe, [sys.executable, "-m", "http.server"], dict(os.environ),
                                    tmp_path, RUN, "subject")
    assert said["executable"] == sys.executable


def test_memray_missing_is_refused_naming_the_interpreter_and_the_module(bare_python: str, tmp_path) -> None:
    with pytest.raises(BadInput) as refused:
        inject.check_interpreter("memray", [bare_python, "-m", "http.server"], {"PATH": "/usr/bin:/bin"},
                                 tmp_path, RUN, "bare")
    message = str(refused.value)
    assert bare_python in message and "'memray'" in message and "\n" not in message


def test_a_memray_run_in_an_interpreter_without_memray_exits_2_before_it_starts(bare_python: str, tmp_path) -> None:
    result = memdiet("run", "--cmd", f"{bare_python} -m http.server --bind 127.0.0.1 {{port}}", "--probe", "memray",
                     "--connections", "4", "--idle", "0.2", "--load", "0.2", "--runs-dir", str(tmp_path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert bare_python in lines[0] and "module 'memray' is not importable" in lines[0]
    # Nothing was measured: no server log, no RSS series.
    (run_dir,) = tmp_path.iterdir()
    assert not (run_dir / "server.log").exists()


def test_an_interpreter_that_ignores_pythonpath_is_refused(tmp_path) -> None:
    with pytest.raises(BadInput, match=r"bootstrap did not run there .*-I or -E"):
        inject.check_interpreter("tracemalloc", [sys.executable, "-I", "-m", "http.server"],
                                 dict(os.environ), tmp_path, RUN, "isolated")


def test_a_program_that_is_not_python_is_refused(tmp_path) -> None:
    with pytest.raises(BadInput, match="use --probe rss"):
        inject.check_interpreter("memray", ["/bin/sleep", "1"], {}, tmp_path, RUN, "sleep")
