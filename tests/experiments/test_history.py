"""The regression history: ``memdiet regress`` appends one record per check, ``memdiet history``
draws the trends and flags slow creeps.

The creep rule (experiments/regress/history.py) is checked on literal series. End to end, six checks
of fake matrices (tests/fixtures/fake_runs.py) on six commits: nofd's slot grows 0.4% a commit while
the baseline is remade from the commit before each time, so every check passes, until the sixth
adds 10% at once and fails; the history flags the creep of the first five and the sixth's failure.
One record is made from the session's real matrix, to show what a real check records.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.dataset.results import find_runs
from experiments.regress import Creep, Tolerance, find_creeps, read_history, trends

from ..conftest import QuickMatrix
from ..fixtures.fake_runs import FAKE_BYTES_PER_SLOT, FAKE_ENVIRONMENT, write_fake_matrix

ONE_PERCENT = Tolerance(0.01, 0.0, "")


# --- the creep rule, on literal series -----------------------------------------------------------
@pytest.mark.parametrize("values, worse, expected", [
    # Each step +0.6 (within 1%), the sum from 100 beyond 1.0 from the third point on: one creep, 0 to 4.
    ([100, 100.6, 101.2, 101.8, 102.4], +1, [(0, 4, 4, 2.4, 1.0)]),
    # Noise around 100: the largest rise from a best point is 0.8, within 1%.
    ([100, 100.8, 99.9, 100.7, 100.1], +1, []),
    # A jump of 2% is a regression of its own (judged by the check), not a creep; after it, +1.0 from 102 is within 1.02.
    ([100, 102, 102.5, 103], +1, []),
    # Getting better is no creep.
    ([100, 99.4, 98.8, 98.2], +1, []),
    # Where a drop is worse (req/s): steps of -8 each within 1%; -8 is not beyond 1% of 1,000, -16 and -24 are.
    ([1000, 992, 984, 976], -1, [(0, 3, 3, 24.0, 10.0)]),
    # A point without the figure neither breaks the run nor counts as a step.
    ([100, None, 100.6, 101.2], +1, [(0, 3, 2, 1.2, 1.0)]),
    # Back within the sum's tolerance: the creep ends where it last was beyond.
    ([100, 100.6, 101.2, 100.5, 100.3], +1, [(0, 2, 2, 1.2, 1.0)]),
    # The best point moves: the sum counts from the lowest value of the run so far.
    ([100, 99, 99.6, 100.2, 100.4], +1, [(1, 4, 3, 1.4, 0.99)]),
])
def test_creep_rule(values, worse, expected):
    creeps = find_creeps(values, [ONE_PERCENT] * len(values), worse)
    assert [(c.start, c.end, c.steps) for c in creeps] == [e[:3] for e in expected]
    for creep, (*_, drift, allowed) in zip(creeps, expected):
        assert creep.drift == pytest.approx(drift) and creep.allowed == pytest.approx(allowed)


def test_exact_tolerance_never_creeps():
    exact = Tolerance(0.0, 0.0, "")
    assert find_creeps([24, 24, 24, 24], [exact] * 4, +1) == []
    assert find_creeps([24, 25, 26], [exact] * 3, +1) == []  # every step is a change of its own


def test_each_point_is_judged_by_its_own_records_tolerance():
    """The tolerance of the later point applies: a baseline remade with a looser tolerance at point
    2 lets the sum through."""
    loose = Tolerance(0.05, 0.0, "")
    assert find_creeps([100, 100.6, 101.2], [ONE_PERCENT, ONE_PERCENT, loose], +1) == []
    assert find_creeps([100, 100.6, 101.2], [ONE_PERCENT] * 3, +1) == [Creep("", "", 0, 2, 2, pytest.approx(1.2), 1.0)]


# --- six checks on six commits, end to end ---------------------------------------------------------
CHECKS = 6
CREEP_STEP = 1.004  # +0.4% a commit, within bytes_per_slot's 1%


def commit(index: int) -> str:
    return f"{index + 1:x}" * 40


def nofd_slot(index: int) -> float:
    """nofd's bytes per slot at commit ``index``: creeping 0.4% a commit, then 10% at once at the last."""
    return FAKE_BYTES_PER_SLOT["nofd"] * CREEP_STEP ** index * (1.10 if index == CHECKS else 1.0)


#: Two layouts are enough to show one creeping beside one that does not (and keep the charts quick).
FAKE_LAYOUTS = ("nofd", "packed")


