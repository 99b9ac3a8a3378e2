"""Invariant 3 of issue 12, on the store itself (a real Redis, the real scripts): an outcome
carrying an old attempt token is stale. It is dropped and counted, and never deletes,
resurrects or orphans a copy; a dead letter stays listable, replayable and purgeable."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from hookfan import keys
from hookfan.config import DeliverySettings
from hookfan.envelope import StoredRequest
from hookfan.routes import Backend
from hookfan.schedule import Result, Schedule
from tests.support.procs import wait_until

URL = "http://127.0.0.1:9/stale"
"""Nothing is sent: the test plays the tasks' part itself."""
SETTINGS = DeliverySettings(delivery_timeout=0.05, max_retry_age=3.0, min_retry_delay=0.05,
                            max_retry_delay=0.1, backend_concurrency=1)
"""A lease of 5.05 s (2 x timeout + 5) that outlives the 3 s retry age."""


def stored(body: bytes) -> StoredRequest:
    return StoredRequest("POST", "/s", (("Content-Type", "text/plain"),), body, "10.0.0.1",
                         time.time(), "stale.example.com")


def redis_ms(r) -> int:  # type: ignore[no-untyped-def]
    sec, usec = r.time()
    return sec * 1000 + usec // 1000


def test_stale_outcome_never_deletes_resurrects_or_orphans_a_copy_or_dead_letter(
        store, redis_client, redis_url) -> None:  # type: ignore[no-untyped-def]
    r = redis_client
    sched = Schedule(r, SETTINGS)
    (x,) = store.accept("rx", stored(b"x"), [Backend("ns/stale", URL)])  # replayed below
    (y,) = store.accept("ry", stored(b"y"), [Backend("ns/stale", URL)])  # left dead below

    # A task claims both copies; its attempts then outlive their lease.
    old = sched.settle(URL, "old", 0, [], want=2)
    claims = {c.delivery_id: c for c in old.copies}
    assert set(claims) == {x, y} and all(c.attempt == 1 for c in claims.values())
    lease_end = max(r.zscore(keys.inflight(URL), d) for d in (x, y))
    wait_until(lambda: redis_ms(r) > lease_end, 10, "the leases ran out", interval=0.05)

    # The next task to look at the backend counts the expired leases as failed attempts;
    # the copies are past their retry age, so both become dead letters.
    other = sched.settle(URL, "other", 0, [], want=2)
    assert sorted(other.dead) == sorted([x, y]) and other.copies == []
    assert {store.dead_letter(d).last_error for d in (x, y)} == {"LeaseExpired"}
    assert store.replay(x)

    # Now the old attempts report success, with their old tokens.
    late = sched.settle(URL, "old", old.senders, [Result(claims[x], "d"), Result(claims[y], "d")],
                        want=0)
    assert late.stale == 2 and late.dead == []
    # x: still pending (replayed, due), its request kept; not a dead letter.
    assert [(p.delivery_id, p.attempts) for p in store.pending(URL)] == [(x, 0)]
    assert r.zscore(keys.ready(URL), x) is not None
    assert r.hget(keys.request("rx"), "n") == b"1"
    # y: still a dead letter, with its request (the CLI lists it with its method and path).
    assert store.dead_ids() == [y]
    info = store.dead_letter_info(y)
    assert info is not None and info[1].body == b"y"

    # The replayed x is claimed afresh; the old token stays stale while it is in flight.
    again = sched.settle(URL, "again", 0, [], want=1)
    (fresh,) = again.copies
    assert fresh.delivery_id == x and fresh.attempt == 1
    assert fresh.generation > claims[x].generation
    assert sched.settle(URL, "old", 0, [Result(claims[x], "d")], want=0).stale == 1
    assert r.zscore(keys.inflight(URL), x) is not None
    # x ends in a dead letter again: listable, replayable and purgeable, like y.
    ended = sched.settle(URL, "again", again.senders, [Result(fresh, "x", reason="HTTP 410")],
                         want=0)
    assert ended.dead == [x] and ended.stale == 0

    out = subprocess.run([sys.executable, "-m", "hookfan.cli", "deadletters", "list",
                          "--output", "json", "--redis-url", redis_url],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    listed = {d["id"]: d for d in json.loads(out.stdout)}
    assert set(listed) == {x, y}
    assert listed[x]["last_error"] == "HTTP 410" and listed[y]["last_error"] == "LeaseExpired"

    assert store.replay(x)
    assert [p.delivery_id for p in store.pending(URL)] == [x]
    last = sched.settle(URL, "last", 0, [], want=1)
    assert [c.delivery_id for c in last.copies] == [x]
    assert sched.settle(URL, "last", last.senders, [Result(last.copies[0], "x", reason="HTTP 410")],
                        want=0).dead == [x]
    assert store.purge(x) and store.purge(y)
    assert store.dead_ids() == [] and store.pending_count() == 0
    assert not r.exists(keys.request("rx")) and not r.exists(keys.request("ry"))
    assert r.hlen(keys.DEAD_INFO) == 0
