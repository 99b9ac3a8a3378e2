"""Invariant 7 of issue 12 (a supervised dispatcher) and the dispatcher's wake-up: a first
attempt starts within milliseconds of the 202, not at the dispatcher's next idle look."""

from __future__ import annotations

import statistics
import time

from hookfan import keys
from tests.engine.backends import GaugedBackend
from tests.engine.harness import Engine, readyz
from tests.stackfixtures import raw_send, send
from tests.support.procs import wait_until

GRACE = 3.0
"""``--graceful-shutdown-timeout`` of the worker whose dispatcher dies."""
IDLE = 1.0
"""The dispatcher's longest sleep without a wake-up (Dispatcher.idle)."""


def test_dispatcher_death_fails_readyz_within_5s_and_the_worker_exits_nonzero(
        engine: Engine) -> None:
    worker = engine.worker("worker", "--graceful-shutdown-timeout", "3s")
    port = engine.health["worker"]
    # A broken invariant, not an outage: the dispatcher's next look gets WRONGTYPE.
    engine.r.set(keys.DUE, "garbage")
    broken = time.monotonic()
    wait_until(lambda: readyz(port) != 200, 5, "/readyz failing (503 or closed)")
    failed = time.monotonic() - broken
    assert worker.proc is not None
    wait_until(lambda: worker.proc.poll() is not None, GRACE + 15, "the worker exiting")
    exited = time.monotonic() - broken
    print(f"/readyz failed after {failed:.2f} s; exited with {worker.proc.returncode} "
          f"after {exited:.1f} s")
    assert worker.proc.returncode != 0
    assert "dispatcher: stopped by ResponseError" in worker.log()


def test_first_attempt_reaches_the_backend_within_milliseconds_of_the_202_without_polling(
        engine: Engine) -> None:
    backend = GaugedBackend().start()
    try:
        engine.start_intake()
        engine.route("prompt.example.com", [backend])
        engine.worker("worker")
        assert send(engine.stack, "prompt.example.com", b"warm-up").status_code == 202
        backend.gauge.wait_arrivals(1, 30)
        idle_since = time.monotonic()
        latencies = []
        for i in range(10):
            # The worker is idle (nothing due) for 2 s before the first request, then 1.3 s
            # between requests: off the beat of the dispatcher's 1 s idle wait.
            due_at = idle_since + 2.0 + 1.3 * i
            wait_until(lambda t=due_at: time.monotonic() >= t, 5, "the next request's turn")
            assert engine.r.zcard(keys.DUE) == 0, "something was due: the worker was not idle"
            resp = raw_send(engine.stack.url, "prompt.example.com", b'{"n": %d}' % i)
            answered = time.monotonic()
            assert resp.status_code == 202
            did = f"{resp.json()['id']}-0"
            backend.gauge.wait(lambda g, d=did: d in g.ids(), 5, f"copy {i}")
            (arrival,) = [a for a in backend.gauge.arrivals if a.delivery_id == did]
            latencies.append(max(0.0, arrival.at - answered))
        print("202 -> backend, ms: " + ", ".join(f"{x * 1000:.0f}" for x in latencies))
        assert statistics.median(latencies) < 0.1
        assert max(latencies) < 0.3
    finally:
        backend.stop()
