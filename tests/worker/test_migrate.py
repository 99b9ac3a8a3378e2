"""A Redis written by the first delivery engine is carried over: nothing pending or dead-lettered
is lost when workers are upgraded."""

from __future__ import annotations

import time

from hookfan import migrate
from hookfan.config import DeliverySettings
from hookfan.envelope import StoredRequest
from hookfan.schedule import Schedule
from hookfan.store import Store
from hookfan.worker.tasks import Courier
from tests.support.ledger import request_stored


def first_engine_copy(store: Store, rid: str, url: str, state: str, attempts: int,
                      error: str = "") -> str:
    """Write a request and one copy exactly as the first engine's intake/outcome scripts did."""
    req = StoredRequest("POST", "/hook?a=1", (("X-Sig", "s1"),), b"old-body", "10.0.0.1",
                        time.time() - 60, "old.example.com")
    store.r.hset(f"hookfan:req:{rid}", mapping={**req.to_fields(), "n": 1})
    did = f"{rid}-0"
    store.r.hset(f"hookfan:dlv:{did}", mapping={
        "r": rid, "b": url, "route": "apps/old", "a": attempts, "g": 3, "s": state,
        "t0": repr(time.time() - 60), "e": error})
    if state == "d":
        store.r.zadd("hookfan:dead", {did: time.time() - 30})
    else:
        store.r.zadd("hookfan:schedule", {did: time.time() + 600})
    return did


def test_pending_and_dead_first_engine_copies_survive_the_upgrade(store: Store, make_backend):
    backend = make_backend()
    pending = first_engine_copy(store, "a" * 32, backend.url, "p", 2)
    dead = first_engine_copy(store, "b" * 32, backend.url, "d", 5, "HTTP 404 is not retryable")
    store.r.zadd(f"hookfan:busy:{backend.url}", {pending: 1})

    assert migrate.migrate(store.r) == 2
    assert migrate.migrate(store.r) == 0  # nothing left to move
    assert not store.r.exists("hookfan:schedule", f"hookfan:dlv:{pending}",
                              f"hookfan:busy:{backend.url}")
    (copy,) = store.pending(backend.url)
    assert (copy.delivery_id, copy.attempts, copy.backend.route) == (pending, 2, "apps/old")
    letter = store.dead_letter(dead)
    assert letter is not None and letter.attempts == 5 and "404" in letter.last_error
    assert 20 < time.time() - letter.dead_at < 60  # seconds carried over as milliseconds

    courier = Courier(Schedule(store.r, DeliverySettings()), DeliverySettings())
    assert courier.run(backend.url) == 1
    (got,) = backend.wait_for(1)
    assert (got.body, got.header("X-Hookfan-Attempt"), got.delivery_id) == (b"old-body", "3",
                                                                           pending)
    assert store.replay(dead)
    courier.run(backend.url)
    assert [r.body for r in backend.wait_for(2)] == [b"old-body", b"old-body"]
    assert store.pending_count() == 0 and store.dead_ids() == []
    assert not request_stored(store.r, "a" * 32) and not request_stored(store.r, "b" * 32)
