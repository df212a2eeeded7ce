"""The descriptor count behind ``usable_slots`` leaves out what a probe holds for a moment.

CI once saw ``/__stats`` say 6 usable slots where 7 clients were then held: the tracemalloc sampler's
thread was writing a side file at the moment of the count. These tests hold such a file open on
purpose, from another thread, while counting.
"""

from __future__ import annotations

import os
import threading

from server.descriptors import held_fds_below, transient_fd

LIMIT = 1 << 20  # above any descriptor this process has


def test_a_transient_file_is_not_counted_while_open_and_is_closed_after(tmp_path) -> None:
    before = set(held_fds_below(LIMIT))
    with transient_fd(str(tmp_path / "side.json"), os.O_WRONLY | os.O_CREAT) as fd:
        os.write(fd, b"{}")
        assert fd not in held_fds_below(LIMIT)
        assert set(held_fds_below(LIMIT)) == before
    assert set(held_fds_below(LIMIT)) == before
    try:
        os.fstat(fd)
    except OSError:
        pass
    else:
        raise AssertionError(f"fd {fd} is still open after transient_fd closed it")


def test_an_ordinary_file_opened_meanwhile_is_counted(tmp_path) -> None:
    before = set(held_fds_below(LIMIT))
    fd = os.open(str(tmp_path / "kept"), os.O_WRONLY | os.O_CREAT)
    try:
        assert set(held_fds_below(LIMIT)) == before | {fd}
    finally:
        os.close(fd)


def test_counts_taken_while_another_thread_opens_and_closes_side_files_never_change(tmp_path) -> None:
    """The sampler's pattern: open, write, close, over and over, from its own thread. Without the
    registry about one count in a few hundred lands inside the window and comes out one higher."""
    before = set(held_fds_below(LIMIT))
    stop = threading.Event()

    def writer() -> None:
        path = str(tmp_path / "side.tmp")
        while not stop.is_set():
            with transient_fd(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) as fd:
                os.write(fd, b"x" * 4096)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        counts = [set(held_fds_below(LIMIT)) for _ in range(3000)]
    finally:
        stop.set()
        thread.join()
    assert all(count == before for count in counts), [sorted(c ^ before) for c in counts if c != before][:5]
