"""The worker's Celery consumer, waiting out a Redis at its ``maxmemory``.

With ``noeviction``, a full Redis refuses every command that may grow memory, even one that
would change nothing, and every command queued in a transaction. kombu's bookkeeping of a
received message (``ZADD``, ``HSET``) and each (re)connection of the consumer (queue bindings
``SADD``, queue sizes in ``MULTI``, the unacked-restore lock ``SET NX``) are such commands, so
a full Redis made the worker exit ("Unrecoverable error") and a restarted worker exit again.

With ``broker_channel_error_retry`` such an error restarts the consumer instead, and this
consumer, before each connection, waits while Redis is full: it looks again after 1, 2, 4 ...
(at most :data:`BACKOFF_MAX`) seconds, logging each wait, until memory frees or the worker is
told to stop. Meanwhile the worker is alive and unready (not consuming). Selected by Celery's
``worker_consumer`` setting; nothing in Celery is patched.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery.worker import state as worker_state
from celery.worker.consumer import Consumer

from hookfan.store import connect

log = logging.getLogger(__name__)

BACKOFF_MAX = 15.0
"""Longest wait between two looks at a full Redis."""


def is_full(client: redis.Redis) -> bool:
    """Whether Redis is at its ``maxmemory`` (so it refuses writes); False when it has none,
    or cannot be asked (the connection then fails and is retried as usual)."""
    try:
        info = client.info("memory")
    except redis.RedisError:
        return False
    limit = int(info.get("maxmemory", 0))
    return bool(limit) and int(info.get("used_memory", 0)) >= limit


class MemoryAwareConsumer(Consumer):  # type: ignore[misc]
    def connect(self) -> Any:
        settings = getattr(self.app, "hookfan_settings", None)
        waiting = getattr(self.app, "hookfan_waiting_for_memory", None)
        if settings is None or waiting is None:  # an app not set up by hookfan: as Celery's
            return super().connect()
        client = connect(settings.redis, timeout=5.0)
        try:
            delay = 1.0
            while is_full(client) and not (worker_state.should_stop is not None
                                           or worker_state.should_terminate):
                waiting.set()
                log.warning("Redis is full (maxmemory): the consumer waits for memory, "
                            "looking again in %.0f s", delay)
                time.sleep(delay)
                delay = min(2 * delay, BACKOFF_MAX)
        finally:
            waiting.clear()
            client.close()
        return super().connect()


NAME = f"{__name__}:{MemoryAwareConsumer.__qualname__}"
"""The value of Celery's ``worker_consumer`` setting that selects this consumer."""
