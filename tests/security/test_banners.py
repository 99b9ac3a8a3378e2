"""hookfan's own metrics and health servers name no software versions, on answers and on the
error pages of their HTTP servers."""

from __future__ import annotations

import pytest

from hookfan import metrics
from hookfan.devstack import free_port
from hookfan.health import HealthServer
from tests.security.rawhttp import exchange

REQUESTS = {"answer": b"GET /%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "error page": b"BREW /%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"}


def no_banner(port: int, path: str) -> None:
    for kind, data in REQUESTS.items():
        answer = exchange(port, data.replace(b"%s", path.encode()))
        assert b"Python" not in answer.head and b"WSGIServer" not in answer.head, (kind, answer)
        assert b"BaseHTTP" not in answer.head, (kind, answer)


def test_health_server_sends_no_version_banner():
    server = HealthServer(("127.0.0.1", free_port()), lambda: True).start()
    try:
        no_banner(server.port, "readyz")
    finally:
        server.stop()


@pytest.fixture
def registry():  # type: ignore[no-untyped-def]
    from prometheus_client import CollectorRegistry, Counter
    reg = CollectorRegistry()
    Counter("hookfan_banner_probe", "a sample", registry=reg).inc()
    return reg


def test_metrics_server_sends_no_version_banner(registry):
    port = free_port()
    stop = metrics.serve(("127.0.0.1", port), registry)
    try:
        no_banner(port, "metrics")
        assert b"hookfan_banner_probe_total 1.0" in exchange(
            port, REQUESTS["answer"].replace(b"%s", b"metrics")).body
    finally:
        stop()
