"""The policy half of ``settle.lua`` on the store itself (a real Redis, the real scripts; the
test plays the tasks' part): an ordered backend hands out one copy at a time in accept order,
keeps a failed or unsent head in its place and holds the rest until its retry time; a rate
limit hands out no more copies than its bucket holds and makes the backend due at its next
token."""

from __future__ import annotations

import time
from typing import Any

from hookfan import keys
from hookfan.config import DeliverySettings
from hookfan.deliverypolicy import DeliveryPolicy
from hookfan.envelope import StoredRequest
from hookfan.routes import Backend, build_table
from hookfan.schedule import Result, Schedule

URL = "http://127.0.0.1:9/policy"
SETTINGS = DeliverySettings(delivery_timeout=1.0, min_retry_delay=0.3, max_retry_delay=0.3)
ORDERED = DeliveryPolicy(ordered=True)


def accept(store: Any, count: int, tag: str = "r") -> list[str]:
    ids: list[str] = []
    for i in range(count):
        ids += store.accept(f"{tag}{i}", StoredRequest("POST", "/", (), b"%d" % i, "10.0.0.1",
                                                   time.time(), "p.example.com"),
                            [Backend("ns/p", URL)])
    return ids


def claim(sched: Schedule, policy: DeliveryPolicy, results: list[Result] | None = None,
          held: int = 0) -> Any:
    return sched.settle(URL, "t", held, results or [], 64, policy=policy)


def test_an_ordered_backend_goes_one_copy_at_a_time_in_accept_order(
        store: Any, redis_client: Any) -> None:
    sched = Schedule(redis_client, SETTINGS)
    ids = accept(store, 3)
    first = claim(sched, ORDERED)
    assert [c.delivery_id for c in first.copies] == [ids[0]] and first.senders == 1
    assert claim(sched, ORDERED).copies == []  # nothing while one is in flight
    # It fails: it keeps its place and the others wait for its retry time.
    failed = claim(sched, ORDERED, [Result(first.copies[0], "r", 0.3, "HTTP 503")], 1)
    assert failed.copies == [] and failed.ended
    assert redis_client.zscore(keys.OWNED, URL) > redis_client.time()[0] * 1000  # until hold
    assert redis_client.hget(keys.STATS, f"blocked:ns/p {URL}").startswith(ids[0].encode())
    time.sleep(0.35)
    again = claim(sched, ORDERED)
    assert [(c.delivery_id, c.attempt) for c in again.copies] == [(ids[0], 2)]
    # Left unsent (the task ran out of time): still first.
    unsent = claim(sched, ORDERED, [Result(again.copies[0], "u")], 1)
    assert [(c.delivery_id, c.attempt) for c in unsent.copies] == [(ids[0], 2)]
    order = [ids[0]]
    batch = claim(sched, ORDERED, [Result(unsent.copies[0], "d")], 1)
    assert redis_client.hget(keys.STATS, f"blocked:ns/p {URL}") is None
    while batch.copies:
        order += [c.delivery_id for c in batch.copies]
        batch = claim(sched, ORDERED, [Result(c, "d") for c in batch.copies], batch.senders)
    assert order == ids
    assert redis_client.zcard(keys.ready(URL)) == 0 and redis_client.hlen(keys.copies(URL)) == 0


def test_a_rate_limit_hands_out_its_bucket_then_waits_for_the_next_token(
        store: Any, redis_client: Any) -> None:
    sched = Schedule(redis_client, SETTINGS)
    accept(store, 10)
    policy = DeliveryPolicy(rate=2.0, burst=3)
    first = claim(sched, policy)
    assert len(first.copies) == 3
    dry = claim(sched, policy, [Result(c, "d") for c in first.copies], first.senders)
    assert dry.copies == [] and dry.ended
    sec, usec = redis_client.time()
    now = sec * 1000 + usec // 1000
    # Owned until the next token (0.5 s at 2 a second): an accept meanwhile does not make the
    # backend due sooner.
    owned = redis_client.zscore(keys.OWNED, URL)
    assert owned is not None and now < owned <= now + 500
    redis_client.zrem(keys.DUE, URL)  # the dispatcher's part, which this test plays
    accept(store, 1, "late")
    assert redis_client.zscore(keys.DUE, URL) is None
    time.sleep(0.55)
    assert len(claim(sched, policy).copies) == 1


def test_a_backend_that_stops_being_ordered_is_no_longer_shown_blocked(
        store: Any, redis_client: Any) -> None:
    sched = Schedule(redis_client, SETTINGS)
    accept(store, 2)
    head = claim(sched, ORDERED).copies[0]
    claim(sched, ORDERED, [Result(head, "r", 0.3, "HTTP 503")], 1)
    field = f"blocked:ns/p {URL}"
    entries = [("p.example.com", Backend("ns/p", URL))]
    store.publish_routes(build_table(entries, 0, policies={URL: ORDERED}))
    assert redis_client.hexists(keys.STATS, field)  # still ordered: still blocked
    store.publish_routes(build_table(entries, 0))
    assert not redis_client.hexists(keys.STATS, field)
