"""The whole-answer read for copies whose sender awaits the answer (``Transport.send`` with
``capture``), against real local servers: headers in order, bodies by each framing, the cap,
and when the connection may be reused."""

from __future__ import annotations

import pytest

from hookfan.worker.transport import Sent, Transport
from tests.worker import test_transport
from tests.worker.test_transport import Serve, Transports, answer_each

serve = test_transport.serve
transports = test_transport.transports

CAP = 16


def whole(transport: Transport, url: str) -> Sent:
    return transport.send(url, "POST", "/", [("Host", "backend")], b"{}", capture=CAP)


@pytest.mark.parametrize(("answer", "body", "reused"), [
    (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-A: 1\r\nX-A: 2\r\n"
     b"Content-Length: 7\r\n\r\n{\"a\":1}", b'{"a":1}', True),
    (b"HTTP/1.1 201 Created\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n", b"abcde", True),
    (b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n", b"", True),
    (b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 16\r\n\r\n" + b"b" * 16, b"b" * 16, True),
])
def test_the_whole_answer_is_read_and_the_connection_kept(
        serve: Serve, transports: Transports, answer: bytes, body: bytes,
        reused: bool) -> None:
    backend = serve(answer_each(answer))
    transport = transports(2.0)
    for _ in range(2):
        sent = whole(transport, backend.url)
        assert sent.status == int(answer[9:12]) and sent.whole is not None
        assert sent.whole.body == body
        assert [(n, v) for n, v in sent.whole.headers if n == "X-A"][:1] == [("X-A", "1")]
    assert backend.accepts == (1 if reused else 2)


def test_headers_come_in_order_with_repeats(serve: Serve, transports: Transports
                                            ) -> None:
    backend = serve(answer_each(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\n"
                                b"x-a: 2\r\nContent-Length: 0\r\n\r\n"))
    sent = whole(transports(2.0), backend.url)
    assert sent.whole is not None
    assert sent.whole.headers == [("Content-Type", "text/plain"), ("X-A", "1"), ("x-a", "2"),
                                  ("Content-Length", "0")]


def test_a_body_ending_with_the_connection_is_read_to_the_end(
        serve: Serve, transports: Transports) -> None:
    backend = serve(answer_each(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil close", close=True))
    sent = whole(transports(2.0), backend.url)
    assert sent.whole is not None and sent.whole.body == b"until close"


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n" + b"b" * 17,
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n" + b"c" * 17 + b"\r\n0\r\n\r\n",
])
def test_a_body_over_the_cap_is_not_kept_and_the_connection_is_closed(
        serve: Serve, transports: Transports, answer: bytes) -> None:
    backend = serve(answer_each(answer))
    transport = transports(2.0)
    for _ in range(2):
        sent = whole(transport, backend.url)
        assert sent.status == 200 and sent.whole is not None and sent.whole.body is None
    assert backend.accepts == 2


def test_a_body_over_the_cap_ending_with_the_connection_is_not_kept(
        serve: Serve, transports: Transports) -> None:
    backend = serve(answer_each(b"HTTP/1.1 200 OK\r\n\r\n" + b"u" * 40, close=True))
    sent = whole(transports(2.0), backend.url)
    assert sent.whole is not None and sent.whole.body is None


def test_without_capture_nothing_of_the_answer_is_kept(serve: Serve,
                                                      transports: Transports
                                                      ) -> None:
    backend = serve(answer_each(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    assert transports(2.0).send(backend.url, "GET", "/", [], None) == Sent(200)
