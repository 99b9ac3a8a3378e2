"""Spread connections evenly over the app's worker processes.

gunicorn's workers share one listening socket, and whichever is first to call ``accept`` gets
the connection. Under a burst of new connections the worker already on a CPU wins nearly
every race: measured with wrk opening 32 connections to 2 workers, all 32 landed in one
worker in about half the runs, and those runs accepted ~1,750 webhooks/s against ~3,300 when
the connections were shared (the other worker idled at 0 % CPU). Kept-alive connections (an
ingress's, wrk's) never move afterwards.

Each worker writes how many connections it holds into a table in shared memory (created by
the master, inherited on fork). A worker holding more than :data:`SLACK` connections above
another live worker stops polling the listening socket and looks again within :data:`RECHECK`
seconds; the less loaded worker takes the next connection. The worker with the fewest
connections always accepts; two workers that each saw the other's count before it changed may
both hold back, but only until their next look, so no connection waits longer than that.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

SLACK = 2
"""Connections a worker may hold above the least loaded one before it stops accepting."""
NOT_ACCEPTING = 1 << 30
"""What a worker that stopped for good (shutting down) writes as its count."""
RECHECK = 0.05
"""Seconds after which a worker that stopped accepting looks at the table again (the counts it
compared may have changed meanwhile without waking it)."""
WIDTH = 2
"""A row: pid, connections."""


class Balance:
    """A table of (pid, connections) rows, one per worker process. Create it in the master,
    before the workers are forked; each worker calls :meth:`join` once, then :meth:`may_accept`
    with its connection count as often as it likes (a few array reads)."""

    def __init__(self, workers: int) -> None:
        self.size = max(1, workers) * 4  # room for workers that replace dead ones
        self._rows: Any = multiprocessing.RawArray("q", WIDTH * self.size)
        self._lock: Any = multiprocessing.Lock()
        self.slot = -1

    def join(self) -> None:
        """Take a free row (or one of a process that is gone) for this process."""
        pid = os.getpid()
        with self._lock:
            for i in range(self.size):
                other = self._rows[WIDTH * i]
                if other == 0 or other == pid or not _alive(other):
                    row = WIDTH * i
                    self._rows[row], self._rows[row + 1] = pid, 0
                    self.slot = i
                    return
        # More worker processes than rows (not with gunicorn's fixed count): never hold back.
        self.slot = -1

    def leave(self) -> None:
        """This process accepts no more connections (shutdown): no one waits for it."""
        if self.slot >= 0:
            self._rows[WIDTH * self.slot + 1] = NOT_ACCEPTING

    def may_accept(self, connections: int) -> bool:
        """Record this process's count; whether it should take the next connection."""
        if self.slot < 0:
            return True
        rows, mine = self._rows, WIDTH * self.slot
        rows[mine + 1] = connections
        for row in range(0, WIDTH * self.size, WIDTH):
            pid = rows[row]
            if row != mine and pid and rows[row + 1] + SLACK < connections and _alive(pid):
                return False
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