def fake_commit(root: Path, index: int) -> list[str]:
    """The fake matrix of commit ``index``: nofd's slot at :func:`nofd_slot`, packed's unchanged."""
    environment = {**FAKE_ENVIRONMENT, "commit": commit(index)}
    stamp = f"202601{index + 1:02d}T000000Z"
    paths = write_fake_matrix(root, layouts=("packed",), stamp=stamp, seed=index, rss_noise_bytes=0,
                              environment=environment)
    paths += write_fake_matrix(root, layouts=("nofd",), stamp=stamp, seed=index, rss_noise_bytes=0,
                               environment=environment, bytes_per_slot=nofd_slot(index))
    return list(map(str, paths))


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    """The history of six checks: check k compares commit k's matrix with a baseline made from commit
    k-1's (the baseline remade every time, as a project that refreshes it on every merge does)."""
    root = tmp_path_factory.mktemp("history")
    path = root / "history.jsonl"
    previous = fake_commit(root / "m0", 0)
    for index in range(1, CHECKS + 1):
        baseline = root / f"baseline-{index}.json"
        assert main(["baseline", *previous, "-o", str(baseline)]) == 0
        runs = fake_commit(root / f"m{index}", index)
        code = main(["regress", "--baseline", str(baseline), "-o", str(root / f"out-{index}"), "--history", str(path),
                     *runs])
        assert code == (1 if index == CHECKS else 0), index
        previous = runs
    assert not (root / "out-1" / "history.jsonl").exists()  # --history replaced the default
    return path


def test_regress_appends_one_record_per_check(history):
    records = read_history(history)
    assert [r.commit for r in records] == [commit(i) for i in range(1, CHECKS + 1)]
    assert [r.passed for r in records] == [True] * (CHECKS - 1) + [False]
    assert [r.label for r in records] == [commit(i)[:7] for i in range(1, CHECKS + 1)]
    last = records[-1]
    # The slot's 10% (8.4 B x 4,096 slots = 35 KB) is past the heap totals' 32 KiB floor too.
    assert last.regressed() == [("nofd", "table_heap_bytes"), ("nofd", "bytes_per_slot"), ("nofd", "idle_heap_bytes"),
                                ("nofd", "held_heap_bytes")]
    point = last.figures["nofd"]["bytes_per_slot"]
    assert point.verdict == "REGRESSED"
    assert point.value == pytest.approx(nofd_slot(CHECKS), abs=0.001)
    assert point.baseline == pytest.approx(nofd_slot(CHECKS - 1), abs=0.001)
    assert point.allowed == pytest.approx(0.01 * point.baseline)
    assert last.tolerances["bytes_per_slot"] == Tolerance(0.01, 0.0, "", "fixed")
    assert last.machine["cpu_model"] == FAKE_ENVIRONMENT["cpu_model"]
    # Every figure of every layout is in every record.
    assert all(sum(len(f) for f in r.figures.values()) == sum(len(f) for f in records[0].figures.values()) for r in records)


def test_the_creep_is_flagged_though_every_step_passed(history):
    by_figure = {(t.layout, t.metric): t for t in trends(read_history(history))}
    slot = by_figure["nofd", "bytes_per_slot"]
    [creep] = slot.creeps
    # Checks 1-5 (indexes 0-4): from 80.7 x 1.004 to 80.7 x 1.004^5, +1.6% against 1% of the start.
    assert (creep.start, creep.end, creep.steps) == (0, 4, 4)
    assert creep.drift == pytest.approx(nofd_slot(5) - nofd_slot(1), abs=0.001)
    assert creep.allowed == pytest.approx(0.01 * nofd_slot(1), abs=0.001)
    assert [c.end for c in by_figure["nofd", "table_heap_bytes"].creeps] == [4]
    # No other figure crept: packed did not change, nofd's heap totals moved within 32 KiB.
    crept = {key for key, trend in by_figure.items() if trend.creeps}
    assert crept == {("nofd", "bytes_per_slot"), ("nofd", "table_heap_bytes")}


def test_memdiet_history_draws_the_trend_and_flags_creep_and_failure(history, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["history", "--history", str(history), "-o", str(out)])
    printed = capsys.readouterr().out.splitlines()
    assert code == 0
    assert printed[0] == (f"memdiet history: {CHECKS} checks of {CHECKS} commits in {history}; 2 slow creeps; "
                          "1 check failed")
    assert printed[1] == f"report: {out / 'history.md'} (chart {out / 'history'}.png)"
    for suffix in ("png", "svg"):
        assert (out / f"history.{suffix}").stat().st_size > 10_000
    markdown = (out / "history.md").read_text()
    creeps = markdown.split("## Slow creeps", 1)[1].split("## Failed checks", 1)[0]
    assert f"- **nofd** `bytes_per_slot`: +1.3 B (+1.61%) over 4 steps from check 1 ({commit(1)[:7]}) to check 5 " \
           f"({commit(5)[:7]}), each step within its tolerance; +0.8 B allowed" in creeps, creeps
    failed = markdown.split("## Failed checks", 1)[1].split("## Trends", 1)[0]
    assert f"- check 6 ({commit(6)[:7]}, " in failed and "nofd `bytes_per_slot` REGRESSED (82.3 B → 90.9 B)" in failed
    assert "![history](history.png)" in markdown
    table = markdown.split("### `bytes_per_slot`", 1)[1].split("###", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0].split("|")[1:-1] == [" check ", " commit ", " time ", " nofd ", " packed "]
    assert len(rows) == 2 + CHECKS + 1  # header, rule, one row per check, the latest baseline
    assert {row.split("|")[5].strip() for row in rows[2:-1]} == {"16.0 B (0)"}  # packed: no change
    nofd = [row.split("|")[4].strip() for row in rows[2:]]
    assert nofd[0] == "81.0 B (+0.40%)"
    assert nofd[1:5] == [f"{value} (+0.40%) ↗ creep" for value in ("81.3 B", "81.7 B", "82.0 B", "82.3 B")]
    assert nofd[5] == "**90.9 B (+10.4%) REGRESSED**"
    assert nofd[6] == "82.3 B +0.8 B"  # the baseline the last check used, and its tolerance


