"""A process out of file descriptors logs once, does not spin, and serves again once fds free up.
"""

from __future__ import annotations

import pytest

from ...fixtures.reliability import SCALES, Scale, report
from ...fixtures.hostile_clients import FD_LIMIT, accept_failures, starve

#: Share of the measurement window the starved server may spend on the CPU (a busy loop takes ~all).
CPU_BUDGET = 0.25


@pytest.mark.parametrize("scale", SCALES)
def test_out_of_file_descriptors(start_server, layout: str, scale: Scale) -> None:
    """Started under RLIMIT_NOFILE 64 with --max-conns 1024: the clients beyond what the fds allow
    wait in the listen backlog; accept's EMFILE is logged once and pauses accepting (no busy loop),
    and the waiting clients are served as the others leave. Repeated: still logged once."""
    server = start_server(layout, max_conns=1024, nofile_limit=FD_LIMIT)
    room = FD_LIMIT - server.open_fds()  # connections the server can hold
    cpu_used = [starve(server, room, scale.fd_waiting_clients, scale.fd_cpu_window_s)
                for _ in range(scale.fd_rounds)]
    report("fd exhaustion", layout, fd_limit=FD_LIMIT, rounds=scale.fd_rounds, held=room,
           waited_per_round=scale.fd_waiting_clients, window_s=scale.fd_cpu_window_s,
           cpu_while_starved_s=",".join(f"{seconds:.2f}" for seconds in cpu_used),
           accept_failures_logged=accept_failures(server))
    assert max(cpu_used) <= CPU_BUDGET * scale.fd_cpu_window_s, \
        f"{max(cpu_used):.2f} s of CPU in {scale.fd_cpu_window_s} s while out of fds: a busy loop"
    assert accept_failures(server) == 1  # logged once, however many times accept failed
