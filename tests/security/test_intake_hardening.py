"""The intake under gunicorn against hostile requests: bounded headers, no request smuggling,
no tunnels or echoes, raw paths kept, and no way for a request to choose where copies go."""

from __future__ import annotations

import pytest

from tests.security.rawbackend import RawLineBackend
from tests.security.rawhttp import exchange, exchange_routed, request
from tests.stackfixtures import send
from tests.support.backends import RecordingBackend
from tests.support.procs import wait_until

HOST = "hardened.example.com"


@pytest.fixture(scope="module")
def target(stack, tmp_path_factory):  # type: ignore[no-untyped-def]
    """One backend routed for HOST, live in every gunicorn worker."""
    from tests.conftest import route_file
    backend = RecordingBackend().start()
    route_file(stack.routes_dir, HOST, [backend], name="hardened")
    for _ in range(4):
        assert send(stack, HOST, b"warm-up").status_code == 202
    backend.wait_for(4)
    yield backend
    backend.stop()


def sentinel(stack, backend: RecordingBackend) -> list:  # type: ignore[no-untyped-def]
    """Send one good request and wait for it: whatever the backend got before or with it is
    everything the earlier requests produced (all answered before this one was sent)."""
    before = len(backend.received)
    resp = send(stack, HOST, b"sentinel", path="/sentinel")
    assert resp.status_code == 202
    got = backend.wait_for(0, pred=lambda rs: any(r.path == "/sentinel" for r in rs[before:]))
    new = got[before:]
    backend.received[:] = []
    return new


def app_alive(stack) -> bool:  # type: ignore[no-untyped-def]
    return stack.procs["app"].proc.poll() is None


def test_more_header_lines_than_the_limit_get_431_and_the_app_serves_on(stack, target):
    extra = [(f"X-Filler-{i}", "v") for i in range(250)]
    answer = exchange(stack.port, request("POST", "/", HOST, extra, b"x"))
    assert answer.status == 431
    assert [r.path for r in sentinel(stack, target)] == ["/sentinel"]
    assert app_alive(stack)


@pytest.mark.parametrize("size", [16_385, 100_000])
def test_a_header_line_over_the_size_limit_gets_431(stack, target, size):
    answer = exchange(stack.port, request("POST", "/", HOST, [("X-Big", "a" * size)], b"x"))
    assert answer.status == 431
    assert [r.path for r in sentinel(stack, target)] == ["/sentinel"]


def test_an_overlong_request_line_gets_414(stack, target):
    answer = exchange(stack.port, request("POST", "/" + "a" * 9000, HOST, body=b"x"))
    assert answer.status == 414
    assert app_alive(stack)


SMUGGLED = (b"POST /smuggled HTTP/1.1\r\nHost: " + HOST.encode()
            + b"\r\nContent-Length: 3\r\n\r\nbad")


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data) if data else b"0\r\n\r\n"


