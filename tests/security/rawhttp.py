"""Bytes on a socket: requests no HTTP client library would send."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RawAnswer:
    status: int
    head: bytes
    body: bytes

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            n, _, v = line.partition(b":")
            if n.strip().lower() == name.lower().encode():
                return v.strip().decode("latin-1")
        return None


SETTLE = 0.3
"""After a whole answer, how long to keep listening for anything more (a second answer to a
smuggled request) when the server keeps the connection open."""


def exchange(port: int, data: bytes, timeout: float = 15.0) -> RawAnswer:
    """Send ``data`` as is, read until the server closes, or until a whole first answer was
    followed by :data:`SETTLE` seconds of silence, and parse the first answer's status line.
    Everything read stays in the body, so a second answer would show there."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        received = _read_all(s, bodiless=data.startswith(b"HEAD "))
    head, _, body = received.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise AssertionError(f"no HTTP answer: {received[:200]!r}")
    return RawAnswer(int(parts[1]), head, body)


def _whole(received: bytes, bodiless: bool) -> bool:
    """Whether ``received`` holds a whole first answer framed by Content-Length. The answer
    to a HEAD request (``bodiless``) carries the Content-Length a GET would get, and no body."""
    head, sep, body = received.partition(b"\r\n\r\n")
    if not sep:
        return False
    if bodiless:
        return True
    length = RawAnswer(0, head, b"").header("Content-Length")
    return length is not None and length.isdigit() and len(body) >= int(length)


def _read_all(s: socket.socket, bodiless: bool) -> bytes:
    out = b""
    try:
        while True:
            if _whole(out, bodiless):
                s.settimeout(SETTLE)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                if _whole(out, bodiless):
                    return out  # the server keeps the connection open; nothing more came
                raise
            if not chunk:
                return out
            out += chunk
    except ConnectionResetError:
        return out


def request(method: str, target: str, host: str | None,
            headers: list[tuple[str, str]] | None = None, body: bytes = b"",
            framing: bool = True) -> bytes:
    """An HTTP/1.1 request; ``framing`` adds Content-Length for ``body``."""
    lines = [f"{method} {target} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{n}: {v}" for n, v in headers or []]
    if framing:
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def exchange_routed(port: int, data: bytes, timeout: float = 10.0) -> RawAnswer:
    """:func:`exchange`, again while the answer is 503: a new route reaches each gunicorn
    worker within ~250 ms, and a provider retries a 503 the same way."""
    deadline = time.monotonic() + timeout
    while True:
        answer = exchange(port, data)
        if answer.status != 503 or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)
