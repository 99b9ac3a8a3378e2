"""Real redis-servers started with one unsafe setting each, and hookfan processes on them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hookfan.routes import Backend, build_table
from hookfan.store import Store
from tests.support.redisproc import RedisProcess

UNSAFE = {
    "appendonly": ["--appendonly", "no"],
    "appendfsync": ["--appendfsync", "everysec"],
    "maxmemory-policy": ["--maxmemory-policy", "allkeys-lru"],
}
"""A redis-server argument list per setting that breaks "202 means durable"."""
HOST = "durable.example.com"


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[Callable[[list[str]], RedisProcess]]:
    """Start a redis-server with these extra arguments; a route table is published on it."""
    started: list[RedisProcess] = []

    def start(extra: list[str]) -> RedisProcess:
        proc = RedisProcess(tmp_path / f"redis{len(started)}", extra=extra).start()
        started.append(proc)
        Store(proc.client()).publish_routes(
            build_table([(HOST, Backend("ns/a", "http://127.0.0.1:9"))], 0))
        return proc
    yield start
    for proc in started:
        proc.stop()
