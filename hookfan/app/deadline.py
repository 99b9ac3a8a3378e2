"""Whole-request deadlines for the intake's client sockets.

``--proxy-read-timeout`` bounds a request from the moment its connection is handed to a
request thread (its first byte is there, or a new connection was accepted) to the last byte of
its body, not each read: a sender that trickles a byte just inside a per-read timeout would
hold a thread for as long as it likes. Bytes already received are always read, even past the
deadline, so a whole request that waited in the queue behind slow ones is still served.
"""

from __future__ import annotations

import socket
import time


class RequestTimeout(Exception):  # noqa: N818 - named after the status it gets
    """The request's deadline passed before its last byte came. Not an OSError: gunicorn
    logs those with a traceback; this one reaches the worker's error handler (408)."""


class DeadlineSocket(socket.socket):
    """A client socket whose reads end at the current request's deadline and whose writes
    wait at most ``write_timeout``. gunicorn's threaded worker switches a connection to
    blocking (``setblocking(True)``, which clears a timeout) each time a thread takes it up."""

    read_timeout: float = 10.0
    write_timeout: float = 10.0
    deadline: float | None = None
    """Monotonic time the request being read must be whole by; None between requests."""
    expired = False
    """A read of this connection hit its deadline: it must not serve another request."""

    @classmethod
    def adopt(cls, sock: socket.socket, read_timeout: float,
              write_timeout: float) -> DeadlineSocket:
        new = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        new.read_timeout, new.write_timeout = read_timeout, write_timeout
        return new

    def start(self) -> None:
        """The next request's clock starts now, unless one is already running."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.read_timeout

    def finish(self) -> None:
        self.deadline = None

    def left(self) -> float:
        return self.read_timeout if self.deadline is None else self.deadline - time.monotonic()

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(self.read_timeout)
        else:
            super().setblocking(False)

    def recv(self, size: int, flags: int = 0) -> bytes:
        if self.deadline is None:
            return super().recv(size, flags)
        # Past the deadline: what already arrived is still read (timeout 0: non-blocking).
        self.settimeout(max(self.deadline - time.monotonic(), 0.0))
        try:
            return super().recv(size, flags)
        except (TimeoutError, BlockingIOError):
            self.expired = True
            raise RequestTimeout() from None

    def sendall(self, data: bytes, flags: int = 0) -> None:  # type: ignore[override]
        self.settimeout(self.write_timeout)
        super().sendall(data, flags)
