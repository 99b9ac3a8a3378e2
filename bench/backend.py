"""A fast local webhook backend for the bench: asyncio, keep-alive, answers 200 at once.

Run as ``python -m bench.backend PORT [--delay SECONDS]``; with ``--delay`` every copy is
answered that long after it arrived (a slow backend), each connection's answers in order, many
connections waiting at once. It counts copies (on arrival) and, when a body starts with
``{"ts":<unix time>``, records receive time minus that stamp (accept->delivery latency as the
sender saw it). ``GET /_stats`` returns ``{"count": n, "lat": [...]}``, ``GET /_count`` only
``{"count": n}`` (cheap enough to poll); ``GET /_reset`` zeroes both. Bodies are never printed
or kept.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import time

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_STAMP = b'{"ts":'


class Stats:
    def __init__(self) -> None:
        self.count = 0
        self.lat: list[float] = []

    def record(self, body: bytes) -> None:
        self.count += 1
        if body.startswith(_STAMP):
            end = body.find(b",", 6)
            with contextlib.suppress(ValueError):
                self.lat.append(time.time() - float(body[6:end]))


class Conn(asyncio.Protocol):
    def __init__(self, stats: Stats, delay: float = 0.0) -> None:
        self.stats = stats
        self.delay = delay
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.waiting: collections.deque[bytes] = collections.deque()
        """Delayed answers not yet written, oldest first (HTTP/1.1 answers go out in order)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(self.buf) < end:
                return
            body = self.buf[head_end + 4:end]
            self.buf = self.buf[end:]
            self.answer(head, body)

    def answer(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
        if head.startswith((b"GET /_stats", b"GET /_count")):
            figures: dict[str, object] = {"count": self.stats.count}
            if head.startswith(b"GET /_stats"):
                figures["lat"] = self.stats.lat
            out = json.dumps(figures).encode()
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(out), out))
        elif target == b"/_reset":
            self.stats.count, self.stats.lat = 0, []
            self.transport.write(_OK)
        else:
            self.stats.record(body)
            if self.delay <= 0:
                self.transport.write(_OK)
                return
            # Every timer writes the oldest waiting answer, so the order holds whichever
            # timer fires first.
            self.waiting.append(_OK)
            asyncio.get_running_loop().call_later(self.delay, self.answer_oldest)

    def answer_oldest(self) -> None:
        answer = self.waiting.popleft()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)


async def serve(port: int, delay: float = 0.0) -> None:
    stats = Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(stats, delay), "127.0.0.1", port,
                                      backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.backend")
    parser.add_argument("port", type=int)
    parser.add_argument("--delay", type=float, default=0.0,
                        help="answer each copy this many seconds after it arrived")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.delay))


if __name__ == "__main__":
    main()
