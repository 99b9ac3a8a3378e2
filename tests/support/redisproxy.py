"""A TCP proxy in front of a real redis-server that can lose one accept on purpose.

Between the app and Redis it forwards bytes both ways, and, once armed, does one of three things
to the next call of hookfan's ``accept`` script (recognised by its SHA in the stream):

- ``drop_reply``: forward the call, let Redis run it, then throw its reply away and close the
  connection (the write committed; the app never hears so);
- ``swallow``: close the connection without forwarding it (nothing committed);
- ``hold``: close the app's side at once and keep the call; :meth:`release` sends it to Redis
  later (a call still on its way when the app gave up) and returns Redis's reply.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading

from hookfan import scripts
from hookfan.devstack import free_port

ACCEPT_SHA = hashlib.sha1(scripts.source("accept").encode()).hexdigest().encode()


class RedisProxy:
    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.port = free_port()
        self.mode: str | None = None
        self.times = 0
        self.fired = threading.Event()
        self.dropped_reply = b""
        self.held = b""
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arm(self, mode: str, times: int = 1) -> None:
        """Do ``mode`` to the next ``times`` accept calls."""
        assert mode in ("drop_reply", "swallow", "hold")
        self.fired.clear()
        self.mode = mode
        self.times = times

    def release(self) -> bytes:
        """Send the held call to Redis on a fresh connection; its raw reply."""
        with socket.create_connection(("127.0.0.1", self.redis_port), timeout=5) as s:
            s.sendall(self.held)
            return s.recv(65536)

    def close(self) -> None:
        self._listener.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.redis_port))
            state = {"drop": False}
            threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, state),
                             daemon=True).start()

    def _take(self, data: bytes) -> str | None:
        """The armed mode if ``data`` carries an accept call (once), else None."""
        with self._lock:
            if self.mode is None or ACCEPT_SHA not in data:
                return None
            mode = self.mode
            self.times -= 1
            if self.times <= 0:
                self.mode = None
            return mode

    def _up(self, client: socket.socket, server: socket.socket, state: dict[str, bool]) -> None:
        try:
            while data := client.recv(65536):
                mode = self._take(data)
                if mode == "swallow" or mode == "hold":
                    self.held = data
                    _close(client, server)
                    self.fired.set()
                    return
                if mode == "drop_reply":
                    state["drop"] = True
                server.sendall(data)
        except OSError:
            pass
        _close(client, server)

    def _down(self, server: socket.socket, client: socket.socket,
              state: dict[str, bool]) -> None:
        try:
            while data := server.recv(65536):
                if state["drop"]:
                    self.dropped_reply = data
                    _close(client, server)
                    self.fired.set()
                    return
                client.sendall(data)
        except OSError:
            pass
        _close(client, server)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()
