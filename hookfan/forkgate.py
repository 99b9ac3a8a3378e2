"""Keeps ``fork()`` out of the middle of a thread's TLS call.

The worker's main process forks its pool children (and gunicorn's master its workers) while
background threads there (the promoter, the Redis health probe) talk to Redis. With TLS, a
fork that lands while such a thread is inside OpenSSL copies OpenSSL's locks into the child
in their held state; the child's first TLS connection then waits on them forever (seen as a
pool child stuck in ``ssl.create_default_context`` until the task's hard time limit).

A thread wraps each short burst of Redis I/O in ``with forkgate.held():``; a fork waits for the
burst to end (at most one socket timeout) and no burst starts while it runs."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_gate = threading.Lock()


@contextmanager
def held() -> Iterator[None]:
    with _gate:
        yield


def _release() -> None:
    _gate.release()


# The forking thread takes the gate before fork(); the parent and the child each release it.
os.register_at_fork(before=_gate.acquire, after_in_parent=_release, after_in_child=_release)
