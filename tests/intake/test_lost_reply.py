"""A write whose reply is lost: the intake looks on a fresh connection before it answers.

The app talks to a real redis-server through :class:`RedisProxy`, which loses accepts on
purpose: after Redis ran one (202: it is stored), before it reached Redis (not stored: that id
is fenced and the request written again under a new id), twice (503), or by holding one until
the app has looked (when it lands, it must store nothing).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from hookfan import keys
from tests.conftest import route_file
from tests.stackfixtures import raw_send, send
from tests.support.ledger import request_stored
from tests.support.procs import Stack
from tests.support.redisproc import RedisProcess
from tests.support.redisproxy import RedisProxy

HOST = "lost.example.com"


@pytest.fixture
def rig(tmp_path: Path, make_backend: Any) -> Iterator[tuple[Stack, RedisProxy, redis.Redis]]:
    """Operator straight on Redis, app through the proxy, no worker (copies stay pending)."""
    r = RedisProcess(tmp_path / "redis").start()
    proxy = RedisProxy(r.port)
    routes = tmp_path / "routes"
    routes.mkdir()
    route_file(routes, HOST, [make_backend()])
    operator = Stack(r.url, routes, tmp_path / "logs-operator")
    app = Stack(proxy.url, routes, tmp_path / "logs-app")
    try:
        operator.start_operator()
        app.start_app()
        assert send(app, HOST).status_code == 202  # the route is live in the app
        yield app, proxy, r.client()
    finally:
        app.stop()
        operator.stop()
        proxy.close()
        r.stop()


def stored_requests(client: redis.Redis) -> set[bytes]:
    return set(client.scan_iter(keys.REQUEST + "*", _type="hash"))


def send_through(rig, fault: str, body: bytes):  # type: ignore[no-untyped-def]
    """Send one webhook with the proxy armed for ``fault``: (requests stored before, the
    answer, seconds it took). Asserts the fault happened."""
    app, proxy, client = rig
    before = stored_requests(client)
    proxy.arm(fault)
    started = time.monotonic()
    resp = raw_send(app.url, HOST, body)
    assert proxy.fired.is_set()
    return before, resp, time.monotonic() - started


def test_reply_lost_after_commit_is_answered_202_once(rig):
    app, proxy, client = rig
    before, resp, took = send_through(rig, "drop_reply", b'{"lost": "reply"}')
    assert proxy.dropped_reply in (b"$-1\r\n", b"_\r\n")  # a nil reply: Redis stored it
    assert resp.status_code == 202, resp.text
    assert took < 2.0
    rid = resp.json()["id"]
    assert request_stored(client, rid)
    assert stored_requests(client) - before == {keys.request(rid).encode()}
    assert client.hget(keys.request(rid), "n") == b"1"
    assert "looked: stored" in app.logs()["app"]


def test_call_that_never_reached_redis_is_fenced_and_written_again_under_a_new_id(rig):
    """The connection broke before the call reached Redis (a restart closed it): the look finds
    nothing, fences that id, and the intake writes once more under a new id: one 202, one
    request stored."""
    app, proxy, client = rig
    before, resp, took = send_through(rig, "swallow", b'{"lost": "call"}')
    assert resp.status_code == 202, resp.text
    assert took < 2.0
    rid = resp.json()["id"]
    assert stored_requests(client) - before == {keys.request(rid).encode()}
    fences = list(client.scan_iter(keys.FENCE + "*"))
    assert len(fences) == 1 and fences[0] != keys.fence(rid).encode()
    assert "looked: not stored" in app.logs()["app"]


def test_twice_lost_is_answered_503_and_stores_nothing(rig):
    app, proxy, client = rig
    before = stored_requests(client)
    proxy.arm("swallow", times=2)
    resp = raw_send(app.url, HOST, b'{"lost": "twice"}')
    assert resp.status_code == 503
    assert resp.headers["Retry-After"].isdigit()
    assert stored_requests(client) == before
    assert len(list(client.scan_iter(keys.FENCE + "*"))) == 2


def test_call_landing_after_the_look_stores_nothing(rig):
    app, proxy, client = rig
    before, resp, _ = send_through(rig, "hold", b'{"late": "call"}')
    assert resp.status_code == 202  # written again under a new id
    rid = resp.json()["id"]
    assert proxy.release().endswith(b"fenced\r\n")  # Redis ran it only now: it wrote nothing
    assert stored_requests(client) - before == {keys.request(rid).encode()}
    assert client.hget(keys.request(rid), "n") == b"1"


def test_a_request_delivered_before_the_look_still_counts_as_stored(store, redis_client):
    """The look can come after the copies were delivered and the request deleted: a marker
    left in its place for a few seconds still answers "stored"."""
    from hookfan.config import DeliverySettings
    from hookfan.envelope import StoredRequest
    from hookfan.routes import Backend
    from hookfan.schedule import Result, Schedule

    url = "http://127.0.0.1:9/look"  # nothing is sent: the test plays the task's part
    req = StoredRequest("POST", "/", (), b"x", "10.0.0.1", time.time(), "look.example.com")
    store.accept("quick", req, [Backend("ns/look", url)])
    sched = Schedule(redis_client, DeliverySettings())
    claim = sched.settle(url, "t", 0, [], want=1)
    sched.settle(url, "t", claim.senders, [Result(claim.copies[0], "d")], want=0)
    assert not request_stored(redis_client, "quick")  # the body is gone
    assert store.resolve("quick", None) is not None
    assert store.resolve("never", None) is None
    assert redis_client.exists(keys.fence("never")) and not redis_client.exists(
        keys.fence("quick"))
