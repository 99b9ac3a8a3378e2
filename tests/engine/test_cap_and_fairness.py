"""Invariants 5 and 6 of issue 12: ``--backend-concurrency`` is exact across worker
processes, measured at the backend; and a backlog at one backend delays another backend's
copies by about one batch, not by the backlog."""

from __future__ import annotations

import time

from hookfan.envelope import StoredRequest
from hookfan.routes import Backend
from tests.engine.backends import GaugedBackend, sleep_for
from tests.engine.harness import Engine, readyz
from tests.stackfixtures import send
from tests.support.procs import wait_until

BATCH = 64
"""``--delivery-batch``'s default."""


def load(engine: Engine, backend_url: str, count: int, tag: str) -> None:
    """``count`` due copies for one backend, written by the intake's script in bulk."""
    now = time.time()
    for start in range(0, count, 1000):
        engine.store.accept_batch([
            (f"{tag}{i}", StoredRequest("POST", "/load", (("Content-Type", "text/plain"),),
                                        b"%d" % i, "10.0.0.1", now, f"{tag}.example.com"),
             [Backend(f"ns/{tag}", backend_url)])
            for i in range(start, min(count, start + 1000))])


def test_backend_concurrency_cap_holds_exactly_across_four_worker_processes(
        engine: Engine) -> None:
    backend = GaugedBackend(hold=sleep_for(0.02)).start()
    try:
        for i in range(4):
            engine.worker(f"worker{i}", "--concurrency", "2", "--backend-concurrency", "3",
                          ready=False)
        for name, port in engine.health.items():
            wait_until(lambda p=port: readyz(p) == 200, 60, f"{name} ready")
        load(engine, backend.url, 500, "cap")
        # Repeated wake-ups, as a duplicated or redelivered message would give: up to 8 tasks
        # (2 per worker) settle this backend at once; the cap must still hold.
        engine.wake(backend.url, 7)
        wait_until(lambda: engine.store.pending_count() == 0, 90, "500 copies delivered",
                   interval=0.2)
        arrivals = backend.gauge.arrivals
        print(f"peak concurrent requests at the backend {backend.gauge.peak}; "
              f"{len(arrivals)} arrivals")
        assert len(backend.gauge.ids()) == 500 and len(arrivals) == 500
        assert {a.attempt for a in arrivals} == {1}
        assert 2 <= backend.gauge.peak <= 3
    finally:
        backend.stop()


def test_another_backends_copy_overtakes_a_10000_copy_backlog(
        engine: Engine) -> None:
    a, b = GaugedBackend().start(), GaugedBackend().start()
    try:
        engine.start_intake()
        engine.route("fair-b.example.com", [b])
        assert send(engine.stack, "fair-b.example.com", b"warm-up").status_code == 202
        load(engine, a.url, 10_000, "fair-a")
        # One pool process: the backlog's task and the other backend's compete for it.
        engine.worker("worker", "--concurrency", "1", ready=False)
        a.gauge.wait_arrivals(5 * BATCH, 60)  # the backlog is draining
        resp = send(engine.stack, "fair-b.example.com", b"behind a backlog")
        accepted = time.monotonic()
        assert resp.status_code == 202
        did = f"{resp.json()['id']}-0"
        b.gauge.wait(lambda g: did in g.ids(), 30, "the other backend's copy")
        (arrived,) = [x for x in b.gauge.arrivals if x.delivery_id == did]
        before = [x for x in a.gauge.arrivals if x.at < arrived.at]
        between = [x for x in before if x.at >= accepted]
        latency = arrived.at - accepted
        print(f"other backend's copy arrived {latency * 1000:.0f} ms after its 202; "
              f"{len(between)} backlog copies were delivered in between, "
              f"{10_000 - len(before)} still pending")
        assert latency < 2.0
        assert 10_000 - len(before) > 5_000
        # at most the batch in flight when the copy was accepted (plus sends racing the 202)
        assert len(between) <= BATCH + 4
    finally:
        a.stop()
        b.stop()
