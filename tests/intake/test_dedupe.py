"""De-duplication by provider delivery id (``--dedupe-headers``): a repeat within the window gets
the first request's 202 and creates no pending copies, even when the copies race each other."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from hookfan import keys
from hookfan.devstack import free_port
from hookfan.envelope import StoredRequest
from hookfan.routes import Backend
from hookfan.store import Store, connect
from tests.conftest import route_file
from tests.stackfixtures import send
from tests.support.procs import Stack
from tests.support.redisproc import RedisProcess

HEADERS = "X-GitHub-Delivery,webhook-id,X-Shopify-Webhook-Id,Idempotency-Key"


@pytest.fixture(scope="module")
def dedupe_stack(module_redis: RedisProcess, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Stack]:
    s = Stack(module_redis.url, tmp_path_factory.mktemp("routes"),
              tmp_path_factory.mktemp("logs"), app_args=["--dedupe-headers", HEADERS])
    s.start_operator()
    s.start_app()
    yield s
    s.stop()


class Closed:
    """A backend port nobody listens on: copies stay pending, so they can be counted."""

    def __init__(self) -> None:
        self.port = free_port()


def pending(store: Store) -> int:
    """Copies waiting in any backend's schedule (no worker runs here: none is delivered)."""
    return store.pending_count()


def pending_ids(store: Store) -> set[str]:
    return {c.delivery_id for url in store.backend_urls() for c in store.pending(url)}


def routed_to_closed(stack: Stack, host: str, count: int = 2) -> None:
    route_file(stack.routes_dir, host, [Closed() for _ in range(count)],  # type: ignore[misc]
               name=host.replace(".", "-"))


@pytest.mark.parametrize("header", HEADERS.split(",") + ["x-github-delivery"])
def test_repeat_of_a_provider_id_gets_the_first_id_and_no_new_copies(dedupe_stack, stack_store,
                                                                      header):
    host = f"dd-{header.lower()}.example.com"
    routed_to_closed(dedupe_stack, host)
    first = send(dedupe_stack, host, b'{"n":1}', headers=[(header, "abc-123")])
    assert first.status_code == 202
    before = pending_ids(stack_store)
    rid = first.json()["id"]
    assert {f"{rid}-0", f"{rid}-1"} <= before
    # send() retries a 503 from a gunicorn worker whose route cache is a moment behind.
    again = send(dedupe_stack, host, b'{"n":1}', headers=[(header, "abc-123")])
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["X-Hookfan-Request"] == first.json()["id"]
    assert pending_ids(stack_store) == before


def test_same_id_on_another_host_or_without_the_header_is_a_new_request(dedupe_stack,
                                                                         stack_store):
    for host in ("dd-a.example.com", "dd-b.example.com"):
        routed_to_closed(dedupe_stack, host)
    a = send(dedupe_stack, "dd-a.example.com", headers=[("webhook-id", "same")])
    b = send(dedupe_stack, "dd-b.example.com", headers=[("webhook-id", "same")])
    c = send(dedupe_stack, "dd-a.example.com")
    d = send(dedupe_stack, "dd-a.example.com", headers=[("webhook-id", "other")])
    ids = {r.json()["id"] for r in (a, b, c, d)}
    assert len(ids) == 4


def test_identical_requests_arriving_together_store_one_set_of_deliveries(dedupe_stack,
                                                                           stack_store):
    host = "dd-race.example.com"
    routed_to_closed(dedupe_stack, host)
    send(dedupe_stack, host, headers=[("X-GitHub-Delivery", "warm-up")])
    for round_ in range(10):
        before = pending(stack_store)
        answers = race(dedupe_stack, host, f"race-{round_}", 6)
        assert len(answers) == 6 and len(set(answers)) == 1
        assert pending(stack_store) == before + 2


def race(stack: Stack, host: str, provider_id: str, copies: int) -> list[str]:
    """Send ``copies`` identical requests released at the same instant; their 202 ids."""
    gate = threading.Barrier(copies)
    answers: list[str] = []

    def one() -> None:
        gate.wait()
        resp = send(stack, host, b"{}", headers=[("X-GitHub-Delivery", provider_id)])
        assert resp.status_code == 202
        answers.append(resp.json()["id"])

    threads = [threading.Thread(target=one) for _ in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return answers


def test_accept_once_is_atomic_across_clients(redis_url):
    """Store level, many clients at once: exactly one of them stores the request."""
    backends = (Backend("r", "http://127.0.0.1:9"),)
    req = StoredRequest("POST", "/", (), b"{}", "127.0.0.1", 1.0, "h")
    stores = [Store(connect(redis_url)) for _ in range(16)]
    gate = threading.Barrier(len(stores))
    results = []

    def one(i: int) -> None:
        gate.wait()
        results.append(stores[i].accept_once(f"req{i}", req, backends, keys.dedupe("h", "x", "1"),
                                             60))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.request_id for r in results}) == 1
    (winner,) = {r.request_id for r in results}
    assert stores[0].pending_count() == 1
    assert [c.delivery_id for c in stores[0].pending(backends[0].url)] == [f"{winner}-0"]
    assert stores[0].r.zcard(keys.ready(backends[0].url)) == 1
    assert stores[0].r.hget(keys.request(winner), "n") == b"1"
    assert len(list(stores[0].r.scan_iter(keys.REQUEST + "*"))) == 1


def test_dedupe_is_off_by_default(redis_url):
    from hookfan.app.intake import dedupe_key
    assert dedupe_key((), (("X-GitHub-Delivery", "a"),), "h") is None
    assert dedupe_key(("webhook-id",), (("Webhook-Id", "a"),), "H:80") == \
        keys.dedupe("h", "webhook-id", "a")

