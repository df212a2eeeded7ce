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


def allocators_run(rss: float, empty: dict[str, int], full: dict[str, int], held: int = 100) -> dict:
    """An untraced run's document with its ledger (the allocators probe: no python_heap part)."""
    return {"summary": {"rss_bytes_per_held_connection": rss}, "parameters": {"connections": held},
            "rss_ledger": {"phases": {"idle-empty": _ledger(empty), "idle-held": _ledger(full)},
                           "per_held_connection": {"rss": rss}}}


UNTRACED_EMPTY = {"untraced": 1_000_000, "pymalloc_free": 100_000, "pymalloc_empty": 0, "malloc_free": 50_000,
                  "untouched": 0, "remainder": 4096}


def test_an_untraced_ledger_whose_memory_in_use_agrees_with_the_heap_explains_rss_by_the_free_space() -> None:
    # 100 connections: 800 KB more in use (8,000 B each, the heap's 8,200 B), free blocks and chunks
    # filled by 200 KB: RSS grew by 6,000 B each.
    full = dict(UNTRACED_EMPTY, untraced=1_800_000, pymalloc_free=0, malloc_free=-50_000)
    result = compare(traced(8200, EMPTY, EMPTY), allocators_run(6000, UNTRACED_EMPTY, full))
    assert result["explained"] is True and result["explained_by"] == "the untraced run's allocators"
    assert result["free_bytes_per_held_connection"] == -2000 and "free space shrank 2,000 B" in result["text"]
    # The ramp's freed memory kept resident: empty pools grew by 700 KB, RSS by 15,000 B each.
    full = dict(UNTRACED_EMPTY, untraced=1_800_000, pymalloc_empty=700_000)
    result = compare(traced(8200, EMPTY, EMPTY), allocators_run(15000, UNTRACED_EMPTY, full))
    assert result["explained"] is True and "free space grew 7,000 B" in result["text"] and "empty pools +7,000 B" in result["text"]


def test_an_untraced_ledger_does_not_explain_a_heap_its_memory_in_use_does_not_match_and_names_other_memory() -> None:
    full = dict(UNTRACED_EMPTY, untraced=1_800_000, pymalloc_empty=700_000)
    assert compare(traced(4000, EMPTY, EMPTY), allocators_run(15000, UNTRACED_EMPTY, full))["explained"] is False
    # Memory neither allocator reports (granian's Rust side): named, with its bytes per connection.
    full = dict(UNTRACED_EMPTY, untraced=1_010_000, remainder=4096 + 3_000_000)
    result = compare(traced(120, EMPTY, EMPTY), allocators_run(30000, UNTRACED_EMPTY, full))
    assert result["explained"] is True and "neither allocator reports (another allocator's" in result["text"]
    assert "+30,000 B" in result["text"]


def test_the_untraced_memory_in_use_may_hold_the_c_allocations_the_traced_ledger_saw_beside_the_heap() -> None:
    # The traced run's ledger: 2,000 B per connection of C allocations beside a heap of 4,000 B; an
    # untraced run with 6,300 B in use (the heap and those) is explained, one with 9,000 B is not.
    traced_run = traced(4000, EMPTY, dict(EMPTY, untraced=1000 + 200_000))
    full = dict(UNTRACED_EMPTY, untraced=1_630_000, pymalloc_empty=400_000)
    assert compare(traced_run, allocators_run(10300, UNTRACED_EMPTY, full))["explained"] is True
    full = dict(UNTRACED_EMPTY, untraced=1_900_000, pymalloc_empty=400_000)
    assert compare(traced_run, allocators_run(13000, UNTRACED_EMPTY, full))["explained"] is False
