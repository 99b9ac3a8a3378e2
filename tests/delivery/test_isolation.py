"""Isolation: a backend that times out must not take the worker slots a healthy backend needs.

hookfan caps the attempts in flight per backend URL across all workers (``--backend-concurrency``,
counted in Redis inside the begin script); over the cap a copy is re-scored a little later
instead of occupying a slot. Here one worker has 4 slots and the cap is 2, so a backend whose
every attempt runs into the 10 s timeout holds at most 2 of them.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from tests.chaos.harness import Sender, marker_of
from tests.conftest import route_file
from tests.stackfixtures import raw_send, send
from tests.support.backends import Received, RecordingBackend
from tests.support.procs import Stack, wait_until
from tests.support.redisproc import RedisProcess

SAMPLES = 60


class Unanswering:
    """A real TCP backend that accepts connections, reads, and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture
def iso_stack(module_redis: RedisProcess, tmp_path) -> Iterator[Stack]:
    s = Stack(module_redis.url, tmp_path / "routes", tmp_path / "logs",
              worker_args=["--concurrency", "4", "--backend-concurrency", "2",
                           "--delivery-timeout", "10s"])
    (tmp_path / "routes").mkdir()
    s.start_operator()
    s.start_app()
    s.start_worker()
    yield s
    s.stop()


def latencies(stack: Stack, host: str, arrived: dict[str, float], tag: str) -> list[float]:
    """Send SAMPLES webhooks one by one; accept (send start) -> arrival at the backend."""
    sent: dict[str, float] = {}
    for i in range(SAMPLES):
        marker = f"{tag}{i}"
        sent[marker] = time.time()
        body = json.dumps({"marker": marker}).encode()
        assert raw_send(stack.url, host, body).status_code == 202
        time.sleep(0.05)  # a steady trickle, as webhooks come, not a burst
    wait_until(lambda: set(sent) <= set(arrived), 60, f"{tag} copies delivered")
    return [arrived[m] - sent[m] for m in sent]


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def test_timing_out_backend_leaves_healthy_latency_within_2x(iso_stack, make_backend):
    arrived: dict[str, float] = {}

    def stamp(req: Received, _n: int) -> tuple[int, dict[str, str]]:
        arrived.setdefault(marker_of(req), time.time())
        return 200, {}

    healthy: RecordingBackend = make_backend(respond=stamp)
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
        alone = p95(latencies(iso_stack, "iso-ok.example.com", arrived, "alone"))
        side.stop()
        noise = Sender(iso_stack.url, "iso-bad.example.com", pace=0.2, retry_cut=False).start()
        wait_until(lambda: len(faulty.held) >= 2, 30, "faulty backend holding two attempts")
        beside = p95(latencies(iso_stack, "iso-ok.example.com", arrived, "beside"))
        noise.stop()
        print(f"healthy p95 alone {alone * 1000:.0f} ms, beside a timing-out backend "
              f"{beside * 1000:.0f} ms; faulty backend held {len(faulty.held)} connections "
              f"for {noise.sent} copies")
        assert beside <= 2 * alone
    finally:
        faulty.close()
