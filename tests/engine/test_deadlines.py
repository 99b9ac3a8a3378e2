"""Invariants 2 and 4 of issue 12: an attempt cannot outlive its lease, and the retry age is
enforced when claiming, against real workers and real backends."""

from __future__ import annotations

import json
import threading
import time

from hookfan import keys
from tests.engine.backends import GaugedBackend, SlowDrip, peer_closed
from tests.engine.harness import Engine
from tests.stackfixtures import send
from tests.support.ledger import request_stored
from tests.support.procs import wait_until

MAX_AGE = 20.0
TIMEOUT = 1.0


def test_slow_drip_backend_is_dead_lettered_within_max_retry_age_and_never_above_its_cap(
        engine: Engine) -> None:
    drip = SlowDrip(pace=0.8)
    try:
        engine.start_intake()
        engine.route("drip.example.com", [drip])
        engine.worker("worker", "--delivery-timeout", "1s", "--max-retry-age", "20s",
                      "--backend-concurrency", "1")
        # Two copies for the one backend, so the cap of 1 has something to hold back.
        ids, accepted = [], []
        for n in range(2):
            resp = send(engine.stack, "drip.example.com", b'{"n": %d}' % n)
            assert resp.status_code == 202, resp.text
            accepted.append(time.monotonic())
            ids.append(resp.json()["id"])
        limit = MAX_AGE + TIMEOUT + 5  # max-retry-age + one attempt deadline + acceptance

        def listed() -> dict[str, dict]:
            out = engine.cli("deadletters", "list", "--output", "json")
            assert out.returncode == 0, out.stderr
            return {d["request"]: d for d in json.loads(out.stdout)}
        wait_until(lambda: set(ids) <= set(listed()),
                   limit - (time.monotonic() - accepted[0]), "both copies in the dead letters",
                   interval=0.3)
        took = time.monotonic() - accepted[0]
        letters = listed()
        arrivals = drip.gauge.arrivals
        print(f"dead-lettered {took:.1f} s after acceptance; {len(arrivals)} attempts; "
              f"peak in flight {drip.gauge.peak}; "
              + "; ".join(f"{d['attempts']} attempts, {d['last_error']}, dead "
                          f"{d['dead_at'] - d['accepted']:.1f} s after acceptance"
                          for d in letters.values()))
        assert took <= limit
        for rid in ids:
            letter = letters[rid]
            assert letter["dead_at"] - letter["accepted"] <= limit
            assert letter["last_error"] in ("Timeout", "MaxRetryAgeExceeded")
            assert letter["attempts"] >= 3
        # Every attempt reached the backend and ended by its deadline: never two at once.
        assert drip.gauge.peak == 1
        assert len(arrivals) >= 6
        assert engine.store.pending_count() == 0
    finally:
        drip.close()


def test_attempt_killed_mid_send_comes_back_after_its_lease_counted_as_an_attempt(
        engine: Engine) -> None:
    timeout = 2.0
    lease = 2 * timeout + 5
    released = threading.Event()

    def first_never_answered(arrival, sock) -> None:  # type: ignore[no-untyped-def]
        if arrival.attempt == 1:  # held open until the killed worker's socket closes
            while not released.is_set() and not peer_closed(sock, 0.05):
                pass

    backend = GaugedBackend(hold=first_never_answered).start()
    try:
        engine.start_intake()
        engine.route("killed.example.com", [backend])
        first = engine.worker("worker", "--delivery-timeout", "2s")
        resp = send(engine.stack, "killed.example.com", b"mid-send")
        assert resp.status_code == 202
        rid = resp.json()["id"]
        (sent,) = backend.gauge.wait_arrivals(1, 15)
        first.kill()  # kill -9 of the worker and its pool children, mid-send
        backend.gauge.wait(lambda g: g.now == 0, 10, "the killed attempt's connection closed")
        assert engine.r.zscore(keys.inflight(backend.url), sent.delivery_id) is not None

        engine.worker("worker2", "--delivery-timeout", "2s")
        # A task looks at the backend while the killed attempt's lease still runs (as any
        # repeated wake-up may): it must leave the copy in flight and hand the backend back
        # to the dispatcher for when the lease ends.
        engine.wake(backend.url)
        wait_until(lambda: engine.r.zscore(keys.OWNED, backend.url) is None, 10,
                   "a task looked at the backend", interval=0.05)
        looked = time.monotonic()
        assert engine.r.zscore(keys.inflight(backend.url), sent.delivery_id) is not None

        _, retry = backend.gauge.wait_arrivals(2, lease + 15)
        after = retry.at - sent.at
        print(f"killed attempt sent at 0; a task looked at {looked - sent.at:.1f} s; retry "
              f"arrived at {after:.2f} s (lease {lease:.0f} s)")
        assert looked - sent.at < lease - 1, "the early look came too late to show anything"
        assert retry.delivery_id == sent.delivery_id
        assert retry.attempt == 2  # the killed attempt counted
        assert lease - 0.5 <= after <= lease + 8
        wait_until(lambda: not request_stored(engine.r, rid), 10, "request cleaned up")
        figures = engine.store.delivery_figures()
        assert any(k.startswith("last_error:") and v == "LeaseExpired"
                   for k, v in figures.items()), figures
    finally:
        released.set()
        backend.stop()
