"""The promoter: turns due schedule entries into Celery tasks.

Runs as a thread in each worker's main process; several promoters are safe because a claim is one
Lua script. It stops claiming while the Celery queue is long, so a backlog never gets republished
(a message waiting in the queue keeps its generation and still runs).
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from hookfan import forkgate
from hookfan.store import Store

log = logging.getLogger(__name__)


class Promoter:
    def __init__(self, store: Store, batch: int = 500, max_queued: int = 1000,
                 idle: float = 0.5) -> None:
        self.store = store
        self.batch = batch
        self.max_queued = max_queued
        self.idle = idle
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hookfan-promoter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def step(self) -> float:
        """Claim and publish one batch; returns how long to wait before the next step."""
        if self.store.queue_length() >= self.max_queued:
            return 0.2
        claimed = self.store.claim_due(self.batch)
        self.store.publish_tasks(claimed)
        if len(claimed) == self.batch:
            return 0.0
        due = self.store.next_due()
        if due is None:
            return self.idle
        return min(max(due - time.time(), 0.01), self.idle)

    def _run(self) -> None:
        delay = 0.0
        while not self._stop.wait(delay):
            try:
                with forkgate.held():
                    delay = self.step()
            except redis.RedisError as exc:
                log.warning("promoter: Redis unavailable (%s), retrying", type(exc).__name__)
                delay = 1.0
