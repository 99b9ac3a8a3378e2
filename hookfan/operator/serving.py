"""The operator's ``/metrics`` and ``/healthz``/``/readyz`` servers, for either route source."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from hookfan import metrics
from hookfan.config import Settings
from hookfan.health import HealthServer, RedisCheck, all_of
from hookfan.store import connect

from .backlog import OperatorCollector, OperatorStats

DEFAULT_HEALTH = ("0.0.0.0", 9557)


def backlog_interval(settings: Settings) -> float:
    """How often the leader rescans the backlog: every ``--status-interval``, at most 5 s."""
    return min(5.0, settings.operator.status_interval)


def start(settings: Settings, stats: OperatorStats, synced: Callable[[], bool],
          health_default: tuple[str, int] | None = None) -> Callable[[], None]:
    """Serve metrics on ``--metrics-addr`` and health on ``--health-addr`` (or
    ``health_default`` when that is unset); returns a function that stops both. Ready once
    ``synced()`` holds and while Redis answers."""
    stops: list[Callable[[], None]] = []
    if settings.metrics_addr is not None:
        registry = CollectorRegistry()
        registry.register(OperatorCollector(stats))
        stops.append(metrics.serve(settings.metrics_addr, registry))
    addr = settings.health_addr or health_default
    if addr is not None:
        redis_ok = RedisCheck(connect(settings.redis, timeout=1.0))
        stops.append(HealthServer(addr, all_of(synced, redis_ok)).start().stop)

    def stop() -> None:
        for s in stops:
            s()
    return stop
