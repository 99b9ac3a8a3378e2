"""Graceful shutdown: SIGTERM loses nothing and leaves nothing waiting for a long lease.

Worker: running attempts finish, or after ``--graceful-shutdown-timeout`` are cancelled and
their messages given back to the queue (same generation), so another worker runs them at once.
App: gunicorn stops accepting, finishes the requests in flight, then exits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hookfan import keys
from hookfan.store import Store
from tests.conftest import route_file
from tests.stackfixtures import send
from tests.support.procs import Stack, port_open, wait_until
from tests.support.redisproc import RedisProcess

HOLD_S = 45
"""The hold on an attempt with ``--delivery-timeout 20s`` (2 x 20 s + 5 s): what a copy left
behind would wait. Every wait below is far shorter."""


class FirstHangs:
    """A real backend: the first request waits for :attr:`release` (outside any lock), the
    rest are answered 200 at once. Records the attempt number of every request."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.attempts: list[str] = []
        self.answered = 0
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                first = not backend.attempts
                backend.attempts.append(self.headers.get("X-Hookfan-Attempt", ""))
                if first:
                    backend.release.wait(60)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                backend.answered += 1

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hang() -> Iterator[FirstHangs]:
    b = FirstHangs()
    yield b
    b.stop()


def make_stack(redis: RedisProcess, tmp: Path, grace: str) -> Stack:
    (tmp / "routes").mkdir(exist_ok=True)
    return Stack(redis.url, tmp / "routes", tmp / "logs",
                 worker_args=["--delivery-timeout", "20s", "--lease", "60s",
                              "--graceful-shutdown-timeout", grace])


def ready(stack: Stack, name: str) -> bool:
    return " ready." in stack.procs[name].log()


def test_worker_sigterm_gives_back_a_long_attempt_to_another_worker_at_once(
        module_redis, tmp_path, hang, stack_store: Store):
    stack = make_stack(module_redis, tmp_path, "1s")
    route_file(stack.routes_dir, "sd-give.example.com", [hang])  # type: ignore[list-item]
    try:
        stack.start_operator()
        stack.start_app()
        stack.start_worker("first")
        assert send(stack, "sd-give.example.com", b"{}").status_code == 202
        wait_until(lambda: len(hang.attempts) == 1, 20, "first attempt in flight")
        stack.start_worker("second")
        wait_until(lambda: ready(stack, "second"), 30, "second worker ready")
        first = stack.procs["first"]
        os.kill(first.pid, signal.SIGTERM)
        wait_until(lambda: first.proc.poll() is not None, 10, "first worker exited")  # type: ignore[union-attr]
        wait_until(lambda: hang.answered >= 1, HOLD_S / 3, "attempt taken over and answered")
        wait_until(lambda: not list(stack_store.r.scan_iter(keys.DELIVERY + "*")), 10,
                   "delivery completed")
        assert len(hang.attempts) == 2, hang.attempts  # the cut attempt, run again once
    finally:
        stack.stop()


def test_worker_sigterm_lets_a_running_attempt_finish(module_redis, tmp_path, hang,
                                                     stack_store: Store):
    stack = make_stack(module_redis, tmp_path, "30s")
    route_file(stack.routes_dir, "sd-finish.example.com", [hang])  # type: ignore[list-item]
    try:
        stack.start_operator()
        stack.start_app()
        worker = stack.start_worker()
        assert send(stack, "sd-finish.example.com", b"{}").status_code == 202
        wait_until(lambda: len(hang.attempts) == 1, 20, "attempt in flight")
        os.kill(worker.pid, signal.SIGTERM)
        wait_until(lambda: "Warm shutdown" in worker.log() or "warm shutdown" in worker.log(),
                   10, "worker shutting down")
        hang.release.set()
        assert worker.proc is not None and worker.proc.wait(20) == 0
        assert hang.answered == 1 and len(hang.attempts) == 1
        assert not list(stack_store.r.scan_iter(keys.DELIVERY + "*"))
    finally:
        stack.stop()


def test_app_sigterm_finishes_the_request_in_flight_and_takes_no_new_one(
        module_redis, tmp_path, make_backend):
    backend = make_backend()
    stack = make_stack(module_redis, tmp_path, "10s")
    route_file(stack.routes_dir, "sd-app.example.com", [backend])
    try:
        stack.start_operator()
        app = stack.start_app()
        stack.start_worker()
        assert send(stack, "sd-app.example.com", b"{}").status_code == 202
        body = b'{"in": "flight"}'
        conn = socket.create_connection(("127.0.0.1", stack.port), timeout=20)
        conn.sendall(b"POST / HTTP/1.1\r\nHost: sd-app.example.com\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body[:5])
        wait_until(lambda: len(app.children()) == 2, 10, "both gunicorn workers up")
        os.kill(app.pid, signal.SIGTERM)
        # The idle worker exits at once; the busy one stays until its request is answered.
        wait_until(lambda: len(app.children()) == 1, 10, "idle gunicorn worker gone")
        conn.sendall(body[5:])
        answer = conn.recv(4096)
        assert answer.startswith(b"HTTP/1.1 202"), answer[:80]
        conn.close()
        assert app.proc is not None and app.proc.wait(15) == 0
        assert not port_open(stack.port)
        got = backend.wait_for(2)
        assert body in {r.body for r in got}
    finally:
        stack.stop()


BACKSTOP = """
import sys, threading
from hookfan.config import OperatorSettings, Settings
from hookfan.worker.celeryapp import ShutdownStep, make_celery

class WedgedWorker:
    # Stands in for Celery's WorkController (a real wedged stop could not be produced on
    # demand): its stop never returns, as when a warm stop waits on a broker that is gone.
    app = make_celery(Settings(operator=OperatorSettings(graceful_shutdown_timeout=0.2)))
    def stop(self, *args, **kwargs):
        threading.Event().wait()
    terminate = stop

ShutdownStep.BACKSTOP_MARGIN = 0.3
worker = WedgedWorker()
ShutdownStep(worker)
print("stopping", flush=True)
worker.stop(exitcode=1)
print("stop returned", flush=True)
"""


def test_a_wedged_stop_still_ends_the_process_with_status_1() -> None:
    """Whatever stops the worker, the process exits within the backstop, so a supervisor
    restarts it instead of keeping a worker that consumes nothing."""
    done = subprocess.run([sys.executable, "-c", BACKSTOP], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "stopping" in done.stdout and "stop returned" not in done.stdout
