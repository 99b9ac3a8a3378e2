"""Dead-letter retention: a thread in every worker's main process deletes dead letters older
than ``--dead-letter-retention`` (and each request no other copy references any more), and
counts them in ``hookfan_dead_letters_expired_total{route}``.

No Celery beat: a periodic job needs no message, and several workers doing it at once is safe
(``purge.lua`` deletes a dead letter once, and only the one that deleted it counts it). At
start it also counts dead letters written before ``hookfan:dlcount`` existed
(:meth:`DeadLetters.backfill`), so the ``hookfan_dead_letters`` gauge needs no scan.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import redis
from celery import bootsteps

from hookfan import forkgate
from hookfan.config import Settings
from hookfan.deadletters import CHUNK, DeadLetters
from hookfan.store import connect

log = logging.getLogger(__name__)

EXPIRED = "hookfan_dead_letters_expired_total"
PER_HOLD = 10 * CHUNK
"""Dead letters expired per hold of the fork lock (a pool child may be waiting to fork)."""

Expired = Callable[[dict[str, int]], None]
"""Called with dead letters expired per route."""


def interval_for(retention: float) -> float:
    """How often to look: a tenth of the retention, between 0.1 s and one minute."""
    return min(60.0, max(0.1, retention / 10))


class Retention:
    """Runs :meth:`step` every :func:`interval_for` seconds until stopped. Redis errors are
    logged and retried at the next step; the thread never dies of one."""

    def __init__(self, dead: DeadLetters, retention: float,
                 on_expired: Expired | None = None) -> None:
        self.dead = dead
        self.retention = retention
        self.interval = interval_for(retention)
        self.on_expired = on_expired
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hookfan-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def backfill(self) -> int:
        with forkgate.held():
            counted = self.dead.backfill()
        if counted:
            log.info("older dead letters counted", extra={"count": counted})
        return counted

    def step(self) -> dict[str, int]:
        """Expire what is past the retention; returns how many per route."""
        total: dict[str, int] = {}
        while not self._stop.is_set():
            with forkgate.held():
                expired = self.dead.expire(self.retention, most=PER_HOLD)
            for route, n in expired.items():
                total[route] = total.get(route, 0) + n
            if expired and self.on_expired is not None:
                self.on_expired(expired)
            if sum(expired.values()) < PER_HOLD:
                break
        if total:
            log.info("dead letters expired", extra={"count": sum(total.values())})
        return total

    def _run(self) -> None:
        counting = True  # until a backfill finds nothing (a worker start may still be
        # moving first-engine dead letters in)
        while not self._stop.is_set():
            try:
                if counting:
                    counting = self.backfill() > 0
                self.step()
            except redis.RedisError as exc:
                log.warning("dead-letter retention: Redis unavailable (%s), retrying",
                            type(exc).__name__)
            self._stop.wait(self.interval)


def counter() -> Expired:
    """``hookfan_dead_letters_expired_total{route}``, in the multiprocess directory."""
    from prometheus_client import Counter
    expired = Counter(EXPIRED, "Dead letters deleted by --dead-letter-retention.", ("route",),
                      registry=None)

    def count(by_route: dict[str, int]) -> None:
        for route, n in by_route.items():
            expired.labels(route).inc(n)
    return count


class RetentionStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Runs :class:`Retention` in the worker's main process while the worker runs; with
    ``--dead-letter-retention 0`` it only counts older dead letters once."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        settings: Settings = worker.app.hookfan_settings
        retention = settings.delivery.dead_letter_retention
        on_expired = counter() if settings.metrics_addr is not None else None
        dead = DeadLetters(connect(settings.redis, timeout=5))
        self.retention = Retention(dead, retention or float("inf"), on_expired)
        self.enabled = retention > 0
        super().__init__(worker, **kwargs)

    def start(self, worker: Any) -> None:
        if self.enabled:
            self.retention.start()
            return
        try:
            self.retention.backfill()
        except redis.RedisError as exc:
            log.warning("older dead letters not counted yet: %s", type(exc).__name__)

    def stop(self, worker: Any) -> None:
        self.retention.stop()
