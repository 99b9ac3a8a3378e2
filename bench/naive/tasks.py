"""BASELINE (see bench/naive/__init__.py): the Celery side of the afternoon design.

Configured from the environment the way such a project usually is: ``NAIVE_BROKER``.
"""

from __future__ import annotations

import os
from typing import Any

import requests
from celery import Celery

app = Celery("naive", broker=os.environ.get("NAIVE_BROKER", "redis://localhost:6379/0"))
app.conf.task_ignore_result = True


@app.task(bind=True, max_retries=10)
def deliver(self: Any, url: str, method: str, path: str, headers: dict[str, str],
            body: str) -> None:
    try:
        resp = requests.request(method, url + path, data=body.encode("latin-1"),
                                headers=headers, timeout=10)
    except requests.RequestException as exc:
        raise self.retry(exc=exc, countdown=2 ** self.request.retries) from exc
    if resp.status_code >= 500:
        raise self.retry(countdown=2 ** self.request.retries)
