"""A backend that records each request line as it arrived on the wire. Python's http.server
rewrites a path starting with ``//`` before a handler sees it, so exact-path checks use this."""

from __future__ import annotations

import socketserver
import threading

from hookfan.devstack import free_port


class RawLineBackend:
    def __init__(self) -> None:
        self.port = free_port()
        self.lines: list[bytes] = []
        self._cond = threading.Condition()
        backend = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while True:
                    line = self.rfile.readline(65537)
                    if not line:
                        return
                    length = 0
                    while (header := self.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
                        name, _, value = header.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    self.rfile.read(length)
                    with backend._cond:
                        backend.lines.append(line.rstrip(b"\r\n"))
                        backend._cond.notify_all()
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> RawLineBackend:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def targets(self, count: int, timeout: float = 30.0) -> list[str]:
        """The request targets of the first ``count`` requests, waiting for them."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.lines) >= count, timeout=timeout):
                raise AssertionError(f"raw backend got {len(self.lines)} of {count} requests")
            return [ln.split(b" ")[1].decode("latin-1") for ln in self.lines[:count]]
