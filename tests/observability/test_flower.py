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


@pytest.mark.parametrize("task_events", ["true", "false"])
def test_flower_shows_the_task_succeeded_and_no_content(
        task_events: str, redis_url: str, tmp_path: Path, flower: str,
        make_backend: Callable[..., RecordingBackend]) -> None:
    """With ``--task-events true`` (what the chart, compose and ``hookfan dev --flower`` set)
    Flower sees the first task; with the default (off) Flower switches the worker's events on
    by itself (its ``--enable-events``, every 5 s), so a task sent after that shows up."""
    backend = make_backend()
    stack = Stack(redis_url, tmp_path / "routes", tmp_path / "logs",
                  worker_args=["--task-events", task_events])
    stack.routes_dir.mkdir()
    route_file(stack.routes_dir, HOST, [backend])

    def succeeded() -> list[str]:
        """Ids of ``hookfan.deliver`` tasks Flower shows in SUCCESS for this backend; their
        arguments are the backend URL and the number of copies due."""
        tasks = requests.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).json()
        return [tid for tid, t in tasks.items()
                if t.get("state") == "SUCCESS" and t.get("name") == "hookfan.deliver"
                and str(t.get("args")).startswith(f"('{backend.url}', ")]

    try:
        stack.start()
        assert requests.get(f"{flower}/api/tasks", timeout=5).status_code == 401
        seen: list[str] = []
        for n in range(1, 16):
            resp = send(stack, HOST, f'{{"m": "{BODY_MARKER}"}}'.encode(),
                        headers=[("X-Signature", SECRET)])
            assert resp.status_code == 202
            backend.wait_for(n)
            try:
                wait_until(lambda: bool(succeeded()), timeout=2, interval=0.2,
                           what="task SUCCESS in Flower")
            except AssertionError:
                continue
            seen = succeeded()
            break
        assert seen, "Flower never showed a delivery task"
        if task_events == "true":
            assert n == 1, "with --task-events true the first task must show"
        answers = [requests.get(f"{flower}{path}", auth=AUTH, timeout=10).text
                   for path in ("/api/tasks", f"/api/task/info/{seen[0]}", "/api/workers")]
    finally:
        stack.stop()
    assert '"SUCCESS"' in answers[1]
    for text in answers:
        assert BODY_MARKER not in text and SECRET not in text
