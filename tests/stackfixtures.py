"""A running hookfan stack (operator on files, gunicorn app, Celery worker) for a test module."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from hookfan.store import Store, connect
from tests.conftest import route_file
from tests.support.backends import RecordingBackend
from tests.support.procs import Stack
from tests.support.redisproc import RedisProcess


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    proc = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def stack(module_redis: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(module_redis.url, tmp_path_factory.mktemp("routes"), tmp_path_factory.mktemp("logs"))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def stack_store(module_redis: RedisProcess) -> Store:
    return Store(connect(module_redis.url))


@pytest.fixture
def routed(stack: Stack) -> Callable[[str, list[RecordingBackend]], None]:
    """Route ``host`` to ``targets`` by writing a route file the operator picks up."""
    def add(host: str, targets: list[RecordingBackend]) -> None:
        route_file(stack.routes_dir, host, targets, name=host.replace(".", "-"))
    return add


def send(stack: Stack, host: str, body: bytes = b"{}", method: str = "POST", path: str = "/",
         headers: list[tuple[str, str]] | None = None, timeout: float = 10.0,
         **kw: Any) -> requests.Response:
    """Send like a webhook provider does: retry on 503 (route not live yet) until accepted."""
    deadline = time.monotonic() + timeout
    while True:
        resp = raw_send(stack.url, host, body, method, path, headers, **kw)
        if resp.status_code != 503 or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def raw_send(url: str, host: str, body: bytes = b"{}", method: str = "POST", path: str = "/",
             headers: list[tuple[str, str]] | None = None, chunked: bool = False,
             timeout: float = 30.0) -> requests.Response:
    """One request with exactly these header lines (repeats kept, nothing added but Host and
    the body's framing), as a provider would send it."""
    import http.client
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        for n, v in headers or []:
            conn.putheader(n, v)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for i in range(0, len(body), 65536):
                piece = body[i:i + 65536]
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.send(b"0\r\n\r\n")
        else:
            if body or method not in ("GET", "HEAD", "DELETE"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
        r = conn.getresponse()
        resp = requests.Response()
        resp.status_code = r.status
        resp._content = r.read()
        resp.headers.update(dict(r.getheaders()))
        return resp
    finally:
        conn.close()
