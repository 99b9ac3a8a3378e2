"""``--dead-letter-retention``: dead letters past it are deleted with their bodies, except a
body another copy still needs; each deletion is counted in
``hookfan_dead_letters_expired_total{route}``."""

from __future__ import annotations

from pathlib import Path

import requests

from hookfan import keys
from hookfan.deadletters import DeadLetters
from hookfan.devstack import free_port
from hookfan.worker.retention import Retention
from tests.deadletters.seed import ROUTES, seed, url_of
from tests.support.procs import HookfanProcess, port_open, wait_until

DAY = 86400.0


def share_a_body(r, did: str) -> None:  # type: ignore[no-untyped-def]
    """Give ``did``'s request a second copy, still pending for another backend."""
    rid = keys.request_id_of(did)
    r.hset(keys.request(rid), "n", 2)
    r.hset(keys.copies("http://other.svc/hook"), f"{rid}-1", "0 1 0 ns/other")


def test_retention_deletes_old_dead_letters_and_bodies_no_other_copy_needs(redis_client):
    r = redis_client
    seeded = seed(r, 60, span_ms=47 * 3600 * 1000)  # the older 30 are 24.3 h old and more
    old = [d for d in seeded.ids if seeded.dead_at[d] < seeded.now - DAY * 1000]
    young = [d for d in seeded.ids if d not in old]
    assert len(old) == 30
    share_a_body(r, old[4])
    expired = Retention(DeadLetters(r), DAY).step()
    assert expired == {route: 10 for route in ROUTES}
    assert {d.decode() for d in r.zrange(keys.DEAD, 0, -1)} == set(young)
    assert r.hlen(keys.DEAD_INFO) == len(young)
    gone = [d for d in old if d != old[4]]
    assert not any(r.exists(keys.request(keys.request_id_of(d))) for d in gone)
    assert all(r.exists(keys.request(keys.request_id_of(d))) for d in young)
    shared = keys.request(keys.request_id_of(old[4]))
    assert r.hget(shared, "n") == b"1" and len(r.hget(shared, "b")) == 14  # 10 + 4 % 50
    assert DeadLetters(r).counts() == {(route, url_of(route)): 10 for route in ROUTES}
    assert Retention(DeadLetters(r), DAY).step() == {}


def test_a_worker_expires_dead_letters_and_counts_them_per_route(redis_url, redis_client,
                                                                  tmp_path: Path):
    r = redis_client
    seed(r, 45, span_ms=3600 * 1000, sized=False)  # written before sizes and counts
    port = free_port()
    worker = HookfanProcess(["worker", "--redis-url", redis_url, "--concurrency", "1",
                             "--dead-letter-retention", "1s",
                             "--metrics-addr", f"127.0.0.1:{port}"], tmp_path, "worker").start()
    try:
        wait_until(lambda: r.zcard(keys.DEAD) == 0, timeout=60, what="dead letters expired")
        assert r.hlen(keys.DEAD_INFO) == 0
        # nothing left but hookfan's own keys and Celery's (its queue bindings once bound, and
        # kombu's bookkeeping of reserved messages: unacked, unacked_index, unacked_mutex)
        assert not [k for k in r.keys("*") if not k.startswith((b"hookfan:", b"_kombu."))
                    and k not in (b"unacked", b"unacked_index", b"unacked_mutex")]
        assert not [k for k in r.keys("hookfan:req:*")]
        assert all(int(n) == 0 for n in r.hvals(keys.DEAD_COUNT))
        wait_until(lambda: port_open(port), what="worker metrics")
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for route in ROUTES:
            assert (f'hookfan_dead_letters_expired_total{{route="{route}"}} 15.0'
                    in text), text
    finally:
        worker.stop()
