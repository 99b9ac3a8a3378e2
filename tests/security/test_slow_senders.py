"""Slowloris against a real gunicorn intake: ``--proxy-read-timeout`` bounds a whole request, so
32 connections trickling headers or bodies (reopened as they are dropped) cannot keep a steady
legitimate sender from an answer for more than that timeout plus one second.

The figures go to docs/security.md ("Slow senders"); print them with
``.venv/bin/pytest -s tests/security/test_slow_senders.py``.
"""

from __future__ import annotations

import select
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import route_file
from tests.stackfixtures import raw_send, send
from tests.support.backends import RecordingBackend
from tests.support.procs import Stack

HOST = "slowloris.example.com"
TIMEOUT = 2.0
SLOW = 32
"""As many slow connections as the intake has request threads (2 processes x 16)."""
DRIP = 0.5
"""Seconds between two bytes of a slow sender: well inside a per-read timeout."""
RUN = 10.0
SECRET = "q-secret-91d3"


@pytest.fixture(scope="module")
def slow_stack(module_redis, tmp_path_factory) -> Iterator[tuple[Stack, RecordingBackend]]:  # type: ignore[no-untyped-def]
    backend = RecordingBackend().start()
    s = Stack(module_redis.url, tmp_path_factory.mktemp("routes"),
              tmp_path_factory.mktemp("logs"), app_args=["--proxy-read-timeout", "2s"])
    s.start()
    route_file(s.routes_dir, HOST, [backend], name="slowloris")
    for _ in range(4):
        assert send(s, HOST, b"warm-up").status_code == 202
    yield s, backend
    s.stop()
    backend.stop()


class Slowloris(threading.Thread):
    """One slow sender: sends ``first``, then one byte every :data:`DRIP` seconds, and opens
    a new connection whenever the intake drops it (counting how long each one was held)."""

    def __init__(self, port: int, first: bytes, started: threading.Semaphore,
                 stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.first, self.started, self.stop = port, first, started, stop
        self.held: list[float] = []

    def run(self) -> None:
        announced = False
        while not self.stop.is_set():
            opened = time.monotonic()
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(self.first)
                if not announced:
                    self.started.release()
                    announced = True
                while not self.stop.is_set():
                    if select.select([s], [], [], DRIP)[0]:  # an answer (408) or the close
                        break
                    try:
                        s.sendall(b"a")
                    except OSError:
                        break
                else:
                    return
            self.held.append(time.monotonic() - opened)


def test_slow_senders_cannot_hold_the_intake_from_a_legitimate_sender(slow_stack):
    stack, backend = slow_stack
    stop = threading.Event()
    started = threading.Semaphore(0)
    heads = f"POST /?token={SECRET} HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode()
    bodies = (f"POST /?token={SECRET} HTTP/1.1\r\nHost: {HOST}\r\n"
              "Content-Length: 100000\r\n\r\n").encode()
    slow = [Slowloris(stack.port, heads if i % 2 else bodies, started, stop)
            for i in range(SLOW)]
    for t in slow:
        t.start()
    for _ in slow:
        assert started.acquire(timeout=10), "a slow sender could not connect"
    waits, statuses = [], []
    try:
        end = time.monotonic() + RUN
        while time.monotonic() < end:
            t0 = time.monotonic()
            try:
                statuses.append(raw_send(stack.url, HOST, b"legit", timeout=RUN).status_code)
            except OSError as exc:
                statuses.append(type(exc).__name__)
            waits.append(time.monotonic() - t0)
            stop.wait(0.1)  # a steady sender: about 10 requests a second when answered at once
    finally:
        stop.set()
        for t in slow:
            t.join(timeout=10)
    held = [h for t in slow for h in t.held]
    print(f"\nslowloris: {SLOW} slow connections (half headers, half bodies, a byte every "
          f"{DRIP}s), --proxy-read-timeout {TIMEOUT}s, {RUN}s: {len(waits)} legitimate requests, "
          f"wait p50 {statistics.median(waits):.3f}s max {max(waits):.3f}s; slow connections "
          f"dropped {len(held)} times, held at most {max(held, default=0):.2f}s")
    assert set(statuses) == {202}, statuses
    assert max(waits) <= TIMEOUT + 1.0, sorted(waits)[-5:]
    assert held and max(held) <= TIMEOUT + 1.0
    log = stack.procs["app"].log()
    assert stack.procs["app"].proc.poll() is None and "WORKER TIMEOUT" not in log
    assert SECRET not in log
