"""experiments/dataset/agreement.py: a traced heap against an untraced RSS per held connection, and what
of the difference the traced run's RSS ledger explains (the real subjects' runs: test_real_subjects.py)."""

from __future__ import annotations

import pytest

from experiments.dataset.agreement import AGREE, beside_heap, compare


def _ledger(parts: dict[str, int]) -> dict:
    return {"parts": [{"part": name, "bytes": value} for name, value in parts.items()]}


def traced(heap: float, empty: dict[str, int], full: dict[str, int], held: int = 100) -> dict:
    return {"summary": {"heap_bytes_per_held_connection": heap}, "parameters": {"connections": held},
            "rss_ledger": {"phases": {"idle-empty": _ledger(empty), "idle-held": _ledger(full)},
                           "per_held_connection": {"rss": 1.0}}}


def untraced(rss: float | None) -> dict:
    return {"summary": {"rss_bytes_per_held_connection": rss}}


EMPTY = {"python_heap": 0, "untraced": 1000, "rounding": 0, "stacks": 8192, "malloc_free": 0, "tracer": 0}


def test_figures_within_the_bound_agree_without_an_explanation() -> None:
    result = compare(traced(9000, EMPTY, EMPTY), untraced(10000))
    assert result["agrees"] is True and result["explained"] is None and result["heap_over_rss"] == 0.9


def test_a_gap_the_ledger_accounts_for_is_explained_with_its_parts_and_not_the_allocators_free_space() -> None:
    # 100 connections: 300 KB of C allocations and 100 KB of stacks beside a heap of 5 KB each; the
    # malloc free chunks (the tracer's churn) and the tracer's tables are not counted.
    full = dict(EMPTY, untraced=1000 + 300_000, stacks=8192 + 100_000, malloc_free=5_000_000, tracer=400_000)
    beside = beside_heap(traced(5000, EMPTY, full))
    assert beside["parts_bytes_per_held_connection"] == {"untraced": 3000, "rounding": 0, "stacks": 1000}
    assert beside["in_use_bytes_per_held_connection"] == 9000
    result = compare(traced(5000, EMPTY, full), untraced(10000))
    assert result["agrees"] is False and result["explained"] is True
    assert "C code" in result["text"] and "thread stacks 1,000 B" in result["text"] and "explained" in result["text"]


def test_a_gap_the_ledger_does_not_account_for_is_unexplained_and_says_by_how_much() -> None:
    full = dict(EMPTY, untraced=1000 + 100_000)
    result = compare(traced(5000, EMPTY, full), untraced(10000))
    assert result["agrees"] is False and result["explained"] is False
    assert result["in_use_bytes_per_held_connection"] == 6000 and "-40% from RSS" in result["text"]


def test_the_connections_held_divide_the_parts_and_a_missing_figure_is_not_compared() -> None:
    doc = traced(5000, EMPTY, dict(EMPTY, untraced=1000 + 50_000))
    doc["held"] = {"held": 10}
    assert beside_heap(doc)["parts_bytes_per_held_connection"]["untraced"] == 5000
    assert compare(doc, untraced(None))["agrees"] is None
    doc["rss_ledger"]["per_held_connection"] = None  # the ledger left it out (a tree change): nothing beside
    assert beside_heap(doc) is None
    assert compare(doc, untraced(20000))["explained"] is False


@pytest.mark.parametrize("heap", [10000 * (1 - AGREE), 10000 * (1 + AGREE)])
def test_the_bound_is_inclusive(heap: float) -> None:
    assert compare(traced(heap, EMPTY, EMPTY), untraced(10000))["agrees"] is True
