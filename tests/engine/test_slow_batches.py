"""A backend that answered slowly in its last batch gets its next batch's copies concurrently
from the first one: a batch of a backend answering in 8 s takes 8 s, not 16 (its first copy
alone, then the rest). Real Redis, a real HTTP backend, hookfan's Courier in this process."""

from __future__ import annotations

import time

from hookfan.config import DeliverySettings
from hookfan.envelope import StoredRequest
from hookfan.routes import Backend
from hookfan.schedule import Schedule
from hookfan.store import Store
from hookfan.worker.tasks import Courier
from tests.support.backends import Received, RecordingBackend

ANSWER = 0.6
"""Seconds the backend holds each answer: far above the worker's 5 ms 'slow' mark."""
COPIES = 4


def accept(store: Store, backend: RecordingBackend, n: int, tag: str) -> None:
    req = StoredRequest("POST", "/", (("Content-Type", "text/plain"),), b"x", "10.0.0.1",
                        time.time(), "slow-batch.example.com")
    store.accept_batch([(f"{tag}{i:030d}", req, (Backend("ns/slow", backend.url),))
                        for i in range(n)])


def test_a_backend_slow_in_its_last_batch_gets_the_next_one_concurrently(store: Store,
                                                                          make_backend):
    arrived: dict[str, float] = {}

    def stamp(req: Received, _n: int) -> tuple[int, dict[str, str]]:
        arrived[str(req.delivery_id)] = time.monotonic()
        return 200, {}

    backend: RecordingBackend = make_backend(respond=stamp, answer_after=ANSWER)
    settings = DeliverySettings(delivery_timeout=5, backend_concurrency=COPIES)
    courier = Courier(Schedule(store.r, settings), settings)
    for tag in ("a", "b"):
        accept(store, backend, COPIES, tag)
        courier.run(backend.url)  # one batch (all due), then it lingers and ends
    first = sorted(t for d, t in arrived.items() if d.startswith("a"))
    second = sorted(t for d, t in arrived.items() if d.startswith("b"))
    assert len(first) == len(second) == COPIES
    # The first batch found out: one copy alone, the rest once its answer took ANSWER.
    assert first[1] - first[0] >= ANSWER * 0.9
    # The second went out at once, all of its copies together.
    assert second[-1] - second[0] < ANSWER / 2, [round(t - second[0], 3) for t in second]
