"""What the worker tells the outside: metrics, health probes and per-backend figures.

The pool children record each finished attempt (Prometheus samples in the multiprocess
directory; figures in Redis for the operator's RequestClone status); the main process serves
``/metrics`` and ``/healthz``/``/readyz`` while the worker runs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import bootsteps, signals

from hookfan import metrics
from hookfan.config import Settings
from hookfan.durability import DurabilityCheck
from hookfan.health import HealthServer, RedisCheck, all_of
from hookfan.store import connect

from .tasks import Attempt, Observer

log = logging.getLogger(__name__)

OUTCOME_LABEL = {"delivered": "delivered", "retry": "retry", "dead": "dead_letter"}
"""The attempt kinds of :mod:`hookfan.policy` as the ``outcome`` label names them."""

def observer(recorder: metrics.WorkerMetrics) -> Observer:
    """Record a finished attempt's samples (its figures in Redis were written with its
    outcome, by the settle script)."""
    def observe(att: Attempt, kind: str) -> None:
        recorder.attempt(OUTCOME_LABEL.get(kind, kind), att.backend.route, att.backend.url,
                         att.took, att.copy.attempt, att.accepted, time.time())
    return observe


def keep_hookfan_logging(**_: Any) -> None:
    """A ``setup_logging`` receiver: Celery then leaves the logging :func:`hookfan.logs.setup`
    did. Two stragglers are brought in line: billiard's pool logger (it does not propagate, so
    its lines would reach stderr unformatted) and the worker's shutdown notice, which Celery
    writes straight to stdout (``celery.apps.worker.safe_say``; replaced, as Celery offers no
    setting for it)."""
    import celery.apps.worker
    from billiard import util  # type: ignore[import-untyped]
    util.get_logger().propagate = True
    celery.apps.worker.safe_say = _say


def _say(msg: str, f: object = None) -> None:
    log.info(msg.strip())


def _mark_child_dead(pid: int | None = None, **_: Any) -> None:
    metrics.mark_dead(pid or os.getpid())


class ServingStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Serves metrics (``--metrics-addr``) and health (``--health-addr``) from the worker's
    main process. Ready once the consumer started, while the broker (Redis) answers, while
    the consumer is not waiting for a full Redis to free memory, and while Redis's
    durability settings hold (or ``--allow-unsafe-redis``)."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self.settings: Settings = worker.app.hookfan_settings
        self.consuming = threading.Event()
        self._stops: list[Callable[[], None]] = []
        super().__init__(worker, **kwargs)

    def start(self, worker: Any) -> None:
        s = self.settings
        signals.worker_ready.connect(self._ready, weak=False)
        durability = DurabilityCheck(connect(s.redis, timeout=1.0), s.redis.allow_unsafe,
                                     "worker").start()
        self._stops.append(durability.stop)
        if s.metrics_addr is not None:
            self._stops.append(metrics.serve(s.metrics_addr, metrics.multiproc_registry()))
            signals.worker_process_shutdown.connect(_mark_child_dead, weak=False)
        if s.health_addr is not None:
            broker = RedisCheck(connect(s.redis, timeout=1.0))
            dispatching = worker.app.hookfan_dispatching
            waiting = worker.app.hookfan_waiting_for_memory
            server = HealthServer(s.health_addr,
                                  all_of(self.consuming.is_set, dispatching, broker,
                                         lambda: not waiting.is_set(),
                                         lambda: not durability.refusing)).start()
            self._stops.append(server.stop)

    def _ready(self, **_: Any) -> None:
        self.consuming.set()

    def stop(self, worker: Any) -> None:
        signals.worker_ready.disconnect(self._ready)
        for stop in self._stops:
            stop()
        self._stops.clear()
