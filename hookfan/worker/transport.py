"""The HTTP client that sends a copy: exact request target, exact header lines, keep-alive.

A small HTTP/1.1 client on the raw socket (``ssl``-wrapped for ``https://``) rather than
requests, urllib3 or http.client, because a copy must be sent as received and cheaply:
requests keeps headers in a dict (repeats merged), urllib3 groups repeats by name and
re-encodes the request target (``%2e`` becomes ``%2E``, ``%zz`` becomes ``%25zz``), which
breaks a backend that signs the raw path; http.client sends exact copies but spent most of the
worker's CPU per copy (header lines built one by one, answers parsed by the ``email`` feed
parser through a file object per answer). Here the request is one byte string built at once,
and of the answer only what the delivery needs is parsed: the status line and Content-Length,
Transfer-Encoding, Connection, Keep-Alive and Retry-After. Nothing is added that the sender
did not send, except Content-Length, recomputed for the identical body.

``Transport.send`` promises:

* The request goes out as ``METHOD target HTTP/1.1``, then each given header line as
  ``Name: value`` in the given order, case and repeats (latin-1), then Content-Length when a
  body is given. A method, target, name or value that would change the request's framing
  (CR, LF, NUL; whitespace in the method or target; a name with ``:``) is refused before any
  connection is used, with the error http.client gave for it (``ValueError``, ``InvalidURL``
  for the target, ``UnicodeEncodeError``).
* The whole attempt (connect, TLS handshake, send, status line, headers, drained body) ends by
  ``timeout`` seconds after the call, or by ``deadline`` (a ``time.monotonic()`` value) if
  earlier. Past it the result is ``Sent(None, "Timeout")`` (``"ConnectTimeout"`` if not yet
  connected), never a success, and the connection is closed, not reused.
* Threads may call it at once. Idle keep-alive connections are pooled per base URL (at most
  ``MAX_IDLE``) across calls; one goes back only after a clean, fully read answer: a body
  framed by Content-Length or chunked of at most ``MAX_DRAIN`` bytes, no ``Connection:
  close``, HTTP/1.1 or HTTP/1.0 with keep-alive, nothing unasked after it. Any other answer
  still counts (its status is the result) but its connection is closed without reading the
  body. Interim 1xx answers (``100 Continue``) are skipped; HEAD, 204 and 304 have no body. A
  drained body that breaks off is an error (``IncompleteRead``), as with http.client.
* A copy whose *reused* connection turns out closed by the peer (broken pipe, reset or EOF
  before any byte of an answer) is sent once more on a fresh connection within the same
  deadline, with ``resent=True``: one attempt, not two. Nothing else is sent again.
* It never raises for network trouble; ``error`` is a class of error, never a message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import http.client
import itertools
import os
import re
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_DRAIN = 64 * 1024
"""A response body up to this size is read so the connection can be reused; larger ones close it."""
MAX_IDLE = 16
"""Idle keep-alive connections kept per base URL; one returned beyond this is closed."""

_MAX_HEAD = 64 * 1024
"""An answer's status line and headers (or a chunk-size line, or trailers) larger than this
are an error (``LineTooLong``): no backend answers a webhook with that."""
_ONE_SEND = 64 * 1024
"""A body up to this size goes out in one ``sendall`` with the head (copied once); a larger
one in a second ``sendall`` of its own."""

# How a keep-alive connection that the peer closed while it sat idle fails, before any byte of
# an answer (RemoteDisconnected, EOF without one, is a ConnectionResetError).
_STALE = (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError)

_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]").search  # http.client's rule: InvalidURL
_BAD_METHOD = re.compile(r"[\x00-\x20\x7f]").search
_GOOD_NAME = re.compile(rb"[^:\s\x00][^:\r\n\x00]*").fullmatch  # http.client's, and no NUL
_HEAD_END = re.compile(rb"\r?\n\r?\n").search
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}").fullmatch
_NO_BODY = frozenset((204, 304))

_good_names: set[str] = set()
"""Header names already found valid: a copy's names repeat from copy to copy."""
_good_methods: set[str] = set()


@dataclass(frozen=True)
class Sent:
    status: int | None
    error: str | None = None
    """A class of transport error (``ConnectionRefused``, ``Timeout``...), never a message."""
    retry_after: str | None = None
    resent: bool = False
    """The copy was sent again on a fresh connection because the reused one had been closed
    by the peer: still one attempt."""


