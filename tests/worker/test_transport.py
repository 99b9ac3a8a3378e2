"""The transport against real local servers (raw sockets in threads): deadlines, exact bytes,
the keep-alive pool under threads, and the one re-send on a connection the peer had closed."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

import pytest

from hookfan.worker.transport import Sent, Transport

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Backend:
    """A TCP server on 127.0.0.1 running ``handle`` in a thread per accepted connection."""

    def __init__(self, handle: Callable[[Backend, socket.socket, int], None],
                 scheme: str = "http") -> None:
        self.handle = handle
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"{scheme}://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepts = 0
        self.requests: list[bytes] = []
        """Raw requests the 'application' took (and answered or began to answer)."""
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.accepts += 1
                number = self.accepts
            thread = threading.Thread(target=self._serve, args=(conn, number), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        # OSError: the client went away, expected in several tests.
        with conn, contextlib.suppress(OSError):
            self.handle(self, conn, number)

    def take(self, raw: bytes) -> None:
        with self.lock:
            self.requests.append(raw)

    def close(self) -> None:
        self.stop.set()
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        self.listener.close()
        for thread in self.threads:
            thread.join(5)


def read_request(f: BinaryIO) -> bytes | None:
    """The raw bytes of one request (head and Content-Length body); None at EOF."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline()
        if not line:
            return None
        head += line
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + f.read(length)


def answer_all(backend: Backend, conn: socket.socket, number: int, delay: float = 0.0) -> None:
    """A keep-alive backend: answers every request on the connection with 200."""
    f = conn.makefile("rb")
    while (raw := read_request(f)) is not None:
        backend.take(raw)
        if delay and backend.stop.wait(delay):
            return
        conn.sendall(OK)


@pytest.fixture
def serve() -> Iterator[Callable[..., Backend]]:
    backends: list[Backend] = []

    def start(handle: Callable[[Backend, socket.socket, int], None],
              scheme: str = "http") -> Backend:
        backends.append(Backend(handle, scheme))
        return backends[-1]

    yield start
    for backend in backends:
        backend.close()


@pytest.fixture
def transports() -> Iterator[Callable[[float], Transport]]:
    made: list[Transport] = []

    def make(timeout: float) -> Transport:
        made.append(Transport(timeout))
        return made[-1]

    yield make
    for transport in made:
        transport.close()


def get(transport: Transport, url: str, deadline: float | None = None) -> Sent:
    return transport.send(url, "GET", "/", [("Host", "backend")], None, deadline)


def test_a_dripping_answer_ends_at_the_deadline_and_the_connection_is_dropped(serve, transports):
    def drip(backend: Backend, conn: socket.socket, number: int) -> None:
        f = conn.makefile("rb")
        backend.take(read_request(f) or b"")
        if number > 1:
            conn.sendall(OK)
            return
        for byte in b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n":
            conn.sendall(bytes([byte]))  # each byte well within any per-recv timeout
            if backend.stop.wait(0.8):
                return

    backend = serve(drip)
    transport = transports(1.0)
    t0 = time.monotonic()
    sent = get(transport, backend.url)
    elapsed = time.monotonic() - t0
    assert sent == Sent(None, "Timeout")
    assert 0.9 < elapsed < 2.0
    # The timed-out connection is not reused: the next copy goes on a new one.
    assert get(transport, backend.url) == Sent(200)
    assert backend.accepts == 2


def test_a_backend_that_never_answers_times_out(serve, transports):
    def silent(backend: Backend, conn: socket.socket, number: int) -> None:
        backend.take(read_request(conn.makefile("rb")) or b"")
        backend.stop.wait()

    backend = serve(silent)
    t0 = time.monotonic()
    assert get(transports(1.0), backend.url) == Sent(None, "Timeout")
    assert time.monotonic() - t0 < 1.5
    # An earlier deadline wins over the timeout.
    t0 = time.monotonic()
    assert get(transports(30.0), backend.url, deadline=t0 + 0.5) == Sent(None, "Timeout")
    assert time.monotonic() - t0 < 1.0


def test_a_connect_that_does_not_complete_is_a_connect_timeout(transports):
    # A listen queue of one, already taken: the kernel drops the transport's SYN.
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener, \
            socket.create_connection(listener.getsockname()):
        t0 = time.monotonic()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        assert get(transports(0.5), url) == Sent(None, "ConnectTimeout")
        assert time.monotonic() - t0 < 1.0


