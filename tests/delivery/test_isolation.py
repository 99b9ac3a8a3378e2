"""Isolation: a backend that times out must not take the worker slots a healthy backend needs.

hookfan caps the attempts in flight per backend URL across all workers (``--backend-concurrency``:
the sender slots in ``hookfan:s:<url>``, taken and released by the settle script); copies over
the cap wait in the backend's ready queue, costing no slot. Here one worker has 4 processes and
the cap is 2: a backend whose every attempt runs into the 10 s timeout must never hold more
than 2 requests at once (measured at the backend), and a healthy backend's deliveries must not
slow down beside it.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.chaos.harness import Sender
from tests.conftest import route_file
from tests.stackfixtures import send
from tests.support.backends import RecordingBackend
from tests.support.latency import Arrivals, latencies, p95
from tests.support.procs import Stack, wait_until
from tests.support.redisproc import RedisProcess

CAP = 2


class Unanswering:
    """A real TCP backend that reads requests and never answers, and measures how many it
    holds open at every instant: a connection counts from its accept, a request from its first
    byte, both until the client closes the connection (a timed-out attempt does).

    One thread handles every socket with one selector, and in each round handles closes
    before accepts and accepts before new bytes: a client that closes one connection and then
    opens the next is never counted as holding both, and no close goes unseen for longer than
    the round it arrived in."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ)
        self.lock = threading.Lock()
        self.started: dict[socket.socket, bool] = {}
        self.connections = self.requests = 0
        """Open right now."""
        self.peak_connections = self.peak_requests = 0
        self.received = self.ended = 0
        """Requests received in all; requests whose connection closed."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            events = self.sel.select(timeout=0.1)
            chunks: dict[socket.socket, bytes] = {}
            accept = False
            for key, _ in events:
                if key.fileobj is self.sock:
                    accept = True
                    continue
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                try:
                    chunks[conn] = conn.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunks[conn] = b""
            with self.lock:
                for conn, chunk in chunks.items():  # 1. closes
                    if not chunk:
                        self.sel.unregister(conn)
                        conn.close()
                        self.connections -= 1
                        if self.started.pop(conn):
                            self.requests -= 1
                            self.ended += 1
                while accept:  # 2. new connections
                    try:
                        conn, _ = self.sock.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    self.sel.register(conn, selectors.EVENT_READ)
                    self.started[conn] = False
                    self.connections += 1
                    self.peak_connections = max(self.peak_connections, self.connections)
                for conn, chunk in chunks.items():  # 3. requests (read and never answered)
                    if chunk and not self.started[conn]:
                        self.started[conn] = True
                        self.requests += 1
                        self.received += 1
                        self.peak_requests = max(self.peak_requests, self.requests)

    def figures(self) -> dict[str, int]:
        with self.lock:
            return {"open": self.requests, "peak_requests": self.peak_requests,
                    "peak_connections": self.peak_connections, "received": self.received,
                    "timed_out": self.ended}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in list(self.started):
            conn.close()
        self.sock.close()
        self.sel.close()


@pytest.fixture
def iso_stack(module_redis: RedisProcess, tmp_path) -> Iterator[Stack]:
    s = Stack(module_redis.url, tmp_path / "routes", tmp_path / "logs",
              worker_args=["--concurrency", "4", "--backend-concurrency", str(CAP),
                           "--delivery-timeout", "10s"])
    (tmp_path / "routes").mkdir()
    s.start_operator()
    s.start_app()
    s.start_worker()
    yield s
    s.stop()


def test_timing_out_backend_leaves_healthy_latency_within_2x(iso_stack, make_backend):
    arrived = Arrivals()
    healthy: RecordingBackend = make_backend(respond=arrived)
    other: RecordingBackend = make_backend()
    faulty = Unanswering()
    route_file(iso_stack.routes_dir, "iso-ok.example.com", [healthy], name="ok")
    route_file(iso_stack.routes_dir, "iso-other.example.com", [other], name="other")
    route_file(iso_stack.routes_dir, "iso-bad.example.com", [faulty],  # type: ignore[list-item]
               name="bad")
    try:
        for host in ("iso-ok", "iso-other", "iso-bad"):
            send(iso_stack, f"{host}.example.com", b'{"marker": "warm"}')
        healthy.wait_for(1)
        # Both phases carry the same side traffic, so they differ only in the fault.
        side = Sender(iso_stack.url, "iso-other.example.com", pace=0.2, retry_cut=False).start()
        alone = p95(latencies(iso_stack.url, "iso-ok.example.com", arrived, "alone"))
        load = [os.getloadavg()[0]]  # for telling a loaded machine from a slow engine
        side.stop()
        noise = Sender(iso_stack.url, "iso-bad.example.com", pace=0.2, retry_cut=False).start()
        wait_until(lambda: faulty.figures()["open"] >= CAP, 30,
                   f"faulty backend holding {CAP} attempts")
        beside = p95(latencies(iso_stack.url, "iso-ok.example.com", arrived, "beside"))
        load.append(os.getloadavg()[0])
        # Keep the faulty backend busy through three rounds of timed-out attempts (each round
        # ends when the worker's 10 s deadline closes its connections and the next claim opens
        # new ones, across settle calls): the moments a slot could be counted twice.
        wait_until(lambda: faulty.figures()["timed_out"] >= 3 * CAP, 60,
                   "three rounds of timed-out attempts", interval=0.2)
        noise.stop()
        got = faulty.figures()
        print(f"healthy p95 alone {alone * 1000:.0f} ms, beside a timing-out backend "
              f"{beside * 1000:.0f} ms (1-min load average {load[0]:.1f}, {load[1]:.1f} on "
              f"{os.cpu_count()} CPUs); faulty backend: {got} for {noise.sent} copies sent")
        assert got["peak_requests"] == CAP, got  # never above the cap, and the cap is used
        assert got["peak_connections"] <= CAP, got
        assert beside <= 2 * alone
    finally:
        faulty.close()
