"""Both backends receive exact copies: method, raw path and query, body bytes, headers."""

from __future__ import annotations

import os

import pytest

from tests.stackfixtures import send

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "content-length"}
ADDED = {"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-hookfan-delivery",
         "x-hookfan-attempt", "x-hookfan-request", "host"}


@pytest.mark.parametrize("size", [0, 1, 1000, 65_537, 1_000_000])
def test_random_binary_bodies_arrive_byte_identical(stack, routed, make_backend, size):
    a, b = make_backend(), make_backend()
    host = f"bin{size}.example.com"
    routed(host, [a, b])
    body = os.urandom(size).replace(b"\0", b"\0", 1) + (b"\0\x00\xff" if size else b"")
    resp = send(stack, host, body)
    assert resp.status_code == 202, resp.text
    assert resp.json()["deliveries"] == 2
    for backend in (a, b):
        (got,) = backend.wait_for(1)
        assert got.body == body


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_method_path_and_query_are_unchanged(stack, routed, make_backend, method):
    a, b = make_backend(), make_backend()
    host = f"m-{method.lower()}.example.com"
    routed(host, [a, b])
    path = "/hooks//deep/%2Fenc%20oded/?b=2&a=1&a=%20&empty="
    body = b"" if method == "GET" else b'{"k":"v"}'
    assert send(stack, host, body, method=method, path=path).status_code == 202
    for backend in (a, b):
        (got,) = backend.wait_for(1)
        assert (got.method, got.path, got.body) == (method, path, body)


def test_options_asterisk_is_forwarded_as_options_asterisk(stack, routed, make_backend):
    a = make_backend()
    routed("asterisk.example.com", [a])
    assert send(stack, "asterisk.example.com", b"", method="OPTIONS", path="*").status_code == 202
    (got,) = a.wait_for(1)
    assert (got.method, got.path) == ("OPTIONS", "*")


def test_headers_arrive_with_repeats_in_order(stack, routed, make_backend):
    a, b = make_backend(), make_backend()
    host = "headers.example.com"
    routed(host, [a, b])
    sent = [("X-Hub-Signature-256", "sha256=abc"), ("X-Multi", "one"), ("Content-Type",
            "application/json"), ("X-Multi", "two"), ("User-Agent", "GitHub-Hookshot/1"),
            ("X-Multi", "three"), ("Connection", "close")]
    resp = send(stack, host, b'{"x":1}', headers=sent)
    assert resp.status_code == 202
    rid = resp.headers["X-Hookfan-Request"]
    for _i, backend in enumerate((a, b)):
        (got,) = backend.wait_for(1)
        kept = [(n.lower(), v) for n, v in got.headers if n.lower() not in ADDED | HOP]
        expected = [(n.lower(), v) for n, v in sent if n.lower() not in HOP]
        assert kept == expected
        assert got.header("Host") == host
        assert got.header("X-Hookfan-Request") == rid
        assert got.header("X-Hookfan-Attempt") == "1"
        assert got.header("X-Forwarded-For") == "127.0.0.1"
        assert got.header("X-Hookfan-Delivery", ).startswith(rid)
    assert a.received[0].delivery_id != b.received[0].delivery_id
