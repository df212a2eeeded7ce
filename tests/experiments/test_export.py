"""`memdiet export RUN_DIR --format csv|json`: the run's rss.csv, heap.csv and sites.csv merged on one
time axis, checked cell by cell against those files on real runs; bad run folders give one line, exit 2."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.viewer.test_run_folders import (  # noqa: F401 (fixtures)
    copy_run,
    memdiet,
    memray_run,
    one_error_line,
    read_csv,
    tracemalloc_run,
)

RSS = ("rss_bytes", "uss_bytes", "pss_bytes")
HEAP = ("heap_bytes", "peak_bytes", "tracer_bytes")


def export_csv(run: Path, tmp_path: Path) -> tuple[list[str], list[dict[str, str]]]:
    out = tmp_path / "export.csv"
    result = memdiet("export", run, "--format", "csv", "-o", out)
    assert result.returncode == 0, result.stderr
    with open(out, newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def expected_cells(run: Path) -> dict[tuple[float, str], int]:
    """{(time, column): bytes} for every value the run's files hold."""
    cells: dict[tuple[float, str], int] = {}
    for name, columns in (("rss.csv", RSS), ("heap.csv", HEAP)):
        if (run / name).exists():
            for row in read_csv(run / name):
                for column in columns:
                    if row[column] != "":
                        cells[(float(row["time_s"]), column)] = int(row[column])
    if (run / "sites.csv").exists():
        for row in read_csv(run / "sites.csv"):
            key = (float(row["time_s"]), "site:" + row["site"])
            cells[key] = cells.get(key, 0) + int(row["bytes"])
    return cells


def check_export_matches_files(run: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    has_heap = (run / "heap.csv").exists()
    sites = {"site:" + row["site"] for row in read_csv(run / "sites.csv")} if (run / "sites.csv").exists() else set()
    assert columns[: 4 + 3 * has_heap] == ["time_s", *RSS, *(HEAP if has_heap else ())]
    assert set(columns[4 + 3 * has_heap:]) == sites and len(columns) == len(set(columns))
    expected = expected_cells(run)
    times = [float(row["time_s"]) for row in rows]
    assert times == sorted({time for time, _column in expected}), "one row per distinct time, in order"
    found = {(float(row["time_s"]), column): int(value)
             for row in rows for column, value in row.items() if column != "time_s" and value != ""}
    assert found == expected


def test_csv_export_of_a_tracemalloc_run_holds_its_files_exactly(tracemalloc_run, tmp_path):
    columns, rows = export_csv(tracemalloc_run, tmp_path)
    check_export_matches_files(tracemalloc_run, columns, rows)
    heap = [int(row["heap_bytes"]) for row in rows if row["heap_bytes"]]
    assert max(heap) == max(int(row["heap_bytes"]) for row in read_csv(tracemalloc_run / "heap.csv"))
    # The sites of a detailed snapshot add up to the heap the probe saw then (measured a moment
    # after the heap row of the same time, so close to it, not equal).
    detailed = [row for row in rows if any(value for column, value in row.items() if column.startswith("site:"))]
    assert detailed
    for row in detailed:
        assert sum(int(value) for column, value in row.items() if column.startswith("site:") and value) > 0.9 * int(row["heap_bytes"])


def test_json_export_is_the_same_table_with_the_phases(tracemalloc_run, tmp_path):
    columns, rows = export_csv(tracemalloc_run, tmp_path)
    result = memdiet("export", tracemalloc_run, "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema"] == "memdiet.export/1"
    assert (document["layout"], document["probe"]) == ("packed", "tracemalloc")
    assert document["phases"] == json.loads((tracemalloc_run / "result.json").read_text())["phases"]
    assert document["columns"] == columns
    as_text = [{column: "" if value is None else str(value) for column, value in zip(columns, row)}
               for row in document["rows"]]
    assert [[_number(v) for v in row.values()] for row in as_text] == [[_number(v) for v in row.values()] for row in rows]
    assert all(isinstance(value, int) for row in document["rows"] for value in row[1:] if value is not None)


def _number(text: str) -> float | None:
    return None if text == "" else float(text)


def test_csv_export_of_a_memray_run(memray_run, tmp_path):
    columns, rows = export_csv(memray_run, tmp_path)
    check_export_matches_files(memray_run, columns, rows)


def test_export_to_stdout_by_default(tracemalloc_run):
    result = memdiet("export", tracemalloc_run)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0][0] == "time_s" and len(rows) > 10


@pytest.mark.parametrize("how, message", [
    ("not a run folder", "not a memdiet run folder"),
    ("truncated result.json", "not valid JSON"),
    ("empty series", "empty series"),
])
def test_bad_run_folder_gives_one_line_and_exit_2(tracemalloc_run, tmp_path, how, message):
    run = copy_run(tracemalloc_run, tmp_path / "run")
    if how == "not a run folder":
        (run / "result.json").unlink()
    elif how == "truncated result.json":
        text = (run / "result.json").read_text()
        (run / "result.json").write_text(text[: len(text) // 3])
    else:
        for name in ("rss.csv", "heap.csv"):
            (run / name).write_text((run / name).read_text().splitlines()[0] + "\n")
    result = memdiet("export", run, "--format", "json")
    assert message in one_error_line(result)
    assert result.stdout == ""
