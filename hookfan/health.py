"""A tiny health probe server any hookfan process can run: ``/healthz`` and ``/readyz``.

``/healthz`` answers 200 while the process serves at all (liveness). ``/readyz`` answers 200
when ``ready()`` returns true, else 503 (readiness). Anything else is 404. Runs in a daemon
thread; :meth:`HealthServer.stop` closes the socket.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis

from hookfan import forkgate
from hookfan.config import listening

BANNER = "hookfan"
"""The ``Server`` header of hookfan's own HTTP servers: no software versions."""


class HealthServer:
    def __init__(self, addr: tuple[str, int], ready: Callable[[], bool],
                 alive: Callable[[], bool] = lambda: True) -> None:
        checks = {"/healthz": alive, "/readyz": ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                check = checks.get(self.path.split("?", 1)[0])
                ok = check is not None and check()
                code = 404 if check is None else 200 if ok else 503
                body = b"ok\n" if ok else b"not ready\n" if check else b"not found\n"
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # probes every few seconds would drown the logs

            def version_string(self) -> str:
                return BANNER  # not http.server's and Python's versions

        with listening("health-addr", addr):
            self._server = ThreadingHTTPServer(addr, Handler)
        self._server.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name="health").start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class RedisCheck:
    """A readiness check against Redis: true when ``probe(client)`` answered truthily within
    the client's socket timeout. The answer is cached for ``ttl`` seconds so a burst of probes
    costs one round trip; with the store's 1.5 s timeouts, readiness turns false within about
    3 s of Redis going away and true at the first probe after it returns."""

    def __init__(self, client: redis.Redis, probe: Callable[[Any], object] | None = None,
                 ttl: float = 1.0) -> None:
        self.client = client
        self.probe = probe or (lambda r: r.ping())
        self.ttl = ttl
        self._at = -ttl
        self._ok = False
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            if time.monotonic() - self._at < self.ttl:
                return self._ok
            try:
                with forkgate.held():
                    self._ok = bool(self.probe(self.client))
            except redis.RedisError:
                self._ok = False
            self._at = time.monotonic()
            return self._ok


def check_can_listen(flag: str, addr: tuple[str, int] | None) -> None:
    """Fail early, naming ``--flag``, when ``addr`` cannot be bound (for servers that are
    only started later, inside a framework that would report the failure as a traceback)."""
    if addr is None:
        return
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s, listening(flag, addr):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)


def all_of(*checks: Callable[[], bool]) -> Callable[[], bool]:
    """A check that holds when every one of ``checks`` does (evaluated in order, lazily)."""
    return lambda: all(c() for c in checks)
