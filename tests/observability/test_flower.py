"""Flower on real Redis shows a delivery task in SUCCESS through its HTTP API (basic auth),
and none of the webhook's body or header values anywhere in its answers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from hookfan.devstack import free_port
from tests.conftest import route_file
from tests.stackfixtures import send
from tests.support.backends import RecordingBackend
from tests.support.procs import Stack, port_open, wait_until

HOST = "flower.example.com"
AUTH = ("user", "pass")
BODY_MARKER = "FLOWER-BODY-7d3e"
SECRET = "FLOWER-SECRET-2b9c"


@pytest.fixture
def flower(redis_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-b", redis_url, "flower",
                             f"--port={port}", "--address=127.0.0.1",
                             f"--basic-auth={AUTH[0]}:{AUTH[1]}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: port_open(port), timeout=20, what="flower listening")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_flower_shows_the_task_succeeded_and_no_content(
        redis_url: str, tmp_path: Path, flower: str,
        make_backend: Callable[..., RecordingBackend]) -> None:
    backend = make_backend()
    stack = Stack(redis_url, tmp_path / "routes", tmp_path / "logs")
    stack.routes_dir.mkdir()
    route_file(stack.routes_dir, HOST, [backend])
    try:
        stack.start()
        assert requests.get(f"{flower}/api/tasks", timeout=5).status_code == 401
        resp = send(stack, HOST, f'{{"m": "{BODY_MARKER}"}}'.encode(),
                    headers=[("X-Signature", SECRET)])
        assert resp.status_code == 202
        delivery_id = backend.wait_for(1)[0].delivery_id

        def succeeded() -> list[str]:
            tasks = requests.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).json()
            return [tid for tid, t in tasks.items()
                    if t.get("state") == "SUCCESS" and delivery_id in str(t.get("args"))]

        wait_until(lambda: bool(succeeded()), timeout=20, interval=0.2,
                   what="task SUCCESS in Flower")
        answers = [requests.get(f"{flower}{path}", auth=AUTH, timeout=10).text
                   for path in ("/api/tasks", f"/api/task/info/{succeeded()[0]}",
                                "/api/workers")]
    finally:
        stack.stop()
    assert '"SUCCESS"' in answers[1]
    for text in answers:
        assert BODY_MARKER not in text and SECRET not in text
