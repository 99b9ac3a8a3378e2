"""Real HTTP backends on loopback that record every copy they receive, byte for byte."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hookfan.devstack import free_port


def read_request(handler: BaseHTTPRequestHandler) -> bytes | None:
    """Read one request on a keep-alive connection: its body, or None (and the connection is
    to close) when the client sent nothing parsable."""
    handler.raw_requestline = handler.rfile.readline(65537)
    if not handler.raw_requestline or not handler.parse_request():
        handler.close_connection = True
        return None
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    @property
    def delivery_id(self) -> str | None:
        return self.header("X-Hookfan-Delivery")


Responder = Callable[[Received, int], tuple[int, dict[str, str]]]
"""(request, how many requests came before it) -> (status, response headers)."""


def always(status: int) -> Responder:
    return lambda _req, _n: (status, {})


def sequence(*statuses: int) -> Responder:
    """Answer with each status in turn, then keep answering with the last one."""
    return lambda _req, n: (statuses[min(n, len(statuses) - 1)], {})


@dataclass
class RecordingBackend:
    respond: Responder = field(default_factory=lambda: always(200))
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadingHTTPServer | None = None
    answer_after: float = 0.0
    """Seconds each answer is held back once the request was recorded (a slow backend).
    Held outside the lock, so held answers overlap and arrivals are recorded meanwhile."""
    held: Callable[[int], float] | None = None
    """Seconds the answer to the n-th request (from 0) is held back, instead of
    ``answer_after``: a backend slow only at first."""
    answer_body: bytes = b""
    """The body of every answer (its Content-Length set to match)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> RecordingBackend:
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one_request(self) -> None:
                body = read_request(self)
                if body is None:
                    return
                got = Received(self.command, self.path, list(self.headers.items()), body)
                with backend._cond:
                    n = len(backend.received)
                    status, headers = backend.respond(got, n)
                    backend.received.append(got)
                    backend._cond.notify_all()
                hold = backend.held(n) if backend.held is not None else backend.answer_after
                if hold:
                    time.sleep(hold)  # the backend's work: answering late
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(backend.answer_body)))
                self.end_headers()
                self.wfile.write(backend.answer_body)
                self.wfile.flush()

            def log_message(self, format: str, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int, timeout: float = 30.0,
                 pred: Callable[[list[Received]], bool] | None = None) -> list[Received]:
        """Block until ``count`` copies arrived (or ``pred`` holds); raise on timeout."""
        check = pred or (lambda got: len(got) >= count)
        with self._cond:
            if not self._cond.wait_for(lambda: check(self.received), timeout=timeout):
                raise AssertionError(f"backend :{self.port} got {len(self.received)} copies, "
                                     f"wanted {count} within {timeout}s")
            return list(self.received)

    def distinct(self) -> set[str]:
        with self._cond:
            return {r.delivery_id for r in self.received if r.delivery_id}


def port_is_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return False
    except OSError:
        return True
