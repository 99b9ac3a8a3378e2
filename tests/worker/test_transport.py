"""The transport against real local servers (raw sockets in threads): deadlines, exact bytes,
the keep-alive pool under threads, and the one re-send on a connection the peer had closed."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

import pytest

from hookfan.worker.http1 import MAX_DRAIN
from hookfan.worker.transport import _WATCHDOG, Sent, Transport
from tests.security.certs import PKI, make_pki

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


Serve = Callable[..., Backend]
Transports = Callable[[float], Transport]


@pytest.fixture
def serve() -> Iterator[Serve]:
    backends: list[Backend] = []

    def start(handle: Callable[[Backend, socket.socket, int], None],
              scheme: str = "http") -> Backend:
        backends.append(Backend(handle, scheme))
        return backends[-1]

    yield start
    for backend in backends:
        backend.close()


@pytest.fixture
def transports() -> Iterator[Transports]:
    made: list[Transport] = []

    def make(timeout: float) -> Transport:
        made.append(Transport(timeout))
        return made[-1]

    yield make
    for transport in made:
        transport.close()


def get(transport: Transport, url: str, deadline: float | None = None) -> Sent:
    return transport.send(url, "GET", "/", [("Host", "backend")], None, deadline)


def test_a_dripping_answer_ends_at_the_deadline_and_the_connection_is_dropped(
        serve: Serve, transports: Transports) -> None:
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


def test_a_backend_that_never_answers_times_out(serve: Serve, transports: Transports) -> None:
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


def test_a_connect_that_does_not_complete_is_a_connect_timeout(transports: Transports) -> None:
    # A listen queue of one, already taken: the kernel drops the transport's SYN.
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener, \
            socket.create_connection(listener.getsockname()):
        t0 = time.monotonic()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        assert get(transports(0.5), url) == Sent(None, "ConnectTimeout")
        assert time.monotonic() - t0 < 1.0


def test_a_slow_connect_and_a_dripping_tls_handshake_end_at_the_deadline(
        transports: Transports) -> None:
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


def test_the_request_goes_out_byte_for_byte(serve: Serve, transports: Transports) -> None:
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


def test_sequential_sends_share_one_keep_alive_connection(serve: Serve,
                                                          transports: Transports) -> None:
    backend = serve(answer_all)
    transport = transports(5.0)
    assert get(transport, backend.url) == Sent(200)
    assert get(transport, backend.url) == Sent(200)
    assert backend.accepts == 1 and len(backend.requests) == 2


def test_concurrent_sends_share_a_pool(serve: Serve, transports: Transports) -> None:
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


def test_a_reused_connection_closed_by_the_peer_is_resent_once(serve: Serve,
                                                               transports: Transports) -> None:
    backend = serve(close_when_asked_again)
    transport = transports(5.0)
    assert get(transport, backend.url) == Sent(200)
    second = get(transport, backend.url)
    assert second == Sent(200, resent=True)
    assert len(backend.requests) == 2  # exactly one request per send reached the application
    assert backend.accepts == 2


def test_answer_bytes_on_a_reused_connection_are_not_resent(serve: Serve,
                                                            transports: Transports) -> None:
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


def test_a_failure_on_a_fresh_connection_is_not_resent(serve: Serve,
                                                       transports: Transports) -> None:
    def hang_up(backend: Backend, conn: socket.socket, number: int) -> None:
        backend.take(read_request(conn.makefile("rb")) or b"")

    backend = serve(hang_up)
    assert get(transports(5.0), backend.url) == Sent(None, "RemoteDisconnected")
    assert len(backend.requests) == 1

    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    assert get(transports(5.0), closed) == Sent(None, "ConnectionRefused", resent=False)


# The hand-written HTTP/1.1 client: how answers are framed decides whether the connection is
# reused, and a request that would not go out as given is refused before any connection.

def answer_each(response: bytes | Callable[[int], bytes], close: bool = False,
                ) -> Callable[[Backend, socket.socket, int], None]:
    """A backend answering every request on a connection with ``response`` (or
    ``response(request number on the connection)``), keeping the connection open unless
    ``close``: a client that wrongly reuses it gets no answer and times out."""
    def handle(backend: Backend, conn: socket.socket, number: int) -> None:
        f = conn.makefile("rb")
        n = 0
        while (raw := read_request(f)) is not None:
            backend.take(raw)
            n += 1
            conn.sendall(response(n) if callable(response) else response)
            if close:
                return
        backend.stop.wait()
    return handle


def test_a_chunked_answer_is_drained_and_its_connection_reused(serve: Serve,
                                                               transports: Transports) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\n\r\n"
               b"5;ext=1\r\nhello\r\n1A\r\n" + b"x" * 26 + b"\r\n0\r\nX-Trailer: t\r\n\r\n")
    backend = serve(answer_each(chunked))
    transport = transports(2.0)
    assert get(transport, backend.url) == Sent(200, retry_after="7")
    assert get(transport, backend.url) == Sent(200, retry_after="7")
    assert backend.accepts == 1 and len(backend.requests) == 2


def test_a_body_up_to_max_drain_is_drained_a_larger_one_closes_the_connection(
        serve: Serve, transports: Transports) -> None:
    def sized(n: int) -> bytes:  # the first answer on a connection is at the limit
        size = MAX_DRAIN if n == 1 else MAX_DRAIN + 1
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"b" * size

    backend = serve(answer_each(sized))
    transport = transports(2.0)
    assert [get(transport, backend.url) for _ in range(3)] == [Sent(200)] * 3
    # Each connection carried one answer at MAX_DRAIN (reused) and one past it (closed).
    assert backend.accepts == 2 and len(backend.requests) == 3


def test_a_chunked_body_past_max_drain_closes_the_connection(serve: Serve,
                                                             transports: Transports) -> None:
    size = b"%X" % (MAX_DRAIN // 2 + 1)
    half = size + b"\r\n" + b"c" * (MAX_DRAIN // 2 + 1) + b"\r\n"
    backend = serve(answer_each(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                + half + half + b"0\r\n\r\n"))
    transport = transports(2.0)
    assert get(transport, backend.url) == Sent(200)
    assert get(transport, backend.url) == Sent(200)
    assert backend.accepts == 2


@pytest.mark.parametrize(("answer", "reused"), [
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
    (b"HTTP/1.1 200 OK\r\nCONNECTION: Close\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.1 200 OK\r\nConnection: te, close\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nuntil the connection closes", False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nuntil the connection closes", False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", False),
    (b"HTTP/1.1 200 OK\r\ncontent-length:   2 \r\n\r\nok", True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"  # and an answer nobody asked for
     b"HTTP/1.1 500 Unasked\r\nContent-Length: 0\r\n\r\n", False),
])
def test_only_an_answer_whose_end_is_known_leaves_the_connection_reusable(serve: Serve,
                                                                          transports: Transports,
                                                                          answer: bytes,
                                                                          reused: bool) -> None:
    backend = serve(answer_each(answer))
    transport = transports(2.0)
    assert get(transport, backend.url) == Sent(int(answer[9:12]))
    assert get(transport, backend.url) == Sent(int(answer[9:12]))
    assert backend.accepts == (1 if reused else 2)


def test_a_head_answer_has_no_body_whatever_its_content_length(serve: Serve,
                                                               transports: Transports) -> None:
    backend = serve(answer_each(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"))
    transport = transports(2.0)
    for _ in range(2):
        assert transport.send(backend.url, "HEAD", "/", [("Host", "h")], None) == Sent(200)
    assert backend.accepts == 1


def test_interim_answers_are_skipped(serve: Serve, transports: Transports) -> None:
    backend = serve(answer_each(b"HTTP/1.1 100 Continue\r\n\r\n"
                                b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
                                b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"))
    transport = transports(2.0)
    assert get(transport, backend.url) == Sent(201)
    assert get(transport, backend.url) == Sent(201)  # nothing of the first was left unread
    assert backend.accepts == 1


@pytest.mark.parametrize(("answer", "error"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "IncompleteRead"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "IncompleteRead"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "ValueError"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\nok\r\n0\r\n\r\n",
     "ValueError"),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", "LineTooLong"),
    (b"ICY 200 OK\r\n\r\n", "BadStatusLine"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "BadStatusLine"),
    (b"HTTP/2 200\r\n\r\n", "UnknownProtocol"),
])
def test_a_broken_answer_is_an_error(serve: Serve, transports: Transports, answer: bytes,
                                     error: str) -> None:
    backend = serve(answer_each(answer, close=True))
    assert get(transports(2.0), backend.url) == Sent(None, error)


@pytest.mark.parametrize(("target", "lines", "error"), [
    ("/", [("X-A", "v\r\nX-Injected: 1")], "ValueError"),
    ("/", [("X-A", "v\nX-Injected: 1")], "ValueError"),
    ("/", [("X-A", "v\r")], "ValueError"),
    ("/", [("X-A", "v\x00")], "ValueError"),
    ("/", [("X-A\r\nX-Injected", "1")], "ValueError"),
    ("/", [("X-A: x", "1")], "ValueError"),
    ("/", [(" X-A", "1")], "ValueError"),
    ("/", [("", "1")], "ValueError"),
    ("/", [("X-\u0100", "1")], "UnicodeEncodeError"),
    ("/", [("X-A", "\u0100")], "UnicodeEncodeError"),
    ("/a b", [], "InvalidURL"),
    ("/a\r\nX-Injected: 1", [], "InvalidURL"),
    ("/a\x00", [], "InvalidURL"),
])
def test_a_request_that_would_not_go_out_as_given_is_refused_unsent(serve: Serve,
                                                                    transports: Transports,
                                                                    target: str,
                                                                    lines: list[tuple[str, str]],
                                                                    error: str) -> None:
    backend = serve(answer_all)
    transport = transports(2.0)
    assert transport.send(backend.url, "POST", target, [("Host", "h"), *lines], b"x") \
        == Sent(None, error)
    for method in ("GET / HTTP/1.1\r\n", "GE T", ""):
        assert transport.send(backend.url, method, "/", [], None) == Sent(None, "ValueError")
    # Nothing reached the backend: the next copy is the first request on the first connection.
    assert get(transport, backend.url) == Sent(200)
    assert backend.accepts == 1 and backend.requests == [b"GET / HTTP/1.1\r\nHost: backend\r\n\r\n"]


def test_a_large_body_goes_out_whole(serve: Serve, transports: Transports) -> None:
    backend = serve(answer_all)
    body = bytes(range(256)) * 4096  # 1 MiB: sent apart from the head
    assert transports(5.0).send(backend.url, "PUT", "/big", [("Host", "h")], body) == Sent(200)
    assert backend.requests == [b"PUT /big HTTP/1.1\r\nHost: h\r\nContent-Length: 1048576\r\n\r\n"
                                + body]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_tls_backends_are_verified_and_kept_alive(serve: Serve, transports: Transports, pki: PKI,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pki.server_cert, pki.server_key)

    def tls(backend: Backend, conn: socket.socket, number: int) -> None:
        with server.wrap_socket(conn, server_side=True) as wrapped:
            answer_all(backend, wrapped, number)

    backend = serve(tls, scheme="https")
    # The hook http.client used for its default context (PEP 476): trust the test CA only.
    monkeypatch.setattr(ssl, "_create_default_https_context",
                        lambda: ssl.create_default_context(cafile=str(pki.ca)))
    transport = transports(5.0)
    assert transport.send(backend.url, "POST", "/t", [("Host", "h")], b"{}") == Sent(200)
    assert get(transport, backend.url) == Sent(200)
    assert backend.accepts == 1
    assert backend.requests == [b"POST /t HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}",
                                b"GET / HTTP/1.1\r\nHost: backend\r\n\r\n"]

    monkeypatch.setattr(ssl, "_create_default_https_context",
                        lambda: ssl.create_default_context(cafile=str(pki.other_ca)))
    assert get(transports(5.0), backend.url) == Sent(None, "SSLCertVerificationError")


def test_a_reset_after_part_of_an_answer_is_not_resent(serve: Serve,
                                                       transports: Transports) -> None:
    def reset_midway(backend: Backend, conn: socket.socket, number: int) -> None:
        f = conn.makefile("rb")
        while (raw := read_request(f)) is not None:
            backend.take(raw)
            if len(backend.requests) == 1:
                conn.sendall(OK)
                continue
            conn.sendall(b"HTTP/1.1 20")  # read by the transport before the reset comes
            if backend.stop.wait(0.3):
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return  # closed with a reset

    backend = serve(reset_midway)
    transport = transports(5.0)
    assert get(transport, backend.url) == Sent(200)
    assert get(transport, backend.url) == Sent(None, "ConnectionResetError")
    assert len(backend.requests) == 2


def test_an_idle_connection_the_peer_closed_is_not_used(serve: Serve,
                                                        transports: Transports) -> None:
    backend = serve(answer_each(OK, close=True))  # answers, then closes the idle connection
    transport = transports(5.0)
    assert get(transport, backend.url) == Sent(200)
    time.sleep(0.2)  # the close has arrived before the next copy
    assert get(transport, backend.url) == Sent(200)  # on a new connection, not a resend
    assert backend.accepts == 2 and len(backend.requests) == 2


def test_the_watchdog_shuts_a_blocked_socket_down_at_its_deadline() -> None:
    """The deadline's second line: socket timeouts alone bound every blocking call here, so
    the watchdog is tested on its own, on a recv that no timeout would end in time."""
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(5.0)
        t0 = time.monotonic()
        guard = _WATCHDOG.arm(t0 + 0.3, a)
        assert a.recv(1) == b""  # shut down, not timed out
        assert 0.25 < time.monotonic() - t0 < 1.5
        assert _WATCHDOG.disarm(guard) is True
        # Disarmed in time, it leaves the socket alone.
        c, d = socket.socketpair()
        with c, d:
            guard = _WATCHDOG.arm(time.monotonic() + 0.2, c)
            assert _WATCHDOG.disarm(guard) is False
            time.sleep(0.4)
            d.sendall(b"x")
            assert c.recv(1) == b"x"


def test_socket_timeouts_alone_end_an_attempt_at_its_deadline(
        serve: Serve, transports: Transports, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline's first line: each blocking call's timeout is the time left."""
    def slow(backend: Backend, conn: socket.socket, number: int) -> None:
        f = conn.makefile("rb")
        backend.take(read_request(f) or b"")
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        backend.stop.wait(3.0)  # then closes: an unbounded recv would end in an EOF

    monkeypatch.setattr(_WATCHDOG, "arm", lambda deadline, sock: None)
    backend = serve(slow)
    t0 = time.monotonic()
    assert get(transports(30.0), backend.url, deadline=t0 + 0.5) == Sent(None, "Timeout")
    assert time.monotonic() - t0 < 1.0
