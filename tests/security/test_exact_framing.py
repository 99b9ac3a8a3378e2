"""Exact framing against a real gunicorn intake: a request is stored whole or not at all, hosts
are what DNS allows, header names are kept, header bytes are bounded, and nothing a sender wrote
comes back in an error page or reaches the logs."""

from __future__ import annotations

import socket
import types

import pytest
import redis

from hookfan.devstack import free_port
from tests.conftest import route_file
from tests.security.rawhttp import exchange, exchange_routed, request
from tests.stackfixtures import send
from tests.support.procs import wait_until

HELD = "held.example.com"
"""Routed to a closed port: whatever the intake stores stays in Redis, retrying."""
SECRET = "s3cr3t-value-7f1c"


@pytest.fixture(scope="module")
def held(stack):  # type: ignore[no-untyped-def]
    """A route whose copies can never be delivered, live in every gunicorn worker; returns a
    function counting the requests stored in Redis."""
    route_file(stack.routes_dir, HELD, [types.SimpleNamespace(port=free_port())],  # type: ignore[list-item]
               name="held")
    for _ in range(4):
        assert send(stack, HELD, b"warm-up").status_code == 202
    r = redis.Redis.from_url(stack.redis_url)
    return lambda: sum(1 for _ in r.scan_iter("hookfan:req:*", count=1000))


def cut_short(port: int, head: bytes, sent: bytes, half_close: bool) -> bytes:
    """Send ``head`` and part of the body, then half-close (or close); what came back."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(head + sent)
        if not half_close:
            return b""
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out
    except ConnectionResetError:
        return b""
    finally:
        s.close()


HEAD = (f"POST /cut HTTP/1.1\r\nHost: {HELD}\r\nX-GitHub-Delivery: d-1\r\n"
        "Content-Length: 100\r\n\r\n").encode()


def answered(stack, status: int) -> int:  # type: ignore[no-untyped-def]
    """How many answers with ``status`` the app has logged."""
    return stack.procs["app"].log().count(f'"status": {status}')


@pytest.mark.parametrize("half_close", [True, False], ids=["half-close", "close"])
def test_cut_short_body_is_never_stored(stack, held, half_close):
    before, refused = held(), answered(stack, 400)
    answer = cut_short(stack.port, HEAD, b"twelve bytes", half_close)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    wait_until(lambda: answered(stack, 400) > refused, what="the cut-short request answered")
    assert held() == before


def test_cut_short_chunked_body_is_never_stored(stack, held):
    before = held()
    head = f"POST /cut HTTP/1.1\r\nHost: {HELD}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    answer = cut_short(stack.port, head, b"c\r\ntwelve bytes\r\n", half_close=True)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    assert held() == before


def test_request_without_host_gets_400(stack, held):
    before = held()
    answer = exchange(stack.port, request("POST", "/", None, body=b"x"))
    assert answer.status == 400
    assert held() == before


@pytest.mark.parametrize("host", [f"{HELD}..", f"{HELD}...", f"{HELD}:65536",
                                  f"{HELD}:99999", f"{HELD}\t:443", "held\t.example.com",
                                  f"{HELD}:", f"{HELD}:+80", f".{HELD}"])
def test_hosts_dns_would_refuse_get_400(stack, held, host):
    before = held()
    answer = exchange(stack.port, request("POST", "/", host, body=b"x"))
    assert answer.status == 400, answer.head
    assert held() == before


def test_one_trailing_dot_and_a_port_still_route(stack, held):
    for host in (f"{HELD}.", f"{HELD.upper()}.:8080", f"{HELD}:65535"):
        assert exchange_routed(stack.port, request("POST", "/", host, body=b"x")).status == 202


def test_headers_with_underscores_arrive_exactly(stack, routed, make_backend):
    backend = make_backend()
    routed("underscore.example.com", [backend])
    headers = [("X_Custom_Header", "one"), ("X-Custom-Header", "two"), ("X_Custom_Header", "3")]
    assert send(stack, "underscore.example.com", b"u", headers=headers).status_code == 202
    got = backend.wait_for(1)[0]
    assert [(n, v) for n, v in got.headers if "custom" in n.lower()] == [
        ("X_custom_header", "one"), ("X-Custom-Header", "two"), ("X_custom_header", "3")]


def test_header_bytes_over_the_limit_get_431_and_nothing_is_stored(stack, held):
    before = held()
    big = [(f"X-Filler-{i}", "a" * 8000) for i in range(9)]  # 72 KB, each line under 16 KiB
    answer = exchange(stack.port, request("POST", "/", HELD, big, b"x"))
    assert answer.status == 431
    assert held() == before
    fits = [(f"X-Filler-{i}", "a" * 8000) for i in range(7)]  # 56 KB
    assert exchange(stack.port, request("POST", "/", HELD, fits, b"x")).status == 202


PARSE_ERRORS = {
    "transfer-coding": (request("POST", f"/p?token={SECRET}", HELD,
                                [("Transfer-Encoding", SECRET)], b"", framing=False), 501),
    "expectation": (request("POST", f"/p?token={SECRET}", HELD, [("Expect", SECRET)], b"x"), 417),
    "header-name": (request("POST", f"/p?token={SECRET}", HELD, [(f"X-{SECRET}\x01", "v")],
                            b"x"), 400),
    "header-value": (request("POST", f"/p?token={SECRET}", HELD, [("X-A", f"{SECRET}\x01")],
                             b"x"), 400),
    "request-line": (f"POST /p?token={SECRET} HTTP/9.{SECRET}\r\nHost: {HELD}\r\n\r\n".encode(),
                     400),
}


@pytest.mark.parametrize("case", PARSE_ERRORS)
def test_parse_errors_never_echo_or_log_what_was_sent(stack, held, case):
    data, status = PARSE_ERRORS[case]
    answer = exchange(stack.port, data)
    assert answer.status == status
    assert SECRET.encode() not in answer.head + answer.body
    assert send(stack, HELD, b"sentinel").status_code == 202  # logged after the refusal
    assert SECRET not in stack.procs["app"].log()


@pytest.fixture(scope="module")
def deduping(module_redis, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A stack that de-duplicates on X-GitHub-Delivery."""
    from tests.support.procs import Stack
    s = Stack(module_redis.url, tmp_path_factory.mktemp("routes"),
              tmp_path_factory.mktemp("logs"), app_args=["--dedupe-headers", "X-GitHub-Delivery"])
    s.start()
    yield s
    s.stop()


def test_cut_short_body_cannot_pre_claim_a_provider_delivery_id(deduping, make_backend):
    backend = make_backend()
    route_file(deduping.routes_dir, "dedupe-cut.example.com", [backend], name="dedupe-cut")
    # 503 (nothing stored) until the operator's next poll publishes the new file.
    wait_until(lambda: send(deduping, "dedupe-cut.example.com", b"warm").status_code == 202,
               what="the new route live")
    backend.wait_for(1)
    head = (b"POST /cut HTTP/1.1\r\nHost: dedupe-cut.example.com\r\n"
            b"X-GitHub-Delivery: pre-claimed\r\nContent-Length: 100\r\n\r\n")
    cut_short(deduping.port, head, b"twelve bytes", half_close=True)
    whole = b"w" * 100
    resp = send(deduping, "dedupe-cut.example.com", whole,
                headers=[("X-GitHub-Delivery", "pre-claimed")])
    assert resp.status_code == 202
    assert [r.body for r in backend.wait_for(2)] == [b"warm", whole]
