"""The report's "Traced heap beside untraced RSS" section (experiments/render/agreement_md.py): which runs
are paired, and that each verdict and account is the comparison's (experiments/dataset/agreement.py)."""

from __future__ import annotations

from pathlib import Path

from experiments.dataset.results import RunResult, Series
from experiments.render.agreement_md import agreement_markdown, agreement_rows

from .test_agreement import EMPTY, traced, untraced

SCENARIO = {"max_conns": 65536, "connections": 100, "path": "/", "keep_alive_timeout_s": 60}


def run(name: str, probe: str, document: dict, **parameters) -> RunResult:
    document = dict(document, probe=probe, status=document.get("status", "complete"),
                    parameters=dict(SCENARIO, **parameters))
    return RunResult(Path("runs") / name, document, Series({}), None, [])


def test_each_traced_run_is_paired_with_an_untraced_run_of_the_same_scenario_the_allocators_run_first() -> None:
    by_subject = {
        "nofd": {"rss": run("1-nofd-rss", "rss", untraced(300)), "tracemalloc": run("2-nofd-tracemalloc", "tracemalloc", traced(290, EMPTY, EMPTY))},
        "myapp": {"rss": run("3-myapp-rss", "rss", untraced(10_000)),
                  "allocators": run("4-myapp-allocators", "allocators", untraced(10_500)),
                  "memray": run("5-myapp-memray", "memray", traced(5_000, EMPTY, dict(EMPTY, untraced=1000 + 100_000)))},
        # Another scenario (other C): not set beside it.
        "other": {"rss": run("6-other-rss", "rss", untraced(500), connections=10),
                  "tracemalloc": run("7-other-tracemalloc", "tracemalloc", traced(100, EMPTY, EMPTY))},
        # An incomplete untraced run is no comparison.
        "broken": {"rss": run("8-broken-rss", "rss", dict(untraced(500), status="incomplete")),
                   "tracemalloc": run("9-broken-tracemalloc", "tracemalloc", traced(100, EMPTY, EMPTY))},
    }
    rows = {row.subject: row for row in agreement_rows(by_subject)}
    assert set(rows) == {"nofd", "myapp"}
    assert (rows["nofd"].traced_probe, rows["nofd"].untraced_run, rows["nofd"].verdict) == ("tracemalloc", "1-nofd-rss", "agree")
    assert (rows["myapp"].traced_probe, rows["myapp"].untraced_run) == ("memray", "4-myapp-allocators")
    assert rows["myapp"].verdict == "NOT explained"  # 5,000 B + 1,000 B beside it is far from 10,500 B

    lines = agreement_markdown(rows.values())
    text = "\n".join(lines)
    assert "| nofd | tracemalloc | 290 B | 300 B | agree |" in text
    assert "| myapp | memray | 5,000 B | 10,500 B | NOT explained |" in text
    # A disagreement is followed by the comparison's own account, word for word.
    assert f"- myapp (`5-myapp-memray` beside `4-myapp-allocators`): {rows['myapp'].comparison['text']}." in text
    assert "nofd (`" not in text  # an agreement needs no account


def test_no_pair_says_so() -> None:
    assert "No subject has" in agreement_markdown([])[0]