SMUGGLING = {
    "CL.TE": request("POST", "/", HOST, [("Content-Length", "4"),
                                          ("Transfer-Encoding", "chunked")],
                     b"0\r\n\r\n" + SMUGGLED, framing=False),
    "TE.CL": request("POST", "/", HOST, [("Transfer-Encoding", "chunked"),
                                          ("Content-Length", "60")],
                     b"0\r\n\r\n" + SMUGGLED, framing=False),
    "two-different-content-lengths": request(
        "POST", "/", HOST, [("Content-Length", "3"), ("Content-Length", "80")],
        b"abc" + SMUGGLED, framing=False),
    "two-transfer-encodings": request(
        "POST", "/", HOST, [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "identity")],
        chunked(b"abc") + SMUGGLED, framing=False),
    "obfuscated-transfer-encoding": request(
        "POST", "/", HOST, [("Transfer-Encoding", "xchunked")],
        chunked(b"abc") + SMUGGLED, framing=False),
    "gzip-then-chunked": request(
        "POST", "/", HOST, [("Transfer-Encoding", "gzip, chunked")],
        chunked(b"abc"), framing=False),
    "signed-content-length": request("POST", "/", HOST, [("Content-Length", "+3")],
                                     b"abc", framing=False),
    "negative-content-length": request("POST", "/", HOST, [("Content-Length", "-1")],
                                       b"abc", framing=False),
    "space-before-colon": b"POST / HTTP/1.1\r\nHost: " + HOST.encode()
                          + b"\r\nContent-Length : 3\r\n\r\nabc",
    "obsolete-line-folding": b"POST / HTTP/1.1\r\nHost: " + HOST.encode()
                             + b"\r\nX-A: 1\r\n Content-Length: 3\r\nContent-Length: 0\r\n\r\nabc",
    "bare-LF": b"POST / HTTP/1.1\nHost: " + HOST.encode() + b"\nContent-Length: 0\n\n",
    "bad-chunk-size": request("POST", "/", HOST, [("Transfer-Encoding", "chunked")],
                              b"zz\r\nabc\r\n0\r\n\r\n", framing=False),
    "chunk-without-terminator": request("POST", "/", HOST, [("Transfer-Encoding", "chunked")],
                                        b"3\r\nabcXY0\r\n\r\n", framing=False),
    "two-host-headers": request("POST", "/", HOST, [("Host", "other.example.com")], b"x"),
}


@pytest.mark.parametrize("case", SMUGGLING)
def test_ambiguous_or_malformed_framing_is_refused_and_nothing_is_smuggled(stack, target, case):
    answer = exchange(stack.port, SMUGGLING[case])
    assert answer.status in (400, 501), answer.head
    assert answer.header("X-Hookfan-Request") is None
    assert [r.path for r in sentinel(stack, target)] == ["/sentinel"]
    assert app_alive(stack)


@pytest.mark.parametrize(("method", "target_form"), [
    ("CONNECT", f"{HOST}:443"), ("CONNECT", "/"), ("TRACE", "/"), ("TRACE", "/x?y=1")])
def test_connect_and_trace_are_refused_with_405(stack, target, method, target_form):
    answer = exchange(stack.port, request(method, target_form, HOST, body=b""))
    assert answer.status == 405
    assert "CONNECT" not in (answer.header("Allow") or "CONNECT")
    assert [r.method for r in sentinel(stack, target)] == ["POST"]


RAW_PATHS = ["/a/../b", "/../../etc/passwd", "/a//b///c", "//double/leading", "/a/./b/.",
             "/%2E%2E/%2E%2E/x", "/a%2Fb%2Fc", "/caf%C3%A9?q=%2F..%00&q=2",
             "/p;params?a=1&a=2&b=%20+x", "/?", "/%2E%2E%2F%2E%2E%2Fetc", "/x?y=/../"]
MIXED_CASE_OR_INVALID_ENCODINGS = ["/%2e%2e/x", "/caf%c3%a9", "/%00/%ff/%zz/%", "/100%"]


@pytest.fixture(scope="module")
def raw_target(stack):  # type: ignore[no-untyped-def]
    """A route to a backend that records request lines as they arrived on the wire."""
    from tests.conftest import route_file
    backend = RawLineBackend().start()
    route_file(stack.routes_dir, "rawpath.example.com", [backend],  # type: ignore[list-item]
               name="rawpath")
    assert send(stack, "rawpath.example.com", b"warm", path="/warm").status_code == 202
    backend.targets(1)
    yield backend
    backend.stop()


