"""Fixtures shared by every test: a real Redis, recording backends, and route files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hookfan.store import Store
from tests.support.backends import RecordingBackend
from tests.support.redisproc import RedisProcess


@pytest.fixture(scope="session")
def redis_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    proc = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    yield proc
    proc.stop()


@pytest.fixture
def redis_url(redis_proc: RedisProcess) -> Iterator[str]:
    """The session Redis, flushed before each test so every test starts clean (rq's way)."""
    client = redis_proc.client()
    client.flushall()
    yield redis_proc.url
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return Store(redis_client)


@pytest.fixture
def backends() -> Iterator[list[RecordingBackend]]:
    made: list[RecordingBackend] = []
    yield made
    for b in made:
        b.stop()


@pytest.fixture
def make_backend(backends: list[RecordingBackend]):  # type: ignore[no-untyped-def]
    def make(**kwargs) -> RecordingBackend:  # type: ignore[no-untyped-def]
        b = RecordingBackend(**kwargs).start()
        backends.append(b)
        return b
    return make


def route_file(directory: Path, host: str, targets: list[RecordingBackend],
               name: str = "routes") -> Path:
    """Write one RequestClone per backend for ``host`` (serviceName 127.0.0.1, its port)."""
    docs = [
        "apiVersion: proxy.infra.doodle.com/v1beta1\nkind: RequestClone\n"
        f"metadata: {{name: {name}-{b.port}}}\n"
        f"spec: {{host: '{host}', backend: {{serviceName: 127.0.0.1, servicePort: {b.port}}}}}\n"
        for b in targets]
    path = directory / f"{name}.yaml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("---\n".join(docs))
    tmp.rename(path)
    return path
