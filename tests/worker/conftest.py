"""pytest-celery's classic fixtures (celery_session_app / celery_session_worker) on real Redis.

pytest-celery 1.x's container-based ``celery_worker`` needs Docker, which is not available here;
the classic fixtures run a real Celery worker (solo pool) in a thread of the test process.
"""

from __future__ import annotations

from typing import Any

import pytest

from hookfan.config import DeliverySettings, RedisSettings, Settings
from hookfan.worker.celeryapp import celery_config as hookfan_celery_config
from hookfan.worker.celeryapp import install


@pytest.fixture(scope="session")
def worker_settings(redis_proc: Any) -> Settings:
    return Settings(redis=RedisSettings(url=redis_proc.url),
                    delivery=DeliverySettings(min_retry_delay=0.05, max_retry_delay=0.2,
                                              delivery_timeout=2, lease=5))


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
