"""Waiting for the first answers of a stored request (a Receiver's AwaitAll ``responseType``).

A waiting request holds a gunicorn request thread for up to the Receiver's ``timeout``, so the
waits of one process are capped (``--max-answer-waits``); the intake refuses a request beyond
the cap before storing it. The waits block on a Redis client of their own: a BLPOP never sits
in front of the group commit's writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from hookfan import answers, keys

log = logging.getLogger(__name__)

SLICE = 1.0
"""Longest single BLPOP (seconds): within the client's socket timeout, so a Redis that stopped
answering is noticed within about this long, not at the end of a long wait."""


@dataclass(frozen=True)
class Waited:
    """What came back within the wait."""

    answers: list[answers.Answer]
    """In arrival order, one per target that answered."""
    missing: int
    """Targets with no answer within the timeout (or, after a Redis error, not read)."""
    failed: bool = False
    """Redis failed during the wait (the request itself is stored and is delivered)."""


class Waiter:
    def __init__(self, client: redis.Redis, limit: int) -> None:
        self.r = client
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit) if limit > 0 else None

    def enter(self) -> bool:
        """Take one of the process's wait slots; False when all are taken (or the cap is 0)."""
        return self._slots is not None and self._slots.acquire(blocking=False)

    def leave(self) -> None:
        if self._slots is not None:
            self._slots.release()

    def wait(self, request_id: str, delivery_ids: Sequence[str], timeout: float) -> Waited:
        """The first answers of the copies ``delivery_ids`` of ``request_id``, until each has
        answered or ``timeout`` seconds passed. Records of other copies are ignored. Never
        raises for Redis trouble: what came before it counts, the rest is missing."""
        key = keys.answer(request_id)
        want = set(delivery_ids)
        got: list[answers.Answer] = []
        end = time.monotonic() + timeout
        try:
            while want:
                left = end - time.monotonic()
                if left <= 0:
                    break
                popped = self.r.blpop([key], timeout=min(left, SLICE))
                if popped is None:
                    continue
                try:
                    did, answer = answers.decode(popped[1])  # type: ignore[arg-type]
                except ValueError:
                    log.warning("malformed answer record dropped", extra={
                        "request_id": request_id})
                    continue
                if did in want:
                    want.discard(did)
                    got.append(answer)
            self.r.delete(key)  # late records recreate it, with their own expiry
        except redis.RedisError as exc:
            log.warning("answer wait ended by a Redis error: %s", type(exc).__name__,
                        extra={"request_id": request_id})
            return Waited(got, len(want), failed=True)
        return Waited(got, len(want))
