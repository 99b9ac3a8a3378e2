"""A Redis of a test's own, with a stack on it, for tests that fill it to its ``maxmemory``
(``noeviction``, as hookfan requires): the intake's and the worker's "Redis full" tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from tests.conftest import route_file
from tests.support.backends import RecordingBackend
from tests.support.procs import Stack
from tests.support.redisproc import RedisProcess


def stack_on_own_redis(tmp_path: Path, host: str, backend: RecordingBackend,
                       redis_extra: Sequence[str] = (),
                       **stack: Any) -> tuple[RedisProcess, Stack]:
    """A started redis-server (``redis_extra`` added to its flags), a route file sending
    ``host`` to ``backend``, and a Stack on them (``stack``: its options), not started."""
    server = RedisProcess(tmp_path / "redis", extra=list(redis_extra)).start()
    routes = tmp_path / "routes"
    routes.mkdir()
    route_file(routes, host, [backend])
    return server, Stack(server.url, routes, tmp_path / "logs", **stack)


def fill_to_maxmemory(client: redis.Redis, prefix: str = "filler") -> list[str]:
    """Write filler keys, smaller and smaller, until Redis refuses even a small one: used
    memory is then over ``maxmemory`` and every write is refused. Their names."""
    names: list[str] = []
    for size in (100_000, 1_000, 50):
        while True:
            name = f"{prefix}:{len(names)}"
            try:
                client.set(name, b"f" * size)
            except redis.exceptions.OutOfMemoryError:
                break
            names.append(name)
    return names
