"""The dispatcher's ``hookfan.deliver`` wake-ups run on a real Celery worker.

A message names a backend, never a copy: the task claims that backend's due copies from the
Redis schedule when it starts. So retries wait in Redis, never in a Celery countdown, and a
repeated or stray message costs nothing. (Outcomes of old attempts are dropped by the settle
script: see tests/engine/test_stale_outcomes.py.)
"""

from __future__ import annotations

import time

from hookfan import keys
from hookfan.envelope import StoredRequest
from hookfan.routes import Backend
from hookfan.schedule import Result, Schedule
from tests.support.backends import sequence
from tests.support.ledger import request_stored
from tests.support.procs import wait_until


def stored(body: bytes) -> StoredRequest:
    return StoredRequest("POST", "/w?x=1", (("Content-Type", "application/json"),), body,
                         "10.1.2.3", time.time(), "w.example.com")


def redis_ms(r) -> int:  # type: ignore[no-untyped-def]
    sec, usec = r.time()
    return sec * 1000 + usec // 1000


def test_accepted_copies_are_delivered_through_wakeups_consumed_by_a_real_celery_worker(
        store, dispatcher, traffic, make_backend):  # type: ignore[no-untyped-def]
    a, b = make_backend(), make_backend()
    ids = store.accept("req1", stored(b'{"a":1}'),
                       [Backend("ns/a", a.url), Backend("ns/b", b.url)])
    for backend, did in zip((a, b), ids, strict=True):
        (got,) = backend.wait_for(1)
        assert got.body == b'{"a":1}' and got.path == "/w?x=1"
        assert got.delivery_id == did
        assert got.header("X-Hookfan-Attempt") == "1"
    wait_until(lambda: not request_stored(store.r, "req1"), what="request cleaned up")
    assert store.pending_count() == 0
    assert not any(store.r.scan_iter(match=f"{keys.PREFIX}dlv:*"))
    assert not store.r.exists(*keys.LEGACY[:1])
    # One wake-up per backend, naming the backend and a count: never a copy's content.
    assert sorted(p["args"][0] for p in traffic.published) == sorted([a.url, b.url])
    assert all(len(p["args"]) == 2 and isinstance(p["args"][1], int)
               for p in traffic.published)


def test_retry_waits_in_the_redis_schedule_not_in_a_celery_countdown(
        store, dispatcher, traffic, make_backend):  # type: ignore[no-untyped-def]
    backend = make_backend(respond=sequence(503, 200))
    (did,) = store.accept("req2", stored(b"r"), [Backend("ns/a", backend.url)])
    backend.wait_for(1)
    first = time.monotonic()
    r = store.r
    # After the 503 the copy waits in its backend's ready queue, due later by Redis's clock,
    # with no Celery message holding it.
    wait_until(lambda: r.zscore(keys.ready(backend.url), did) is not None, 5,
               "the copy back in the ready queue")
    due = r.zscore(keys.ready(backend.url), did)
    assert due > redis_ms(r) + 500  # --min-retry-delay 1s
    assert r.zscore(keys.inflight(backend.url), did) is None
    # Once the task lets go of the backend, the dispatcher's next look is at that due time.
    wait_until(lambda: r.zscore(keys.DUE, backend.url) == due, 5, "the backend due again")
    wait_until(lambda: r.llen(keys.QUEUE) == 0, 5, "no message waiting")
    sent = len(traffic.published)
    one, two = backend.wait_for(2)
    assert time.monotonic() - first >= 0.75
    assert (one.header("X-Hookfan-Attempt"), two.header("X-Hookfan-Attempt")) == ("1", "2")
    assert len(traffic.published) > sent  # the retry came from a new wake-up
    assert all(p["eta"] is None and p["countdown"] is None for p in traffic.published)
    wait_until(lambda: store.pending_count() == 0, 5, "the copy settled as delivered")


def test_repeated_and_stray_wakeups_leave_a_copy_claimed_elsewhere_alone(
        store, worker_settings, celery_session_worker, celery_session_app, traffic,
        make_backend):  # type: ignore[no-untyped-def]
    backend, idle = make_backend(), make_backend()
    (did,) = store.accept("req3", stored(b"s"), [Backend("ns/a", backend.url)])
    # Another worker's task claims the copy (no dispatcher runs here)...
    other = Schedule(store.r, worker_settings.delivery)
    claim = other.settle(backend.url, "elsewhere", 0, [], want=1)
    (copy,) = claim.copies
    # ...while wake-ups for its backend, repeated, and one for a backend with nothing, run.
    task = celery_session_app.tasks["hookfan.deliver"]
    for url in (backend.url, backend.url, backend.url, idle.url):
        task.apply_async((url, 1))
    wait_until(lambda: len(traffic.finished) >= 4, 15, "every wake-up run")
    assert {state for _, state in traffic.finished} == {"SUCCESS"}
    assert backend.received == [] and idle.received == []
    assert store.r.zscore(keys.inflight(backend.url), did) is not None
    # The other task gives the copy back unsent; the next wake-up sends it, as attempt 1.
    other.settle(backend.url, "elsewhere", claim.senders, [Result(copy, "u")], want=0)
    task.apply_async((backend.url, 1))
    (got,) = backend.wait_for(1)
    assert got.delivery_id == did and got.header("X-Hookfan-Attempt") == "1"
    wait_until(lambda: store.pending_count() == 0, 5, "the copy settled as delivered")
    assert len(backend.received) == 1 and store.dead_ids() == []
