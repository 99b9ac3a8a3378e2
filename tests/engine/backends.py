"""Backends for the engine tests that measure, at the backend, how many attempts it is
handling at each instant: a keep-alive HTTP server whose answer can be held back, and a
raw server that answers one byte every 0.8 s (the "slow drip" of issue 12)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hookfan.devstack import free_port
from tests.support.backends import read_request


@dataclass(frozen=True, eq=False)
class Arrival:
    """One request as it reached the backend."""

    delivery_id: str
    attempt: int
    at: float
    """``time.monotonic()`` when the request had been read in full."""


def peer_closed(sock: socket.socket, timeout: float) -> bool:
    """Wait up to ``timeout`` for the client to close its end (it sends nothing while it waits
    for an answer, so the socket turning readable means EOF or a reset)."""
    try:
        readable, _, _ = select.select([sock], [], [], timeout)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):  # reset, or already closed here
        return True


class Gauge:
    """Requests in progress right now (read in full, neither answered nor abandoned by their
    client), the most there ever were at once, and every arrival in order.

    A client that gives up on an attempt closes its connection before it starts the next one,
    but the thread watching the old connection may notice that close after the new request
    was counted. So each new request first sweeps the requests in progress for connections
    their client already closed: the count follows the order in which the client acted."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.now = 0
        self.peak = 0
        self.arrivals: list[Arrival] = []
        self._open: dict[Arrival, socket.socket] = {}

    def enter(self, delivery_id: str, attempt: int, sock: socket.socket) -> Arrival:
        arrival = Arrival(delivery_id, attempt, time.monotonic())
        with self.cond:
            for other, other_sock in list(self._open.items()):
                if peer_closed(other_sock, 0):
                    del self._open[other]
                    self.now -= 1
            self._open[arrival] = sock
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.arrivals.append(arrival)
            self.cond.notify_all()
        return arrival

    def leave(self, arrival: Arrival) -> None:
        with self.cond:
            if self._open.pop(arrival, None) is not None:
                self.now -= 1
            self.cond.notify_all()

    def wait(self, check: Callable[[Gauge], bool], timeout: float, what: str) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: check(self), timeout=timeout):
                raise AssertionError(f"timed out after {timeout}s waiting for {what} "
                                     f"({len(self.arrivals)} arrivals, {self.now} in progress)")

    def wait_arrivals(self, count: int, timeout: float = 30.0) -> list[Arrival]:
        self.wait(lambda g: len(g.arrivals) >= count, timeout, f"{count} arrivals")
        with self.cond:
            return list(self.arrivals)

    def ids(self) -> set[str]:
        with self.cond:
            return {a.delivery_id for a in self.arrivals}


Hold = Callable[[Arrival, socket.socket], None]
"""Runs between reading a request and answering it (the backend is 'working')."""


def sleep_for(seconds: float) -> Hold:
    return lambda _arrival, _sock: time.sleep(seconds)


class GaugedBackend:
    """A real HTTP/1.1 keep-alive backend on loopback that answers ``status`` (or what
    ``status(arrival)`` says) after ``hold``; the gauge counts a request from the moment it
    was read until just before its answer is written (or its client went away)."""

    def __init__(self, hold: Hold | None = None,
                 status: int | Callable[[Arrival], int] = 200) -> None:
        self.hold = hold
        self.status = status
        self.port = free_port()
        self.gauge = Gauge()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GaugedBackend:
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one_request(self) -> None:
                if read_request(self) is None:
                    return
                arrival = backend.gauge.enter(self.headers.get("X-Hookfan-Delivery", ""),
                                              int(self.headers.get("X-Hookfan-Attempt", 0)),
                                              self.connection)
                try:
                    if backend.hold is not None:
                        backend.hold(arrival, self.connection)
                finally:
                    backend.gauge.leave(arrival)
                status = backend.status
                self.send_response(status if isinstance(status, int) else status(arrival))
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.wfile.flush()

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True
            request_queue_size = 128

        self._server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


DRIP = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"


class SlowDrip:
    """Reads each request in full, then answers ``503`` one byte every ``pace`` seconds (a
    whole answer takes ~40 s): a per-socket-operation timeout never trips on it. The gauge
    counts a request until its client closes the connection."""

    def __init__(self, pace: float = 0.8) -> None:
        self.pace = pace
        self.gauge = Gauge()
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                fields = {k.strip().lower(): v.strip() for k, _, v in
                          (line.partition(b":") for line in head.split(b"\r\n")[1:])}
                length = int(fields.get(b"content-length", b"0"))
                while len(buf) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                buf = buf[length:]
                arrival = self.gauge.enter(fields.get(b"x-hookfan-delivery", b"").decode(),
                                           int(fields.get(b"x-hookfan-attempt", b"0")), conn)
                try:
                    for i in range(len(DRIP)):
                        if peer_closed(conn, 0 if i == 0 else self.pace):
                            return
                        conn.sendall(DRIP[i:i + 1])
                finally:
                    self.gauge.leave(arrival)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
