"""The HTTP client that sends a copy: exact request target, exact header lines, keep-alive.

Built on http.client rather than requests or urllib3, because a copy must be sent as received:
requests keeps headers in a dict (repeats merged), urllib3 groups repeats by name and re-encodes
the request target (``%2e`` becomes ``%2E``, ``%zz`` becomes ``%25zz``), which breaks a backend
that signs the raw path. Nothing here is added that the sender did not send, except
Content-Length, recomputed for the identical body.
"""

from __future__ import annotations

import http.client
import select
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_DRAIN = 64 * 1024
"""A response body up to this size is read so the connection can be reused; larger ones close it."""


@dataclass(frozen=True)
class Sent:
    status: int | None
    error: str | None = None
    """A class of transport error (``ConnectionRefused``, ``Timeout``...), never a message."""
    retry_after: str | None = None


class Transport:
    """One keep-alive connection per backend base URL, for a single-threaded caller (one per
    Celery pool process)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._conns: dict[str, http.client.HTTPConnection] = {}

    def send(self, base_url: str, method: str, target: str, lines: list[tuple[str, str]],
             body: bytes | None) -> Sent:
        """Send one request and read the answer; never raises for network trouble."""
        conn = self._connection(base_url)
        phase = "connect"
        try:
            if conn.sock is None:
                conn.connect()
            phase = "send"
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in lines:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            phase = "read"
            resp = conn.getresponse()
            status, retry_after = resp.status, resp.getheader("Retry-After")
            self._finish(base_url, conn, resp)
            return Sent(status, retry_after=retry_after)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._drop(base_url)
            return Sent(None, error_reason(exc, phase))

    def close(self) -> None:
        for url in list(self._conns):
            self._drop(url)

    def _connection(self, base_url: str) -> http.client.HTTPConnection:
        conn = self._conns.get(base_url)
        if conn is not None and conn.sock is not None and _dropped(conn.sock):
            self._drop(base_url)
            conn = None
        if conn is None:
            parts = urlsplit(base_url)
            cls = http.client.HTTPSConnection if parts.scheme == "https" else \
                http.client.HTTPConnection
            conn = cls(parts.hostname or "", parts.port, timeout=self.timeout)
            self._conns[base_url] = conn
        return conn

    def _finish(self, base_url: str, conn: http.client.HTTPConnection,
                resp: http.client.HTTPResponse) -> None:
        if resp.length is not None and resp.length <= MAX_DRAIN and not resp.will_close:
            resp.read()
        else:
            resp.close()
            self._drop(base_url)

    def _drop(self, base_url: str) -> None:
        conn = self._conns.pop(base_url, None)
        if conn is not None:
            conn.close()


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