class _Guard:
    """The watchdog's hold on one attempt's socket. The socket is closed only after the guard
    is disarmed, so its descriptor cannot have been reused for another socket meanwhile."""

    __slots__ = ("sock", "fired")

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket | None = sock
        self.fired = False


class _Watchdog:
    """One thread per process that shuts down the socket of an attempt past its deadline, so a
    blocked connect-handshake, send or recv returns at once. Arming is a lock and a heap push."""

    def __init__(self) -> None:
        self._reset()
        # The thread does not survive a fork (Celery prefork): start afresh in the child.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Guard]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float, sock: socket.socket) -> _Guard:
        guard = _Guard(sock)
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._seq), guard))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hookfan-deadline")
                self._thread.daemon = True
                self._thread.start()
            elif self._heap[0][2] is guard:
                self._cond.notify()
        return guard

    def disarm(self, guard: _Guard | None) -> bool:
        """Stop watching; True if the deadline already fired (the socket is shut down)."""
        if guard is None:
            return False
        with self._cond:
            guard.sock = None  # cancelled entries are popped lazily
            return guard.fired

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][0] <= now or self._heap[0][2].sock is None):
                    guard = heapq.heappop(self._heap)[2]
                    if guard.sock is not None:
                        guard.fired = True
                        # The plain socket call, also for an SSLSocket (whose own shutdown
                        # would drop its TLS state under the thread using it).
                        with contextlib.suppress(OSError):  # already shut by the peer
                            socket.socket.shutdown(guard.sock, socket.SHUT_RDWR)
                        guard.sock = None
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


_WATCHDOG = _Watchdog()


@dataclass(frozen=True)
class _Dest:
    """Where a base URL's copies go."""

    host: str
    port: int
    tls: bool


class _Link:
    """One connection and the bytes read from it but not yet parsed (one thread at a time)."""

    __slots__ = ("sock", "buf", "got")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.got = False
        """Some byte of an answer arrived in this exchange: the copy is not sent again."""

    def fill(self, end: float) -> None:
        """Read what the peer sent, waiting until ``end`` at most."""
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            if self.got:
                raise http.client.IncompleteRead(b"")
            raise http.client.RemoteDisconnected("closed without an answer")
        self.got = True
        self.buf += data

    def head(self, end: float) -> bytes:
        """An answer's status line and header lines, up to the blank line (taken out)."""
        buf, pos = self.buf, 0
        while (found := _HEAD_END(buf, pos)) is None:
            if len(buf) > _MAX_HEAD:
                raise http.client.LineTooLong("header")
            pos = max(0, len(buf) - 3)
            self.fill(end)
        if found.start() > _MAX_HEAD:
            raise http.client.LineTooLong("header")
        head = bytes(buf[:found.start()])
        del buf[:found.end()]
        return head

    def line(self, end: float) -> bytes:
        """One line of chunked framing, without its line end (taken out)."""
        buf, pos = self.buf, 0
        while (nl := buf.find(b"\n", pos)) < 0:
            if len(buf) > _MAX_HEAD:
                raise http.client.LineTooLong("chunk framing")
            pos = len(buf)
            self.fill(end)
        line = bytes(buf[:nl])
        del buf[:nl + 1]
        return line.rstrip(b"\r")

    def skip(self, n: int, end: float) -> None:
        """Read and drop ``n`` bytes of body."""
        buf = self.buf
        while len(buf) < n:
            n -= len(buf)
            buf.clear()
            self.fill(end)
        del buf[:n]

    def chunked(self, end: float) -> bool:
        """Drain a chunked body; False (stop reading, close) once it passes MAX_DRAIN."""
        total = 0
        while True:
            size = self.line(end).split(b";", 1)[0].strip(b" \t")
            if not _HEX(size):
                raise ValueError("chunk size")
            n = int(size, 16)
            if n == 0:
                break
            total += n
            if total > MAX_DRAIN:
                return False
            self.skip(n, end)
            if self.line(end):
                raise ValueError("chunk end")
        trailers = 0
        while line := self.line(end):  # trailer fields, then the blank line
            trailers += len(line)
            if trailers > _MAX_HEAD:
                raise http.client.LineTooLong("trailers")
        return True


