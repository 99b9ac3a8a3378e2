"""What a sender gets back from the intake under gunicorn: 202, 503, 413, 408."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.stackfixtures import raw_send, send
from tests.support.procs import Stack, wait_until

LIMIT = 10_000_000


def test_unknown_host_gets_503_and_stores_nothing(stack, stack_store):
    before = stack_store.r.dbsize()
    resp = raw_send(stack.url, "nobody-routes-this.example.com", b"{}")
    assert resp.status_code == 503
    assert "no RequestClone" in resp.json()["error"]
    assert stack_store.r.dbsize() == before


def test_host_matches_ignoring_case_and_port(stack, routed, make_backend):
    backend = make_backend()
    routed("webhook-receiver.example.com", [backend])
    resp = send(stack, "WEBHOOK-receiver.example.com:8080", b"{}")
    assert resp.status_code == 202
    assert resp.json()["deliveries"] == 1
    assert resp.headers["X-Hookfan-Request"] == resp.json()["id"]
    backend.wait_for(1)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_of_exactly_the_limit_is_accepted_one_more_byte_413(stack, routed, make_backend,
                                                                  chunked):
    backend = make_backend()
    host = f"limit-{chunked}.example.com"
    routed(host, [backend])
    assert send(stack, host, b"a" * LIMIT, chunked=chunked).status_code == 202
    over = send(stack, host, b"a" * (LIMIT + 1), chunked=chunked)
    assert over.status_code == 413
    assert str(LIMIT) in over.json()["error"]
    (got,) = backend.wait_for(1)
    assert len(got.body) == LIMIT


def test_any_method_on_any_path_is_taken(stack, routed, make_backend):
    backend = make_backend()
    routed("methods.example.com", [backend])
    for method in ("OPTIONS", "PROPFIND", "HEAD"):
        assert send(stack, "methods.example.com", b"", method=method,
                    path="/a//b/../c").status_code == 202
    got = backend.wait_for(3)
    assert sorted(r.method for r in got) == ["HEAD", "OPTIONS", "PROPFIND"]
    assert {r.path for r in got} == {"/a//b/../c"}


def test_slow_client_is_dropped_and_does_not_hold_a_worker(stack, routed, make_backend):
    """A client that sends headers and then too little body is answered 408 after
    --proxy-read-timeout (2 s here), and its connection closed; the app keeps serving others
    meanwhile."""
    backend = make_backend()
    routed("slow.example.com", [backend])
    live_everywhere(stack, "slow.example.com")
    slow = [socket.create_connection(("127.0.0.1", stack.port)) for _ in range(2)]
    for s in slow:
        s.sendall(b"POST / HTTP/1.1\r\nHost: slow.example.com\r\nContent-Length: 100\r\n\r\nab")
    start = time.monotonic()
    for s in slow:
        s.settimeout(15)
        answer = s.recv(4096)
        assert answer.split(b"\r\n", 1)[0].startswith(b"HTTP/1.1 408 "), answer
    assert time.monotonic() - start < 12
    assert send(stack, "slow.example.com", b"{}").status_code == 202


def live_everywhere(stack, host: str) -> None:
    """Wait until every gunicorn worker has the route: several 202s in a row."""
    send(stack, host, b"{}")
    streak = [0]

    def ok() -> bool:
        streak[0] = streak[0] + 1 if raw_send(stack.url, host, b"{}").status_code == 202 else 0
        return streak[0] >= 6
    wait_until(ok, what=f"{host} live in every app worker")


def test_redis_down_gives_503_with_retry_after_fast_and_never_202(tmp_path, make_backend):
    from tests.conftest import route_file
    from tests.support.redisproc import RedisProcess
    r = RedisProcess(tmp_path / "redis").start()
    routes = tmp_path / "routes"
    routes.mkdir()
    backend = make_backend()
    route_file(routes, "down.example.com", [backend])
    s = Stack(r.url, routes, tmp_path / "logs")
    try:
        s.start_operator()
        s.start_app()
        assert send(s, "down.example.com", b"{}").status_code == 202
        r.kill()
        for _ in range(5):
            start = time.monotonic()
            resp = raw_send(s.url, "down.example.com", b"{}")
            assert resp.status_code == 503
            assert resp.headers["Retry-After"].isdigit()
            assert time.monotonic() - start < 2.0
        r.start()
        assert send(s, "down.example.com", b"{}").status_code == 202
    finally:
        s.stop()
        r.stop()


def test_app_answers_are_json_with_no_traceback(stack):
    resp = raw_send(stack.url, "nobody.example.com", b"x")
    assert json.loads(resp.content)["error"]
    assert b"Traceback" not in resp.content
