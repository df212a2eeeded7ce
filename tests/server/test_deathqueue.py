"""The expiry queue threaded through each layout's table, and its wrapping millisecond clock."""

from __future__ import annotations

import random

import pytest

from server.deathqueue import CLOCK_MODULUS, DeathQueue, clock_add, is_expired
from server.layouts import ConnectionTable, make_table
from server.layouts.base import ALIVE, NO_SLOT, QUEUED

SLOTS = 32


@pytest.fixture
def table(layout: str) -> ConnectionTable:
    table = make_table(layout, SLOTS)
    for fd in range(SLOTS):
        table.open(fd, ("127.0.0.1", 10_000 + fd))
    return table


@pytest.fixture
def queue(table: ConnectionTable) -> DeathQueue:
    return DeathQueue(table)


def assert_consistent(queue: DeathQueue, expected: list[int]) -> None:
    """The queue holds exactly ``expected`` in order: links agree both ways, ``length`` and the
    QUEUED flags match, and every slot is still ALIVE."""
    table = queue.table
    assert list(queue) == expected
    backwards = []
    fd = queue.tail
    while fd != NO_SLOT:
        backwards.append(fd)
        fd = table.prev(fd)
    assert backwards == expected[::-1]
    assert queue.length == len(expected)
    queued = {fd for fd in range(SLOTS) if table.flags(fd) & QUEUED}
    assert queued == set(expected)
    assert all(table.flags(fd) & ALIVE for fd in range(SLOTS))


def test_pop_expired_takes_deadlines_at_or_before_now_in_order(queue: DeathQueue) -> None:
    for fd, deadline in ((5, 100), (3, 200), (9, 200), (7, 300)):
        queue.push(fd, deadline)
    assert queue.next_deadline() == 100
    assert queue.pop_expired(99) == []
    assert queue.pop_expired(200) == [5, 3, 9]  # a deadline equal to now has expired
    assert_consistent(queue, [7])
    assert queue.next_deadline() == 300
    assert queue.pop_expired(10_000) == [7]
    assert_consistent(queue, [])
    assert queue.next_deadline() is None


@pytest.mark.parametrize("removed", [[4], [1], [6], [1, 6, 4], [4, 4]], ids=str)
def test_remove_unlinks_head_middle_tail(queue: DeathQueue, removed: list[int]) -> None:
    order = [1, 4, 6]
    for deadline, fd in enumerate(order):
        queue.push(fd, deadline)
    for fd in removed:
        queue.remove(fd)  # removing one no longer queued does nothing
    assert_consistent(queue, [fd for fd in order if fd not in removed])


def test_remove_of_unqueued_slot_changes_nothing(queue: DeathQueue) -> None:
    queue.push(2, 10)
    queue.remove(3)
    assert_consistent(queue, [2])


def test_refresh_moves_to_tail_with_new_deadline(queue: DeathQueue) -> None:
    for deadline, fd in enumerate([1, 2, 3]):
        queue.push(fd, deadline)
    queue.refresh(1, 50)
    assert_consistent(queue, [2, 3, 1])
    queue.refresh(1, 60)  # already the tail: only its deadline changes
    assert_consistent(queue, [2, 3, 1])
    assert queue.table.expiry(1) == 60
    queue.refresh(8, 70)  # not queued yet: refresh queues it
    assert_consistent(queue, [2, 3, 1, 8])
    assert queue.pop_expired(60) == [2, 3, 1]


def test_refresh_with_the_latest_deadline_keeps_the_place(queue: DeathQueue) -> None:
    """A busy connection refreshed again within one deadline tick is not relinked: every slot behind
    it has the same (latest) deadline, so the queue stays sorted and expires them together."""
    queue.push(1, 10)
    for fd in (2, 3, 4):
        queue.push(fd, 20)
    links_before = [(queue.table.prev(fd), queue.table.next(fd)) for fd in (1, 2, 3, 4)]
    queue.refresh(2, 20)
    queue.refresh(3, 20)
    assert_consistent(queue, [1, 2, 3, 4])
    assert [(queue.table.prev(fd), queue.table.next(fd)) for fd in (1, 2, 3, 4)] == links_before
    queue.refresh(1, 20)  # a later deadline than its own: it moves behind the others
    assert_consistent(queue, [2, 3, 4, 1])
    queue.refresh(2, 30)
    assert_consistent(queue, [3, 4, 1, 2])
    assert queue.pop_expired(19) == []
    assert queue.pop_expired(20) == [3, 4, 1]


def test_clock_wraps_around() -> None:
    last = CLOCK_MODULUS - 1
    assert clock_add(last, 1) == 0
    assert clock_add(last - 5, 20) == 14
    assert is_expired(last, 3)  # 4 ms after the wrap, a deadline just before it has passed
    assert not is_expired(3, last)  # and one just after it has not
    assert is_expired(7, 7)
    assert not is_expired(clock_add(7, CLOCK_MODULUS // 4), 7)


def test_queue_across_the_wrap(queue: DeathQueue) -> None:
    before_wrap = CLOCK_MODULUS - 10
    queue.push(1, before_wrap)
    queue.push(2, CLOCK_MODULUS - 1)  # the largest deadline must fit every layout (int32 in packed)
    queue.push(3, clock_add(before_wrap, 30))  # 20 after the wrap
    assert queue.table.expiry(2) == CLOCK_MODULUS - 1
    assert queue.pop_expired(before_wrap - 1) == []
    assert queue.pop_expired(CLOCK_MODULUS - 1) == [1, 2]
    assert queue.pop_expired(19) == []
    assert queue.pop_expired(20) == [3]
    assert_consistent(queue, [])


def test_random_operations_match_a_list_model(queue: DeathQueue) -> None:
    """Pushes, refreshes, removes and expiries in random order, on a clock that wraps midway,
    checked against a plain list after every step."""
    rng = random.Random(20131208)
    model: list[tuple[int, int]] = []  # (fd, deadline), head first
    now = CLOCK_MODULUS - 5_000
    timeout = 1_000
    for _ in range(3_000):
        # Often no time passes: refreshes then repeat the latest deadline, as on a server whose
        # deadlines are rounded to ticks.
        now = clock_add(now, rng.choice((0, 0, rng.randrange(1, 400))))
        fd = rng.randrange(SLOTS)
        action = rng.random()
        queued = [entry for entry in model if entry[0] == fd]
        if action < 0.45:
            queue.refresh(fd, clock_add(now, timeout))
            if (fd, clock_add(now, timeout)) not in model:  # one queued with that deadline stays put
                model = [entry for entry in model if entry[0] != fd] + [(fd, clock_add(now, timeout))]
        elif action < 0.6 and not queued:
            queue.push(fd, clock_add(now, timeout))
            model.append((fd, clock_add(now, timeout)))
        elif action < 0.75:
            queue.remove(fd)
            model = [entry for entry in model if entry[0] != fd]
        else:
            expected = []
            while model and is_expired(model[0][1], now):
                expected.append(model.pop(0)[0])
            assert queue.pop_expired(now) == expected
        assert_consistent(queue, [fd for fd, _ in model])
        assert queue.next_deadline() == (model[0][1] if model else None)
