"""What a dead letter keeps (its body size, its place in the per-route count), and dead letters
written before it did: they still list, and a worker start counts them once. A real Redis and
the real scripts; the tests play the worker's part through :class:`Schedule`."""

from __future__ import annotations

import json

from hookfan import keys
from hookfan.config import DeliverySettings
from hookfan.deadletters import Selection
from hookfan.envelope import StoredRequest
from hookfan.operator.backlog import scan
from hookfan.policy import classify
from hookfan.routes import Backend
from hookfan.schedule import Claimed, Result, Schedule
from hookfan.worker.tasks import Attempt, result
from tests.deadletters.seed import ROUTES, seed, url_of

URL = "http://127.0.0.1:9/records"
SETTINGS = DeliverySettings(delivery_timeout=0.05, max_retry_age=3600.0, min_retry_delay=10.0,
                            max_retry_delay=40.0, backend_concurrency=0)


def pending(r, n: int, attempts: int = 0) -> list[str]:  # type: ignore[no-untyped-def]
    """``n`` copies for :data:`URL`, due now, with a request of ``7 + i`` body bytes each."""
    secs, _ = r.time()
    pipe = r.pipeline()
    ids = []
    for i in range(n):
        rid, did = f"q{i}", f"q{i}-0"
        pipe.hset(keys.request(rid), mapping={"m": "POST", "u": "/", "h": "[]",
                                              "b": b"y" * (7 + i), "t": secs, "n": 1})
        pipe.hset(keys.copies(URL), did, f"0 {attempts} {secs * 1000} ns/records")
        pipe.zadd(keys.ready(URL), {did: 0})
        ids.append(did)
    pipe.execute()
    return ids


def test_a_dead_letter_keeps_its_body_size_and_lists_without_reading_the_body(
        store, redis_client) -> None:  # type: ignore[no-untyped-def]
    r = redis_client
    pending(r, 3)
    sched = Schedule(r, SETTINGS)
    batch = sched.settle(URL, "t", 0, [], want=3)
    results = [Result(c, "x", 0.0, "HTTP 410 is not retryable", 7 + int(c.delivery_id[1]))
               for c in batch.copies]
    assert sched.settle(URL, "t", batch.senders, results, want=0).dead
    r.config_resetstat()
    letters = store.dead.letters(list(store.dead.select(Selection())))
    assert sorted(le.body_size for le in letters) == [7, 8, 9]
    assert "cmdstat_hstrlen" not in r.info("commandstats")
    assert r.hgetall(keys.DEAD_COUNT) == {f"ns/records {URL}".encode(): b"3"}


def test_a_lease_that_ran_out_is_buried_without_a_size_and_lists_through_hstrlen(
        store, redis_client) -> None:  # type: ignore[no-untyped-def]
    r = redis_client
    (did,) = pending(r, 1)
    sched = Schedule(r, DeliverySettings(delivery_timeout=0.05, max_retry_age=0.001))
    batch = sched.settle(URL, "t", 0, [], want=1)
    assert batch.dead == [did]  # past its retry age when claimed
    assert json.loads(r.hget(keys.DEAD_INFO, did))[6] == -1
    assert store.dead_letter(did).body_size == 7
    assert int(r.hget(keys.DEAD_COUNT, f"ns/records {URL}")) == 1


