"""A fork waits while another thread is inside a ``forkgate.held()`` burst of I/O, and the
gate is free again in both the parent and the child afterwards."""

from __future__ import annotations

import os
import threading

from hookfan import forkgate


def test_fork_waits_for_the_burst_and_frees_the_gate_on_both_sides() -> None:
    inside, finish, forked = threading.Event(), threading.Event(), threading.Event()
    child: list[int] = []

    def burst() -> None:
        with forkgate.held():
            inside.set()
            finish.wait(10)

    def fork() -> None:
        pid = os.fork()
        if pid == 0:  # the child: the gate must be free here, or this would hang
            with forkgate.held():
                os._exit(7)
        child.append(pid)
        forked.set()

    holder = threading.Thread(target=burst)
    holder.start()
    assert inside.wait(5)
    forker = threading.Thread(target=fork)
    forker.start()
    # Bounded wait for something that must NOT happen while the burst runs.
    assert not forked.wait(0.3), "fork() ran in the middle of a held burst"
    finish.set()
    assert forked.wait(5), "fork() never ran after the burst ended"
    holder.join(5)
    forker.join(5)
    _, status = os.waitpid(child[0], 0)
    assert os.waitstatus_to_exitcode(status) == 7
    with forkgate.held():  # free in the parent too
        pass
