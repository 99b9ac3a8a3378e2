"""Headers a backend can trust, through a real gunicorn intake, worker and backend: hookfan's
own headers and the forwarding headers cannot be forged by a sender, and a sender's
``Connection`` header cannot strip what a signature check needs."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

import pytest

from tests.conftest import route_file
from tests.stackfixtures import send
from tests.support.backends import Received, RecordingBackend
from tests.support.procs import Stack

FORGED = "forged-by-the-sender"


def values(got: Received, name: str) -> list[str]:
    return [v for n, v in got.headers if n.lower() == name.lower()]


def delivered(stack: Stack, backend: RecordingBackend, host: str, headers: list[tuple[str, str]],
              body: bytes = b"{}") -> tuple[str, Received]:
    route_file(stack.routes_dir, host, [backend], name=host.replace(".", "-"))
    before = len(backend.received)
    resp = send(stack, host, body, headers=headers)
    assert resp.status_code == 202
    return resp.json()["id"], backend.wait_for(before + 1)[before]


def test_sender_cannot_forge_hookfan_headers(stack, make_backend):
    backend = make_backend()
    forged = [("X-Hookfan-Delivery", FORGED), ("X-Hookfan-Request", FORGED),
              ("X-Hookfan-Attempt", "99"), ("X_Hookfan_Delivery", FORGED),
              ("x-hookfan-anything", FORGED)]
    request_id, got = delivered(stack, backend, "forge-ids.example.com", forged)
    assert values(got, "X-Hookfan-Delivery") == [f"{request_id}-0"]
    assert values(got, "X-Hookfan-Request") == [request_id]
    assert values(got, "X-Hookfan-Attempt") == ["1"]
    assert all(FORGED not in v for _, v in got.headers), got.headers
    assert not [n for n, _ in got.headers if n.lower().startswith("x_hookfan")]


@pytest.fixture(scope="module")
def untrusting(module_redis, tmp_path_factory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    """A stack that trusts no proxy the tests can be: the sender is 127.0.0.1."""
    s = Stack(module_redis.url, tmp_path_factory.mktemp("routes"),
              tmp_path_factory.mktemp("logs"), app_args=["--trusted-proxies", "10.0.0.0/8"])
    s.start()
    yield s
    s.stop()


SPOOFED = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Host", "evil.example.com"),
           ("X-Forwarded-Proto", "https"), ("X_Forwarded_Host", "evil.example.com"),
           ("X_Forwarded_For", "198.51.100.1")]


def test_untrusted_sender_cannot_set_forwarded_host_or_proto(untrusting, make_backend):
    backend = make_backend()
    _, got = delivered(untrusting, backend, "spoof.example.com", SPOOFED)
    assert values(got, "X-Forwarded-Host") == ["spoof.example.com"]
    assert values(got, "X-Forwarded-Proto") == ["http"]
    assert values(got, "X-Forwarded-For") == ["203.0.113.7, 127.0.0.1"]
    assert not [n for n, _ in got.headers if n.lower().startswith("x_forwarded")]


def test_a_trusted_proxy_keeps_its_forwarded_headers(stack, make_backend):
    """127.0.0.1 is in the default --trusted-proxies (private and loopback ranges)."""
    backend = make_backend()
    _, got = delivered(stack, backend, "proxied.example.com", SPOOFED[:3])
    assert values(got, "X-Forwarded-Host") == ["evil.example.com"]
    assert values(got, "X-Forwarded-Proto") == ["https"]
    assert values(got, "X-Forwarded-For") == ["203.0.113.7, 127.0.0.1"]


def test_connection_cannot_strip_host_signature_or_content_type(stack, make_backend):
    backend = make_backend()
    body = b'{"action":"opened"}'
    signature = "sha256=" + hmac.new(b"key", body, hashlib.sha256).hexdigest()
    headers = [("Connection", "Host, X-Hub-Signature-256, Content-Type, Date, X-Private"),
               ("X-Hub-Signature-256", signature), ("Content-Type", "application/json"),
               ("Date", "Mon, 30 Nov 2026 12:00:00 GMT"), ("X-Private", "hop")]
    _, got = delivered(stack, backend, "connection.example.com", headers, body)
    assert values(got, "Host") == ["connection.example.com"]
    assert values(got, "X-Hub-Signature-256") == [signature]
    assert values(got, "Content-Type") == ["application/json"]
    assert values(got, "Date") == ["Mon, 30 Nov 2026 12:00:00 GMT"]
    assert values(got, "X-Private") == [] and values(got, "Connection") == []
    assert hmac.compare_digest(
        signature, "sha256=" + hmac.new(b"key", got.body, hashlib.sha256).hexdigest())