def test_fail_on_creep_exits_1_while_the_creep_reaches_the_latest_check(history, tmp_path, capsys):
    """The first five checks alone end in the creep: --fail-on-creep fails; with the sixth (a jump,
    judged as a regression of its own) the creep no longer reaches the latest check."""
    first_five = tmp_path / "five.jsonl"
    first_five.write_text("".join(history.read_text().splitlines(keepends=True)[:5]))
    one_panel = ["--metrics", "bytes_per_slot", "--layouts", "nofd"]
    assert main(["history", "--history", str(first_five), "-o", str(tmp_path / "five"), "--fail-on-creep", *one_panel]) == 1
    assert main(["history", "--history", str(history), "-o", str(tmp_path / "six"), "--fail-on-creep", *one_panel]) == 0
    # --last 4 drops the creep's best point: 4 checks, +1.2% from 81.4 B is still beyond 1%.
    assert main(["history", "--history", str(first_five), "-o", str(tmp_path / "last"), "--last", "4",
                 "--metrics", "bytes_per_slot", "--layouts", "nofd,packed"]) == 0
    out = capsys.readouterr().out
    assert "memdiet history: 4 checks of 4 commits" in out
    markdown = (tmp_path / "last" / "history.md").read_text()
    assert "from check 1 (" + commit(2)[:7] + ") to check 4" in markdown
    assert "### `idle_rss_bytes`" not in markdown and "| check | commit | time | nofd | packed |" in markdown


@pytest.mark.parametrize("content, arguments, expected", [
    (None, [], "no such history file"),
    ("", [], "the history holds no records"),
    ('{"schema": "memdiet.history/1"\n', [], "history.jsonl:1: not a JSON record"),
    ('[1, 2]\n', [], "history.jsonl:1: not a history record"),
    ("GOOD\nGOOD\n{\n", [], "history.jsonl:3: not a JSON record"),
    ("GOOD\n", ["--metrics", "bytes_per_slot,nope"], "no metric nope in the history"),
    ("GOOD\n", ["--layouts", "tiny"], "no layout tiny in the history"),
])
def test_a_bad_history_is_one_line_and_exit_2(history, tmp_path, capsys, content, arguments, expected):
    path = tmp_path / "history.jsonl"
    if content is not None:
        path.write_text(content.replace("GOOD", history.read_text().splitlines()[0]))
    code = main(["history", "--history", str(path), "-o", str(tmp_path / "out"), *arguments])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"memdiet history: error: {path}") and expected in err, err
    assert not (tmp_path / "out" / "history.md").exists()


def test_a_record_is_appended_after_a_last_line_without_its_newline(history, tmp_path):
    from experiments.regress import append_record

    path = tmp_path / "history.jsonl"
    first, second = history.read_text().splitlines()[:2]
    path.write_text(first)  # no newline: a writer stopped after the record, before "\n"
    append_record(path, json.loads(second))
    assert [r.commit for r in read_history(path)] == [commit(1), commit(2)]


def test_a_history_that_cannot_be_appended_to_is_bad_input(tmp_path):
    from experiments.regress import HistoryError, append_record

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(HistoryError, match=r"a-file/history.jsonl: cannot append to the history: "):
        append_record(blocker / "history.jsonl", {"schema": "memdiet.history/1"})


# --- a record of a real check ------------------------------------------------------------------------
def test_a_real_check_records_its_commit_machine_and_every_figure(quick_matrix: QuickMatrix, tmp_path, capsys):
    runs = [str(path) for path in find_runs(quick_matrix.runs)]
    code = main(["regress", "--baseline", str(quick_matrix.baseline), "-o", str(tmp_path), *runs])
    assert code == 0, capsys.readouterr().out
    assert capsys.readouterr().out.splitlines()[-2].endswith(f"; history: {tmp_path / 'history.jsonl'}")
    [record] = read_history(tmp_path / "history.jsonl")
    environment = json.loads((Path(runs[0]) / "result.json").read_text())["environment"]
    assert record.commit == environment["commit"] and record.machine["kernel"] == environment["kernel"]
    rows = json.loads((tmp_path / "regression.json").read_text())["rows"]
    assert sum(len(by_name) for by_name in record.figures.values()) == len(rows)
    assert record.figures["nofd"]["bytes_per_slot"].value == next(
        r["now"] for r in rows if (r["layout"], r["metric"]) == ("nofd", "bytes_per_slot"))
    assert main(["regress", "--baseline", str(quick_matrix.baseline), "-o", str(tmp_path / "none"), "--no-history",
                 *runs]) == 0
    assert not (tmp_path / "none" / "history.jsonl").exists()