def _request(method: str, target: str, lines: list[tuple[str, str]],
             body: bytes | None) -> bytes:
    """The request head, refusing what would not go out as given (http.client's errors)."""
    target = target or "/"
    if _BAD_TARGET(target):
        raise http.client.InvalidURL("control character or space in the target")
    if not target.isascii():
        target.encode("ascii")  # raises UnicodeEncodeError, as http.client did
    if method not in _good_methods:
        if not method or _BAD_METHOD(method):
            raise ValueError("invalid method")
        method.encode("ascii")
        _remember(_good_methods, method)
    parts = [f"{method} {target} HTTP/1.1\r\n"]
    for name, value in lines:
        if name not in _good_names:
            if not _GOOD_NAME(name.encode("ascii")):
                raise ValueError("invalid header name")
            _remember(_good_names, name)
        parts.append(f"{name}: {value}\r\n")
    if body is not None:
        parts.append(f"Content-Length: {len(body)}\r\n")
    parts.append("\r\n")
    head = "".join(parts).encode("latin-1")
    # Method, target and names are clean: a CR, LF or NUL beyond the line ends is in a value.
    if head.count(b"\n") != len(parts) or head.count(b"\r") != len(parts) or b"\0" in head:
        raise ValueError("invalid header value")
    return head


def _remember(good: set[str], name: str) -> None:
    if len(good) < 4096:
        good.add(name)


def _answer(link: _Link, end: float, head_only: bool) -> tuple[int, str | None, bool]:
    """Read an answer: its status, Retry-After, and whether the connection may be reused."""
    while True:
        head = link.head(end)
        nl = head.find(b"\n")
        words = (head if nl < 0 else head[:nl]).split(None, 2)
        if len(words) < 2 or not words[0].startswith(b"HTTP/"):
            raise http.client.BadStatusLine("status line")
        if not words[0].startswith(b"HTTP/1."):
            raise http.client.UnknownProtocol("version")
        if len(words[1]) != 3 or not words[1].isdigit() or words[1][0] == 0x30:
            raise http.client.BadStatusLine("status")
        status = int(words[1])
        if status >= 200 or status == 101:
            break  # else an interim answer (100 Continue, 103 Early Hints): the final follows
    http10 = words[0] == b"HTTP/1.0"
    close = keep_alive = chunked = False
    length: int | None = None
    bad_length = False
    retry_after: list[bytes] = []
    codings: list[bytes] = []
    if nl >= 0:
        for line in head[nl + 1:].split(b"\n"):
            name, sep, value = line.partition(b":")
            if not sep or line[:1] in (b" ", b"\t"):
                continue  # junk or a folded continuation: none of the fields read here
            name = name.strip().lower()
            if name == b"content-length":
                value = value.strip()
                if not value.isdigit() or (length is not None and int(value) != length):
                    bad_length = True
                else:
                    length = int(value)
            elif name == b"transfer-encoding":
                codings += [c.strip().lower() for c in value.split(b",") if c.strip()]
            elif name == b"connection":
                tokens = {t.strip().lower() for t in value.split(b",")}
                close = close or b"close" in tokens
                keep_alive = keep_alive or b"keep-alive" in tokens
            elif name == b"keep-alive":
                keep_alive = True
            elif name == b"retry-after":
                retry_after.append(value.strip())
    after = b", ".join(retry_after).decode("latin-1") if retry_after else None
    if close or (http10 and not keep_alive) or status == 101:
        return status, after, False
    if head_only or status in _NO_BODY:
        return status, after, not link.buf
    if codings:
        chunked = codings[-1] == b"chunked"
        if not chunked:
            return status, after, False  # the body ends when the connection does
        keep = link.chunked(end)
    elif bad_length or length is None or length > MAX_DRAIN:
        return status, after, False
    else:
        link.skip(length, end)
        keep = True
    return status, after, keep and not link.buf