def test_a_slow_connect_and_a_dripping_tls_handshake_end_at_the_deadline(transports):
    """The TCP connect takes about 1 s (the first SYN is dropped, the retransmit is taken),
    then the TLS handshake trickles: the two together must still end at the deadline."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    filler = socket.create_connection(listener.getsockname())
    stop, accepted = threading.Event(), []

    def server() -> None:
        with contextlib.suppress(OSError):
            stop.wait(0.2)
            listener.accept()[0].close()  # room in the queue for the retransmitted SYN
            conn, _ = listener.accept()
            accepted.append(time.monotonic())
            with conn:
                conn.recv(4096)  # the ClientHello
                conn.sendall(b"\x16\x03\x03\x40\x00")  # a 16 KiB handshake record, trickled
                while not stop.wait(0.5):
                    conn.sendall(b"\x00")

    thread = threading.Thread(target=server)
    thread.start()
    try:
        t0 = time.monotonic()
        url = f"https://127.0.0.1:{listener.getsockname()[1]}"
        assert get(transports(1.6), url) == Sent(None, "ConnectTimeout")
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        filler.close()
        thread.join(5)
    assert accepted and 0.5 < accepted[0] - t0 < 1.4, "the connect was not slowed as planned"
    assert elapsed < 2.0


def test_the_request_goes_out_byte_for_byte(serve, transports):
    backend = serve(answer_all)
    transport = transports(5.0)
    lines = [("Host", "example.test"), ("X-Repeat", "one"), ("x-repeat", "two"),
             ("X-Sig", "a  b"), ("X-Repeat", "three")]
    body = b"\x00\xff{\"a\": 1}\r\n"
    target = "/hook/%2e%2E/x?a=%zz&a=%2e"
    assert transport.send(backend.url, "POST", target, lines, body) == Sent(200)
    assert transport.send(backend.url, "GET", "/%2e", [("Host", "h")], None) == Sent(200)
    assert backend.requests == [
        b"POST /hook/%2e%2E/x?a=%zz&a=%2e HTTP/1.1\r\nHost: example.test\r\nX-Repeat: one\r\n"
        b"x-repeat: two\r\nX-Sig: a  b\r\nX-Repeat: three\r\nContent-Length: 12\r\n\r\n" + body,
        b"GET /%2e HTTP/1.1\r\nHost: h\r\n\r\n",
    ]


def test_sequential_sends_share_one_keep_alive_connection(serve, transports):
    backend = serve(answer_all)
    transport = transports(5.0)
    assert get(transport, backend.url) == Sent(200)
    assert get(transport, backend.url) == Sent(200)
    assert backend.accepts == 1 and len(backend.requests) == 2


def test_concurrent_sends_share_a_pool(serve, transports):
    backend = serve(lambda b, conn, n: answer_all(b, conn, n, delay=0.2))
    transport = transports(5.0)
    start = threading.Barrier(4, timeout=10)  # a sender that dies must not hang the others
    results: list[Sent] = []

    def sender() -> None:
        for _ in range(3):
            start.wait()  # each round, all four take from the pool at once
            sent = get(transport, backend.url)
            with backend.lock:
                results.append(sent)

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == [Sent(200)] * 12
    assert 1 <= backend.accepts <= 4  # rounds after the first took distinct pooled ones
    accepts = backend.accepts
    assert get(transport, backend.url) == Sent(200)  # a later batch reuses a pooled connection
    assert backend.accepts == accepts


def close_when_asked_again(backend: Backend, conn: socket.socket, number: int) -> None:
    """Answers one request without ``Connection: close``, then drops the connection the moment
    the next request's first bytes arrive, without answering: the close races the next send
    and the idle check (nothing was readable while idle) cannot see it."""
    f = conn.makefile("rb")
    raw = read_request(f)
    if raw is None:
        return
    backend.take(raw)
    conn.sendall(OK)
    conn.recv(1)


def test_a_reused_connection_closed_by_the_peer_is_resent_once(serve, transports):
    backend = serve(close_when_asked_again)
    transport = transports(5.0)
    assert get(transport, backend.url) == Sent(200)
    second = get(transport, backend.url)
    assert second == Sent(200, resent=True)
    assert len(backend.requests) == 2  # exactly one request per send reached the application
    assert backend.accepts == 2


def test_answer_bytes_on_a_reused_connection_are_not_resent(serve, transports):
    def half_answer(backend: Backend, conn: socket.socket, number: int) -> None:
        f = conn.makefile("rb")
        while (raw := read_request(f)) is not None:
            backend.take(raw)
            if len(backend.requests) > 1:
                conn.sendall(b"HTTP/1.1 20")  # then gone: the backend had begun to answer
                return
            conn.sendall(OK)

    backend = serve(half_answer)
    transport = transports(5.0)
    assert get(transport, backend.url) == Sent(200)
    second = get(transport, backend.url)
    assert second.status is None and second.error is not None and not second.resent
    assert len(backend.requests) == 2


def test_a_failure_on_a_fresh_connection_is_not_resent(serve, transports):
    def hang_up(backend: Backend, conn: socket.socket, number: int) -> None:
        backend.take(read_request(conn.makefile("rb")) or b"")

    backend = serve(hang_up)
    assert get(transports(5.0), backend.url) == Sent(None, "RemoteDisconnected")
    assert len(backend.requests) == 1

    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    assert get(transports(5.0), closed) == Sent(None, "ConnectionRefused", resent=False)
