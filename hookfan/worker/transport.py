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
  framed by Content-Length or chunked of at most ``http1.MAX_DRAIN`` bytes, no ``Connection:
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
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from .capture import Whole, read_whole
from .http1 import Link, read_answer, request_head

MAX_IDLE = 16
"""Idle keep-alive connections kept per base URL; one returned beyond this is closed."""

_ONE_SEND = 64 * 1024
"""A body up to this size goes out in one ``sendall`` with the head (copied once); a larger
one in a second ``sendall`` of its own."""

# How a keep-alive connection that the peer closed while it sat idle fails, before any byte of
# an answer (RemoteDisconnected, EOF without one, is a ConnectionResetError).
_STALE = (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError)

@dataclass(frozen=True)
class Sent:
    status: int | None
    error: str | None = None
    """A class of transport error (``ConnectionRefused``, ``Timeout``...), never a message."""
    retry_after: str | None = None
    resent: bool = False
    """The copy was sent again on a fresh connection because the reused one had been closed
    by the peer: still one attempt."""
    whole: Whole | None = None
    """The answer's headers and body, when the send asked for them (``capture``)."""


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


class Transport:
    """Pools of idle keep-alive connections per backend base URL, shared by the threads of one
    process (one Transport per Celery pool process)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._idle: dict[str, list[Link]] = {}
        self._dests: dict[str, _Dest] = {}
        self._tls: ssl.SSLContext | None = None

    def send(self, base_url: str, method: str, target: str, lines: list[tuple[str, str]],
             body: bytes | None, deadline: float | None = None, capture: int = 0) -> Sent:
        """Send one request and read the answer; never raises for network trouble. With
        ``capture`` (a byte cap), the answer is read whole into :attr:`Sent.whole`."""
        end = time.monotonic() + self.timeout
        if deadline is not None:
            end = min(end, deadline)
            if end <= time.monotonic():  # do not spend a pooled connection on it
                return Sent(None, "ConnectTimeout")
        try:
            head = request_head(method, target, lines, body)
        except (ValueError, http.client.HTTPException) as exc:
            return Sent(None, error_reason(exc, "send"))
        if body is not None and len(body) <= _ONE_SEND:
            head, body = head + body, None
        dest = self._dests.get(base_url) or self._dest(base_url)
        head_only = method == "HEAD"
        link = self._take(base_url)
        reused = link is not None
        sent, stale = self._once(base_url, dest, link, end, head, body, head_only, capture)
        if reused and stale and time.monotonic() < end:
            sent, _ = self._once(base_url, dest, None, end, head, body, head_only, capture)
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

    def _connect(self, dest: _Dest, end: float) -> tuple[Link, _Guard]:
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
        return Link(sock), _WATCHDOG.arm(end, sock)

    def _once(self, base_url: str, dest: _Dest, link: Link | None, end: float, head: bytes,
              body: bytes | None, head_only: bool, capture: int = 0) -> tuple[Sent, bool]:
        """One exchange on one connection (a new one if ``link`` is None); the flag says the
        copy may be sent again."""
        phase, error, guard = "connect", None, None
        status, retry_after, keep, whole = None, None, False, None
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
            if capture:
                status, retry_after, keep, whole = read_whole(link, end, head_only, capture)
            else:
                status, retry_after, keep = read_answer(link, end, head_only)
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
        return Sent(status, retry_after=retry_after, whole=whole), False

    def _take(self, base_url: str) -> Link | None:
        while True:
            with self._lock:
                idle = self._idle.get(base_url)
                link = idle.pop() if idle else None  # the most recently used: least likely stale
            if link is None or not _dropped(link.sock):
                return link
            link.sock.close()

    def _give(self, base_url: str, link: Link) -> None:
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
