"""The per-host counters behind ``--max-pending-per-host`` and ``--max-stored-bytes-per-host``
stay exact through every way a copy or a request leaves Redis: delivered, dead-lettered,
replayed, purged, expired by retention. A real Redis and the real scripts; the tests play the
worker's part through :class:`Schedule` and the CLI's through :class:`Store`."""

from __future__ import annotations

import time

import pytest

from hookfan import keys
from hookfan.config import INTAKE, DeliverySettings, SettingsError, build
from hookfan.envelope import StoredRequest
from hookfan.routes import Backend
from hookfan.schedule import Claimed, Result, Schedule
from hookfan.store import OverQuota, Quota, Store, accepted

A, B = "http://127.0.0.1:9/a", "http://127.0.0.1:9/b"
SETTINGS = DeliverySettings(delivery_timeout=0.05, max_retry_age=3600.0, min_retry_delay=10.0,
                            max_retry_delay=40.0, backend_concurrency=0)


def request(host: str, size: int) -> StoredRequest:
    return StoredRequest("POST", "/hook?x=1", (("Content-Type", "application/json"),),
                         b"x" * size, "10.0.0.1", time.time(), host)


def stored_bytes(req: StoredRequest) -> int:
    """What the request's hash holds: its body pieces and its ``r``."""
    return sum(len(v) for v in req.to_fields().values())


def held(store: Store, host: str) -> tuple[int, int]:
    """(copies, stored bytes) the counters hold for ``host``; a missing field is 0."""
    p, b = store.r.hmget(keys.QUOTA, *keys.quota_fields(host))
    return int(p or 0), int(b or 0)


def accept(store: Store, rid: str, host: str, size: int, urls: list[str],
           quota: Quota | None = None) -> StoredRequest:
    req = request(host, size)
    backends = [Backend(f"ns/{u.rsplit('/', 1)[1]}", u) for u in urls]
    keys_, args, _ = store.accept_call(rid, req, backends, quota=quota)
    accepted(store.scripts["accept"](keys=keys_, args=args), rid, len(backends))
    return req


def claim(sched: Schedule, url: str, want: int = 100) -> list[Claimed]:
    return sched.settle(url, "t", 0, [], want=want).copies


def outcome(sched: Schedule, url: str, copies: list[Claimed], kind: str) -> None:
    sched.settle(url, "t", 0, [Result(c, kind, 0.0, "HTTP 400" if kind == "x" else "", 10)  # type: ignore[arg-type]
                              for c in copies], want=0)


def test_a_request_counts_its_copies_and_its_bytes_once(store) -> None:  # type: ignore[no-untyped-def]
    req = accept(store, "r1", "Hooks.Example.com:8443", 1000, [A, B])
    assert held(store, "hooks.example.com") == (2, stored_bytes(req))  # host as matched
    assert 1000 < stored_bytes(req) < 1300
    assert store.r.hget(keys.request("r1"), "q") == b"%d hooks.example.com" % stored_bytes(req)
    accept(store, "r2", "hooks.example.com", 10, [A])
    assert held(store, "hooks.example.com")[0] == 3


def test_delivered_copies_leave_and_the_bytes_leave_with_the_last(store) -> None:  # type: ignore[no-untyped-def]
    sched = Schedule(store.r, SETTINGS)
    req = accept(store, "r1", "h.example.com", 500, [A, B])
    outcome(sched, A, claim(sched, A), "d")
    assert held(store, "h.example.com") == (1, stored_bytes(req))
    outcome(sched, B, claim(sched, B), "d")
    assert held(store, "h.example.com") == (0, 0)
    assert store.r.hgetall(keys.QUOTA) == {}  # fields at 0 are deleted, never negative


def test_dead_letters_count_until_purged_and_replay_changes_nothing(store) -> None:  # type: ignore[no-untyped-def]
    sched = Schedule(store.r, SETTINGS)
    req = accept(store, "r1", "h.example.com", 500, [A, B])
    full = (2, stored_bytes(req))
    outcome(sched, A, claim(sched, A), "x")  # dead letter
    outcome(sched, B, claim(sched, B), "r")  # retrying
    assert held(store, "h.example.com") == full
    assert store.replay("r1-0")
    assert held(store, "h.example.com") == full
    outcome(sched, A, claim(sched, A), "x")
    assert store.purge("r1-0")
    assert held(store, "h.example.com") == (1, stored_bytes(req))  # B still holds the body
    store.r.zadd(keys.ready(B), {"r1-1": 0})  # due again now
    outcome(sched, B, claim(sched, B), "x")
    assert store.purge("r1-1")
    assert held(store, "h.example.com") == (0, 0)
    assert not store.r.exists(keys.request("r1"))


