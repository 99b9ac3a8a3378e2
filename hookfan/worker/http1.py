"""HTTP/1.1 framing for the copies the worker sends: the request head, built at once, and a
parser for no more of the answer than delivery needs (status line; Content-Length,
Transfer-Encoding, Connection, Keep-Alive and Retry-After; the body drained). Errors are
http.client's exception classes, so :func:`hookfan.worker.transport.error_reason` names them
as before. Sockets, deadlines and the connection pool are :mod:`hookfan.worker.transport`'s.
"""

from __future__ import annotations

import http.client
import re
import socket
import time

MAX_DRAIN = 64 * 1024
"""A response body up to this size is read so the connection can be reused; larger ones close it."""
_MAX_HEAD = 64 * 1024
"""An answer's status line and headers (or a chunk-size line, or trailers) larger than this
are an error (``LineTooLong``): no backend answers a webhook with that."""

_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]").search  # http.client's rule: InvalidURL
_BAD_METHOD = re.compile(r"[\x00-\x20\x7f]").search
_GOOD_NAME = re.compile(rb"[^:\s\x00][^:\r\n\x00]*").fullmatch  # http.client's, and no NUL
_HEAD_END = re.compile(rb"\r?\n\r?\n").search
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}").fullmatch
_NO_BODY = frozenset((204, 304))

_good_names: set[str] = set()
"""Header names already found valid: a copy's names repeat from copy to copy."""
_good_methods: set[str] = set()


class Link:
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

    def take(self, n: int, end: float, into: bytearray) -> None:
        """Read ``n`` bytes of body into ``into``."""
        while len(self.buf) < n:
            self.fill(end)
        into += self.buf[:n]
        del self.buf[:n]

    def chunked(self, end: float, limit: int = MAX_DRAIN, into: bytearray | None = None) -> bool:
        """Drain a chunked body (into ``into``, when given); False (stop reading, close) once
        it passes ``limit``."""
        total = 0
        while True:
            size = self.line(end).split(b";", 1)[0].strip(b" \t")
            if not _HEX(size):
                raise ValueError("chunk size")
            n = int(size, 16)
            if n == 0:
                break
            total += n
            if total > limit:
                return False
            if into is None:
                self.skip(n, end)
            else:
                self.take(n, end, into)
            if self.line(end):
                raise ValueError("chunk end")
        trailers = 0
        while line := self.line(end):  # trailer fields, then the blank line
            trailers += len(line)
            if trailers > _MAX_HEAD:
                raise http.client.LineTooLong("trailers")
        return True


def request_head(method: str, target: str, lines: list[tuple[str, str]],
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


def final_head(link: Link, end: float) -> tuple[bytes, int, int, bool]:
    """The final answer's head (interim 1xx answers skipped): (head, index of the status
    line's end or -1, status, HTTP/1.0)."""
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
            # else an interim answer (100 Continue, 103 Early Hints): the final follows
            return head, nl, status, words[0] == b"HTTP/1.0"


def read_answer(link: Link, end: float, head_only: bool) -> tuple[int, str | None, bool]:
    """Read an answer: its status, Retry-After, and whether the connection may be reused."""
    head, nl, status, http10 = final_head(link, end)
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
