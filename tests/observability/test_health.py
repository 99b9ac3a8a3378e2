"""``/healthz`` and ``/readyz`` of every process follow Redis going away and coming back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import route_file
from tests.observability.conftest import PROCESSES, ObservedStack
from tests.support.backends import RecordingBackend
from tests.support.procs import wait_until
from tests.support.redisproc import RedisProcess


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    proc = RedisProcess(tmp_path / "redis").start()
    yield proc
    proc.stop()


def all_ready(stack: ObservedStack, code: int) -> Callable[[], bool]:
    return lambda: all(stack.health(p, "/readyz") == code for p in PROCESSES)


def test_readiness_follows_redis_and_liveness_stays(
        own_redis: RedisProcess, tmp_path: Path,
        make_backend: Callable[..., RecordingBackend]) -> None:
    stack = ObservedStack(own_redis.url, tmp_path / "routes", tmp_path / "logs")
    stack.routes_dir.mkdir()
    route_file(stack.routes_dir, "h.example.com", [make_backend()])
    try:
        stack.start()
        wait_until(all_ready(stack, 200), timeout=15, what="every process ready")
        own_redis.stop()
        wait_until(all_ready(stack, 503), timeout=5, interval=0.1,
                   what="every process unready within 5 s of Redis stopping")
        assert all(stack.health(p, "/healthz") == 200 for p in PROCESSES)
        own_redis.start()
        wait_until(all_ready(stack, 200), timeout=15, interval=0.1,
                   what="every process ready again after Redis returned")
        assert all(stack.health(p, "/nope") == 404 for p in PROCESSES)
    finally:
        stack.stop()


def test_app_is_not_ready_before_a_route_table_exists(redis_url: str, tmp_path: Path) -> None:
    stack = ObservedStack(redis_url, tmp_path / "routes", tmp_path / "logs")
    try:
        stack.start_app()
        wait_until(lambda: stack.health("app", "/healthz") == 200, what="app alive")
        assert stack.health("app", "/readyz") == 503
    finally:
        stack.stop()
