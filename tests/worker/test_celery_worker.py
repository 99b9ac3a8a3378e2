"""The intake's hand-built task messages run on a real Celery worker; stale ones are skipped."""

from __future__ import annotations

import time

from hookfan.envelope import StoredRequest
from hookfan.routes import Backend
from hookfan.store import Store
from hookfan.worker.deliver import Deliverer
from hookfan.worker.promoter import Promoter
from tests.support.backends import sequence
from tests.support.procs import wait_until


def stored(body: bytes) -> StoredRequest:
    return StoredRequest("POST", "/w?x=1", (("Content-Type", "application/json"),), body,
                         "10.1.2.3", time.time(), "w.example.com")


def test_accepted_messages_are_consumed_by_a_real_celery_worker(
        redis_url, store, celery_session_worker, make_backend):
    a, b = make_backend(), make_backend()
    ids = store.accept("req1", stored(b'{"a":1}'),
                       [Backend("ns/a", a.url), Backend("ns/b", b.url)])
    for backend, did in zip((a, b), ids, strict=True):
        (got,) = backend.wait_for(1)
        assert got.body == b'{"a":1}' and got.path == "/w?x=1"
        assert got.delivery_id == did
    wait_until(lambda: not store.r.exists("hookfan:req:req1"), what="request cleaned up")
    assert store.r.zcard("hookfan:schedule") == 0


def test_retry_is_republished_by_the_promoter_from_the_redis_schedule(
        redis_url, store, celery_session_worker, make_backend):
    backend = make_backend(respond=sequence(503, 200))
    promoter = Promoter(store, idle=0.05)
    promoter.start()
    try:
        store.accept("req2", stored(b"r"), [Backend("ns/a", backend.url)])
        first, second = backend.wait_for(2)
        assert (first.header("X-Hookfan-Attempt"), second.header("X-Hookfan-Attempt")) == (
            "1", "2")
    finally:
        promoter.stop()


def test_message_of_an_old_generation_is_skipped(redis_url, worker_settings, make_backend):
    # Database 1: the session's Celery worker consumes database 0's queue, and this test makes
    # the attempts itself.
    import redis
    store = Store(redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/1"), lease=5)
    store.r.flushdb()
    backend = make_backend()
    (did,) = store.accept("req3", stored(b"s"), [Backend("ns/a", backend.url)])
    assert store.claim_due(limit=10) == []  # held by its lease: nothing due yet
    deliverer = Deliverer(store, worker_settings.delivery)
    store.r.hset(f"hookfan:dlv:{did}", "g", 2)  # as if re-claimed after a lost worker
    assert deliverer.attempt(did, 1) == "stale"
    assert backend.received == []
    assert deliverer.attempt(did, 2) == "delivered"
    assert deliverer.attempt(did, 2) == "stale"
    assert len(backend.received) == 1
