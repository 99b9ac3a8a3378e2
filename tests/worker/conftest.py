"""pytest-celery's classic fixtures (celery_session_app / celery_session_worker) on real Redis,
with hookfan's ``hookfan.deliver`` task, and a real dispatcher thread publishing to them.

pytest-celery 1.x's container-based ``celery_worker`` needs Docker, which is not available here;
the classic fixtures run a real Celery worker (solo pool) in a thread of the test process, so
Celery's signals (published, task finished) can be observed here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery import signals

from hookfan.config import DeliverySettings, RedisSettings, Settings
from hookfan.schedule import Schedule
from hookfan.store import connect
from hookfan.worker.celeryapp import TASK_NAME, install, publisher
from hookfan.worker.celeryapp import celery_config as hookfan_celery_config
from hookfan.worker.dispatcher import Dispatcher
from tests.support.redisproc import RedisProcess


@pytest.fixture(scope="session")
def redis_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A Redis of this directory's own. ``celery_session_worker`` is a thread of the test
    process that consumes ``hookfan.deliver`` until the session ends: on the Redis the other
    directories share, it would take the wake-ups meant for their stacks' workers (with its
    own settings and no routes), and their copies would wait for it."""
    proc = RedisProcess(tmp_path_factory.mktemp("worker-redis")).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def worker_settings(redis_proc: Any) -> Settings:
    return Settings(redis=RedisSettings(url=redis_proc.url),
                    # No per-backend cap: what keeps a claimed copy from being sent twice
                    # is the schedule itself, not the sender slots (tests/engine covers those).
                    delivery=DeliverySettings(min_retry_delay=1.0, max_retry_delay=1.0,
                                              delivery_timeout=2, backend_concurrency=0))


@pytest.fixture(scope="session")
def celery_config(worker_settings: Settings) -> dict[str, Any]:
    return hookfan_celery_config(worker_settings)


@pytest.fixture(scope="session")
def celery_worker_parameters() -> dict[str, Any]:
    # The ping check needs a result backend; hookfan's tasks store no results.
    return {"perform_ping_check": False}


@pytest.fixture(scope="session")
def celery_session_app(celery_session_app: Any, worker_settings: Settings) -> Any:
    install(celery_session_app, worker_settings)
    return celery_session_app


@dataclass
class Traffic:
    """``hookfan.deliver`` messages as published (args and headers) and as run to the end."""

    published: list[dict[str, Any]] = field(default_factory=list)
    finished: list[tuple[tuple[Any, ...], str]] = field(default_factory=list)
    """(args, state) of each task run to its end."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_publish(self, sender: Any = None, headers: Any = None, body: Any = None,
                   **_: Any) -> None:
        if sender == TASK_NAME:
            with self.lock:
                self.published.append({"args": tuple(body[0]), "eta": headers.get("eta"),
                                       "countdown": headers.get("countdown")})

    def on_finish(self, sender: Any = None, args: Any = None, state: Any = None,
                  **_: Any) -> None:
        if getattr(sender, "name", None) == TASK_NAME:
            with self.lock:
                self.finished.append((tuple(args), str(state)))


@pytest.fixture
def traffic() -> Iterator[Traffic]:
    t = Traffic()
    signals.before_task_publish.connect(t.on_publish, weak=False)
    signals.task_postrun.connect(t.on_finish, weak=False)
    yield t
    signals.before_task_publish.disconnect(t.on_publish)
    signals.task_postrun.disconnect(t.on_finish)


@pytest.fixture
def dispatcher(redis_url: str, worker_settings: Settings, celery_session_app: Any,
               celery_session_worker: Any) -> Iterator[Dispatcher]:
    """The worker's dispatcher thread, publishing through the session app."""
    schedule = Schedule(connect(redis_url, timeout=5), worker_settings.delivery)
    d = Dispatcher(schedule, publisher(celery_session_app, celery_session_app.tasks[TASK_NAME]))
    d.start()
    yield d
    d.stop()
    assert d.alive