def test_retention_and_the_retry_age_keep_the_counts_exact(store) -> None:  # type: ignore[no-untyped-def]
    sched = Schedule(store.r, SETTINGS)
    req = accept(store, "r1", "h.example.com", 300, [A])
    store.r.hset(keys.copies(A), "r1-0", "0 0 0 ns/a")  # its retry age began in 1970
    assert sched.settle(A, "t", 0, [], want=1).dead == ["r1-0"]  # buried when claimed
    assert held(store, "h.example.com") == (1, stored_bytes(req))
    accept(store, "r2", "other.example.com", 300, [A])
    outcome(sched, A, claim(sched, A), "d")
    assert store.dead.expire(0.0) == {"ns/a": 1}
    assert held(store, "h.example.com") == (0, 0)
    assert held(store, "other.example.com") == (0, 0)


def test_requests_stored_before_the_counters_are_never_counted(store) -> None:  # type: ignore[no-untyped-def]
    """A request without ``q`` (stored by an older app) leaves the counters alone: they never
    go below what the counted requests hold."""
    sched = Schedule(store.r, SETTINGS)
    req = accept(store, "new", "h.example.com", 200, [A])
    old = accept(store, "old", "h.example.com", 200, [A, B])
    store.r.hdel(keys.request("old"), "q")  # as an older app stored it: uncounted
    store.r.hincrby(keys.QUOTA, "p:h.example.com", -2)
    store.r.hincrby(keys.QUOTA, "b:h.example.com", -stored_bytes(old))
    assert held(store, "h.example.com") == (1, stored_bytes(req))
    copies = claim(sched, A)
    outcome(sched, A, [c for c in copies if c.request_id == "old"], "d")
    outcome(sched, B, claim(sched, B), "x")
    assert store.purge("old-1")
    assert held(store, "h.example.com") == (1, stored_bytes(req))
    store.r.zadd(keys.ready(A), {"new-0": 0})
    outcome(sched, A, claim(sched, A), "d")
    assert held(store, "h.example.com") == (0, 0)


def test_a_batch_takes_one_counter_write_per_host(store) -> None:  # type: ignore[no-untyped-def]
    """Delivered copies of many requests for two hosts: the settle adds one HINCRBY per host
    (bytes: none, no request leaves) to the ones it always made (per copy, the request's
    ``n``; per route, its delivered figure)."""
    sched = Schedule(store.r, SETTINGS)
    for i in range(10):
        accept(store, f"r{i}", f"h{i % 2}.example.com", 100, [A, B])
    copies = claim(sched, A)
    store.r.config_resetstat()
    outcome(sched, A, copies, "d")
    calls = store.r.info("commandstats")["cmdstat_hincrby"]["calls"]
    assert calls == 10 + 1 + 2
    assert held(store, "h0.example.com")[0] == held(store, "h1.example.com")[0] == 5


def test_the_accept_refuses_a_host_past_its_caps_and_stores_nothing(store) -> None:  # type: ignore[no-untyped-def]
    caps = Quota(pending=3, stored_bytes=10_000)
    accept(store, "r1", "full.example.com", 100, [A, B], caps)
    with pytest.raises(OverQuota) as refused:
        accept(store, "r2", "full.example.com", 100, [A, B], caps)
    assert refused.value.cap == "pending" and refused.value.flag == "--max-pending-per-host"
    assert not store.r.exists(keys.request("r2"))
    assert store.r.hlen(keys.copies(A)) == 1
    accept(store, "r3", "full.example.com", 100, [A], caps)  # exactly at the cap: taken
    accept(store, "r4", "other.example.com", 100, [A, B], caps)  # another host: taken
    with pytest.raises(OverQuota) as too_big:
        accept(store, "r5", "big.example.com", 10_000, [A], caps)
    assert too_big.value.cap == "bytes"
    assert held(store, "big.example.com") == (0, 0)
    assert held(store, "full.example.com")[0] == 3


def test_the_quota_flags_read_their_variables_and_name_themselves_when_bad() -> None:
    s = build(INTAKE, {"max-pending-per-host": "7"},
              environ={"HOOKFAN_MAX_STORED_BYTES_PER_HOST": "20000000"})
    assert (s.intake.max_pending_per_host, s.intake.max_stored_bytes_per_host) == (7, 20_000_000)
    assert build(INTAKE, {"max-stored-bytes-per-host": "0"}).intake.max_stored_bytes_per_host == 0
    with pytest.raises(SettingsError, match="--max-pending-per-host: must be 0"):
        build(INTAKE, {"max-pending-per-host": "-1"})
    with pytest.raises(SettingsError, match="HOOKFAN_MAX_STORED_BYTES_PER_HOST .*must be 0 "
                                            r"\(off\) or a positive integer, got 'lots'"):
        build(INTAKE, {}, environ={"HOOKFAN_MAX_STORED_BYTES_PER_HOST": "lots"})
    # a cap below the largest request allowed would refuse that request for ever
    with pytest.raises(SettingsError, match="--max-stored-bytes-per-host 1000 is below "
                                            "--body-size-limit"):
        build(INTAKE, {"max-stored-bytes-per-host": "1000"})