def deliver_paths(stack, backend: RawLineBackend, paths: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    start = len(backend.lines)
    for path in paths:
        answer = exchange_routed(stack.port, request("POST", path, "rawpath.example.com",
                                                     body=b"p"))
        assert answer.status == 202, (path, answer.head)
    return sorted(backend.targets(start + len(paths))[start:])


def test_raw_paths_arrive_exactly_as_sent(stack, raw_target):
    """Dot segments, repeated slashes, encoded slashes and dots, parameters and queries: not
    normalised, not decoded, not re-encoded."""
    assert deliver_paths(stack, raw_target, RAW_PATHS) == sorted(RAW_PATHS)


def test_lowercase_and_invalid_percent_escapes_arrive_exactly_as_sent(stack, raw_target):
    assert deliver_paths(stack, raw_target, MIXED_CASE_OR_INVALID_ENCODINGS) == sorted(
        MIXED_CASE_OR_INVALID_ENCODINGS)


def test_an_absolute_form_target_cannot_choose_the_backend(stack, routed, make_backend):
    """The request names another routed backend's address (and another routed host) in an
    absolute-form target: the copy still goes only where the route table sends HOST's copies,
    reduced to origin-form."""
    mine, other = make_backend(), make_backend()
    routed("abs-mine.example.com", [mine])
    routed("abs-other.example.com", [other])
    assert send(stack, "abs-mine.example.com", b"warm").status_code == 202
    assert send(stack, "abs-other.example.com", b"warm").status_code == 202
    mine.wait_for(1), other.wait_for(1)
    for url in (f"{other.url}/steal?x=1", "http://abs-other.example.com/steal?x=1"):
        answer = exchange_routed(stack.port, request("POST", url, "abs-mine.example.com",
                                                     body=b"abs"))
        assert answer.status == 202, answer.head
    got = mine.wait_for(3)
    assert [r.path for r in got[1:]] == ["/steal?x=1", "/steal?x=1"]
    assert send(stack, "abs-other.example.com", b"last").status_code == 202
    assert [r.body for r in other.wait_for(2)] == [b"warm", b"last"]


def test_forwarding_headers_do_not_choose_the_route(stack, routed, make_backend):
    mine, other = make_backend(), make_backend()
    routed("fwd-mine.example.com", [mine])
    routed("fwd-other.example.com", [other])
    assert send(stack, "fwd-mine.example.com", b"warm").status_code == 202
    assert send(stack, "fwd-other.example.com", b"warm").status_code == 202
    tricks = [("X-Forwarded-Host", "fwd-other.example.com"),
              ("Forwarded", "host=fwd-other.example.com;proto=http"),
              ("X-Original-Host", "fwd-other.example.com"), ("X-Host", "fwd-other.example.com"),
              ("X-Original-URL", f"{other.url}/x"), ("X-Rewrite-URL", f"{other.url}/x")]
    unrouted = exchange(stack.port, request("POST", "/", "nobody.example.com", tricks, b"t"))
    assert unrouted.status == 503
    answer = exchange_routed(stack.port, request("POST", "/t", "fwd-mine.example.com", tricks,
                                                 b"t"))
    assert answer.status == 202
    got = mine.wait_for(2)
    assert got[1].path == "/t" and got[1].header("X-Forwarded-Host") == "fwd-other.example.com"
    assert send(stack, "fwd-other.example.com", b"last").status_code == 202
    assert [r.body for r in other.wait_for(2)] == [b"warm", b"last"]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_never_followed_and_the_copy_is_dead_lettered(stack, routed, make_backend,
                                                                    stack_store, status):
    elsewhere = make_backend()
    redirector = make_backend(respond=lambda _r, _n: (status, {
        "Location": f"{elsewhere.url}/stolen"}))
    host = f"redirect-{status}.example.com"
    routed(host, [redirector])
    resp = send(stack, host, b"redirected", headers=[("X-Secret", "s")])
    assert resp.status_code == 202
    did = f"{resp.json()['id']}-0"
    wait_until(lambda: did in stack_store.dead_ids(), what="the redirected copy dead-lettered")
    info = stack_store.dead_letter_info(did)
    assert info is not None and f"HTTP {status}" in info[0].last_error
    assert len(redirector.received) == 1 and elsewhere.received == []
