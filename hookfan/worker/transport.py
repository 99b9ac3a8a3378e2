"""The HTTP client that sends a copy: exact request target, exact header lines, keep-alive.

Built on http.client rather than requests or urllib3, because a copy must be sent as received:
requests keeps headers in a dict (repeats merged), urllib3 groups repeats by name and re-encodes
the request target (``%2e`` becomes ``%2E``, ``%zz`` becomes ``%25zz``), which breaks a backend
that signs the raw path. Nothing here is added that the sender did not send, except
Content-Length, recomputed for the identical body.

``Transport.send`` promises:

* The whole attempt (connect, TLS handshake, send, status line, headers, drained body) ends by
  ``timeout`` seconds after the call, or by ``deadline`` (a ``time.monotonic()`` value) if
  earlier. Past it the result is ``Sent(None, "Timeout")`` (``"ConnectTimeout"`` if not yet
  connected), never a success, and the connection is closed, not reused.
* Threads may call it at once. Idle keep-alive connections are pooled per base URL (at most
  ``MAX_IDLE``) across calls; one goes back only after a clean, fully read answer.
* A copy whose *reused* connection turns out closed by the peer (broken pipe, reset or EOF
  before any status line) is sent once more on a fresh connection within the same deadline,
  with ``resent=True``: one attempt, not two. Nothing else is sent again.
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

MAX_DRAIN = 64 * 1024
"""A response body up to this size is read so the connection can be reused; larger ones close it."""
MAX_IDLE = 16
"""Idle keep-alive connections kept per base URL; one returned beyond this is closed."""

# How a keep-alive connection that the peer closed while it sat idle fails, before a status line
# (RemoteDisconnected, EOF without one, is a ConnectionResetError).
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


class _Guard:
    """The watchdog's hold on one attempt's socket: a dup of its descriptor, because TLS
    wrapping detaches the original socket object and http.client may close it on error."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket | None = socket.fromfd(sock.fileno(), sock.family, sock.type)
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
            sock, guard.sock = guard.sock, None  # cancelled entries are popped lazily
            fired = guard.fired
        if sock is not None:
            sock.close()
        return fired

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][0] <= now or self._heap[0][2].sock is None):
                    guard = heapq.heappop(self._heap)[2]
                    if guard.sock is not None:
                        guard.fired = True
                        with contextlib.suppress(OSError):  # already shut by the peer
                            guard.sock.shutdown(socket.SHUT_RDWR)
                        guard.sock.close()
                        guard.sock = None
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


_WATCHDOG = _Watchdog()


class _Link:
    """One connection and the watchdog guard of the attempt using it (one thread at a time)."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else \
            http.client.HTTPConnection
        self.conn = cls(parts.hostname or "", parts.port)
        self.end = 0.0
        self.guard: _Guard | None = None
        # http.client opens its TCP socket through this hook. Arming there holds the TLS
        # handshake to the deadline too: its socket timeout would count afresh after connect.
        self.conn._create_connection = self._open  # type: ignore[attr-defined]

    def _open(self, address: tuple[str, int], timeout: float,
              source_address: tuple[str, int] | None = None) -> socket.socket:
        sock = socket.create_connection(address, timeout, source_address)
        self.guard = _WATCHDOG.arm(self.end, sock)
        return sock


class Transport:
    """Pools of idle keep-alive connections per backend base URL, shared by the threads of one
    process (one Transport per Celery pool process)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._idle: dict[str, list[_Link]] = {}

    def send(self, base_url: str, method: str, target: str, lines: list[tuple[str, str]],
             body: bytes | None, deadline: float | None = None) -> Sent:
        """Send one request and read the answer; never raises for network trouble."""
        end = time.monotonic() + self.timeout
        if deadline is not None:
            end = min(end, deadline)
            if end <= time.monotonic():  # do not spend a pooled connection on it
                return Sent(None, "ConnectTimeout")
        link = self._take(base_url)
        reused = link is not None
        sent, stale = self._once(base_url, link or _Link(base_url), end, method, target, lines,
                                 body)
        if reused and stale and time.monotonic() < end:
            sent, _ = self._once(base_url, _Link(base_url), end, method, target, lines, body)
            return dataclasses.replace(sent, resent=True)
        return sent

    def close(self) -> None:
        """Close the idle connections; one in use is pooled again when its send finishes."""
        with self._lock:
            links = [link for idle in self._idle.values() for link in idle]
            self._idle.clear()
        for link in links:
            link.conn.close()

    def _once(self, base_url: str, link: _Link, end: float, method: str, target: str,
              lines: list[tuple[str, str]], body: bytes | None) -> tuple[Sent, bool]:
        """One exchange on one connection; the flag says the copy may be sent again."""
        conn, phase, error = link.conn, "connect", None
        status, retry_after, keep = None, None, False
        link.end, link.guard = end, None
        try:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if conn.sock is None:
                conn.timeout = remaining  # bounds the TCP connect, before the guard exists
                conn.connect()
            else:
                conn.sock.settimeout(remaining)
                link.guard = _WATCHDOG.arm(end, conn.sock)
            phase = "send"
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in lines:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            phase = "read"
            resp = conn.getresponse()
            phase = "drain"  # a status line arrived: from here on nothing is sent again
            status, retry_after = resp.status, resp.getheader("Retry-After")
            keep = resp.length is not None and resp.length <= MAX_DRAIN and not resp.will_close
            resp.read() if keep else resp.close()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            error = exc
        finally:
            # A deadline that passed makes the outcome a timeout even if the answer was read:
            # the watchdog may have cut the socket at any point of it.
            late = _WATCHDOG.disarm(link.guard) or time.monotonic() >= end
        if late or error is not None or not keep or conn.sock is None:
            conn.close()
        else:
            self._give(base_url, link)
        if late:
            return Sent(None, "ConnectTimeout" if phase == "connect" else "Timeout"), False
        if error is not None:
            stale = phase in ("send", "read") and isinstance(error, _STALE)
            return Sent(None, error_reason(error, phase)), stale
        return Sent(status, retry_after=retry_after), False

    def _take(self, base_url: str) -> _Link | None:
        while True:
            with self._lock:
                idle = self._idle.get(base_url)
                link = idle.pop() if idle else None  # the most recently used: least likely stale
            if link is None or not _dropped(link.conn.sock):
                return link
            link.conn.close()

    def _give(self, base_url: str, link: _Link) -> None:
        with self._lock:
            idle = self._idle.setdefault(base_url, [])
            if len(idle) < MAX_IDLE:
                idle.append(link)
                return
        link.conn.close()


def _dropped(sock: socket.socket) -> bool:
    """An idle keep-alive socket that is readable has been closed by the peer (or sent
    something unasked): do not send a copy on it."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


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