class Transport:
    """Pools of idle keep-alive connections per backend base URL, shared by the threads of one
    process (one Transport per Celery pool process)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._idle: dict[str, list[_Link]] = {}
        self._dests: dict[str, _Dest] = {}
        self._tls: ssl.SSLContext | None = None

    def send(self, base_url: str, method: str, target: str, lines: list[tuple[str, str]],
             body: bytes | None, deadline: float | None = None) -> Sent:
        """Send one request and read the answer; never raises for network trouble."""
        end = time.monotonic() + self.timeout
        if deadline is not None:
            end = min(end, deadline)
            if end <= time.monotonic():  # do not spend a pooled connection on it
                return Sent(None, "ConnectTimeout")
        try:
            head = _request(method, target, lines, body)
        except (ValueError, http.client.HTTPException) as exc:
            return Sent(None, error_reason(exc, "send"))
        if body is not None and len(body) <= _ONE_SEND:
            head, body = head + body, None
        dest = self._dests.get(base_url) or self._dest(base_url)
        head_only = method == "HEAD"
        link = self._take(base_url)
        reused = link is not None
        sent, stale = self._once(base_url, dest, link, end, head, body, head_only)
        if reused and stale and time.monotonic() < end:
            sent, _ = self._once(base_url, dest, None, end, head, body, head_only)
            return dataclasses.replace(sent, resent=True)
        return sent

    def close(self) -> None:
        """Close the idle connections; one in use is pooled again when its send finishes."""
        with self._lock:
            links = [link for idle in self._idle.values() for link in idle]
            self._idle.clear()
        for link in links:
            link.sock.close()

    def _dest(self, base_url: str) -> _Dest:
        parts = urlsplit(base_url)
        tls = parts.scheme == "https"
        dest = _Dest(parts.hostname or "", parts.port or (443 if tls else 80), tls)
        self._dests[base_url] = dest
        return dest

    def _context(self) -> ssl.SSLContext:
        """The TLS settings http.client's HTTPSConnection used (verified, ALPN http/1.1), made
        once per Transport rather than per connection."""
        if self._tls is None:
            context = ssl._create_default_https_context()
            context.set_alpn_protocols(["http/1.1"])
            if context.post_handshake_auth is not None:
                context.post_handshake_auth = True
            self._tls = context
        return self._tls

    def _connect(self, dest: _Dest, end: float) -> tuple[_Link, _Guard]:
        """A new connection, watched from the end of the TCP connect (which its socket
        timeout bounds) so that the TLS handshake too ends by ``end``."""
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock = socket.create_connection((dest.host, dest.port), remaining)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if dest.tls:
                sock = self._context().wrap_socket(sock, server_hostname=dest.host,
                                                   do_handshake_on_connect=False)
        except BaseException:
            sock.close()
            raise
        return _Link(sock), _WATCHDOG.arm(end, sock)

    def _once(self, base_url: str, dest: _Dest, link: _Link | None, end: float, head: bytes,
              body: bytes | None, head_only: bool) -> tuple[Sent, bool]:
        """One exchange on one connection (a new one if ``link`` is None); the flag says the
        copy may be sent again."""
        phase, error, guard = "connect", None, None
        status, retry_after, keep = None, None, False
        try:
            if link is None:
                link, guard = self._connect(dest, end)
                if isinstance(link.sock, ssl.SSLSocket):
                    left = end - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    link.sock.settimeout(left)
                    link.sock.do_handshake()
            else:
                guard = _WATCHDOG.arm(end, link.sock)
            phase = "send"
            link.got = False
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError
            link.sock.settimeout(left)
            link.sock.sendall(head)
            if body is not None:
                link.sock.sendall(body)
            phase = "read"
            status, retry_after, keep = _answer(link, end, head_only)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            error = exc
        finally:
            # A deadline that passed makes the outcome a timeout even if the answer was read:
            # the watchdog may have cut the socket at any point of it.
            late = _WATCHDOG.disarm(guard) or time.monotonic() >= end
        if link is not None:
            if late or error is not None or not keep:
                link.sock.close()
            else:
                self._give(base_url, link)
        if late:
            return Sent(None, "ConnectTimeout" if phase == "connect" else "Timeout"), False
        if error is not None:
            stale = phase != "connect" and link is not None and not link.got \
                and isinstance(error, _STALE)
            return Sent(None, error_reason(error, phase)), stale
        return Sent(status, retry_after=retry_after), False

    def _take(self, base_url: str) -> _Link | None:
        while True:
            with self._lock:
                idle = self._idle.get(base_url)
                link = idle.pop() if idle else None  # the most recently used: least likely stale
            if link is None or not _dropped(link.sock):
                return link
            link.sock.close()

    def _give(self, base_url: str, link: _Link) -> None:
        with self._lock:
            idle = self._idle.setdefault(base_url, [])
            if len(idle) < MAX_IDLE:
                idle.append(link)
                return
        link.sock.close()


def _dropped(sock: socket.socket) -> bool:
    """An idle keep-alive socket that is readable has been closed by the peer (or sent
    something unasked): do not send a copy on it. (poll, not select: no FD_SETSIZE limit.)"""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def error_reason(exc: BaseException, phase: str) -> str:
    """A class of transport error for the record: never a message that could echo content."""
    if isinstance(exc, socket.gaierror):
        return "DNSFailure"
    if isinstance(exc, ConnectionRefusedError):
        return "ConnectionRefused"
    if isinstance(exc, TimeoutError):
        return "ConnectTimeout" if phase == "connect" else "Timeout"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "RemoteDisconnected"
    return type(exc).__name__