def lease_delays(r, attempts: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Claim 200 copies that had ``attempts`` attempts, let every lease run out, and return
    the delays (s) the next settle gave their retries."""
    ids = pending(r, 200, attempts)
    sched = Schedule(r, SETTINGS)
    assert len(sched.settle(URL, "t", 0, [], want=200).copies) == 200
    r.zadd(keys.inflight(URL), dict.fromkeys(ids, 0))  # every lease ran out
    secs, micros = r.time()
    now = secs * 1000 + micros // 1000
    sched.settle(URL, "u", 0, [], want=0)
    return [(r.zscore(keys.ready(URL), d) - now) / 1000 for d in ids]


def test_expired_leases_retry_spread_above_the_minimum(redis_client) -> None:  # type: ignore[no-untyped-def]
    delays = lease_delays(redis_client, 0)  # the first attempt's lease ran out
    assert min(delays) >= 10.0 - 0.5 and max(delays) <= 15.0 + 0.5
    assert max(delays) - min(delays) > 3.0
    assert sum(d < 10.2 for d in delays) < 40  # no pile-up on the minimum


def test_expired_leases_retry_spread_below_the_cap(redis_client) -> None:  # type: ignore[no-untyped-def]
    delays = lease_delays(redis_client, 29)  # the 30th attempt's lease ran out
    assert min(delays) >= 20.0 - 0.5 and max(delays) <= 40.0 + 0.5
    assert max(delays) - min(delays) > 10.0
    assert sum(d > 39.5 for d in delays) < 40  # no pile-up on the cap


def test_records_written_before_sizes_still_list_and_are_counted_once(
        store, redis_client, capsys) -> None:  # type: ignore[no-untyped-def]
    r = redis_client
    seeded = seed(r, 300, sized=False)
    assert store.dead.counts() == {} and store.dead.uncounted()
    letters = store.dead.letters(list(store.dead.select(Selection(limit=5))))
    assert [le.body_size for le in letters] == [10 + i for i in range(5)]  # via HSTRLEN
    seen_by_another_worker = list(store.dead.select(Selection()))
    assert store.dead.backfill() == 300
    assert store.dead.backfill() == 0 and not store.dead.uncounted()
    # a second worker counting the same records at the same time counts none of them again
    assert store.dead.count_in(seen_by_another_worker) == 0
    assert store.dead.counts() == {(route, url_of(route)): 100 for route in ROUTES}
    record = json.loads(r.hget(keys.DEAD_INFO, seeded.ids[7]))
    assert record[6] == 17
    # a replay and a purge of counted records keep the count exact
    assert store.replay(seeded.ids[0]) and store.purge(seeded.ids[1])
    counts = store.dead.counts()
    assert counts[("shop/orders", url_of("shop/orders"))] == 99
    assert counts[("shop/refunds", url_of("shop/refunds"))] == 99


def test_backlog_counts_dead_letters_exactly_past_its_scan_bound(store, redis_client
                                                                 ) -> None:  # type: ignore[no-untyped-def]
    seed(redis_client, 90)
    backlog = scan(store, limit=10)
    assert backlog.truncated
    assert backlog.dead == {(route, url_of(route)): 30 for route in ROUTES}


def test_the_task_reports_the_body_size_with_a_dead_letter_or_a_retry() -> None:
    copy = Claimed("q0-0", 1, 1, 0.0, "ns/records")
    req = StoredRequest("POST", "/", (), b"12345", "10.0.0.1", 0.0, "h.example.com")
    s = DeliverySettings()
    dead = Attempt(copy, Backend("ns/records", URL), req, classify(410), 0.01)
    retry = Attempt(copy, Backend("ns/records", URL), req, classify(503), 0.01)
    missing = Attempt(copy, Backend("ns/records", URL), None, classify(None, "X"), 0.0)
    assert (result(dead, s).kind, result(dead, s).size) == ("x", 5)
    assert (result(retry, s).kind, result(retry, s).size) == ("r", 5)
    assert result(missing, s).size == -1


def test_paging_takes_every_dead_letter_once_when_thousands_share_a_millisecond(
        store, redis_client) -> None:  # type: ignore[no-untyped-def]
    r = redis_client
    seed(r, 2600, span_ms=0)  # all dead-lettered in the same ms
    dead = store.dead
    walked = [rec.delivery_id for rec in dead.select(Selection(), page=700)]
    assert len(walked) == 2600 and len(set(walked)) == 2600
    # purging while walking (the cursor's own id goes) neither repeats nor skips any
    purged = 0
    for rec in dead.select(Selection(reason="404"), page=30):
        purged += sum(dead.purge([rec]).values())
    assert purged == 2600 // 25 and r.zcard(keys.DEAD) == 2600 - purged
