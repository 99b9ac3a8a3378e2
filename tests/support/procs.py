"""hookfan processes started as real subprocesses, each logging to its own file."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

from hookfan.devstack import free_port


def wait_until(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition",
               interval: float = 0.02) -> None:
    """Poll a cheap condition (a port, a Redis key) until it holds; raise naming it on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class HookfanProcess:
    def __init__(self, args: list[str], log_dir: Path, name: str,
                 env: dict[str, str] | None = None) -> None:
        self.args = args
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.env = {**os.environ, "HOOKFAN_LOG_ENCODING": "json", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HookfanProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([sys.executable, "-m", "hookfan.cli", *self.args],
                                     stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a gunicorn master or Celery worker and its children)."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Stack:
    """Operator (file source), app (gunicorn) and worker(s) on one Redis, as in production."""

    def __init__(self, redis_url: str, routes_dir: Path, log_dir: Path,
                 worker_args: list[str] | None = None, app_args: list[str] | None = None,
                 env: dict[str, str] | None = None,
                 client: redis.Redis | None = None, default_delivery: bool = False) -> None:
        self.redis_url = redis_url
        self.client = client or redis.Redis.from_url(redis_url)
        """How the test reaches the stack's Redis (through Sentinel, say)."""
        self.routes_dir = routes_dir
        self.log_dir = log_dir
        self.port = free_port()
        self.worker_args = worker_args or []
        self.app_args = app_args or []
        self.env = env or {}
        self.default_delivery = default_delivery
        """Start workers with hookfan's own delivery defaults (only ``worker_args`` added), not
        the quick ones tests use (2 processes, 2 s attempts, retries within a second)."""
        self.procs: dict[str, HookfanProcess] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, args: list[str]) -> HookfanProcess:
        p = HookfanProcess([*args, "--redis-url", self.redis_url], self.log_dir, name,
                           self.env).start()
        self.procs[name] = p
        return p

    def start_operator(self) -> HookfanProcess:
        p = self._spawn("operator", ["operator", "--routes-dir", str(self.routes_dir),
                                     "--poll-interval", "100ms"])
        wait_until(lambda: self.client.exists("hookfan:routes") == 1,
                   what="route table published")
        return p

    def start_app(self) -> HookfanProcess:
        p = self._spawn("app", ["app", "--http-addr", f"127.0.0.1:{self.port}", "--workers", "2",
                                *self.app_args])
        wait_until(lambda: port_open(self.port), what="intake listening")
        return p

    def start_worker(self, name: str = "worker") -> HookfanProcess:
        quick = [] if self.default_delivery else [
            "--concurrency", "2", "--min-retry-delay", "100ms", "--max-retry-delay", "1s",
            "--delivery-timeout", "2s"]
        return self._spawn(name, ["worker", *quick, *self.worker_args])

    def start(self) -> Stack:
        try:
            self.start_operator()
            self.start_app()
            self.start_worker()
        except BaseException:
            self.stop()  # a half-started stack must not outlive the test
            raise
        return self

    def stop(self) -> None:
        for p in reversed(list(self.procs.values())):
            p.stop()

    def logs(self) -> dict[str, str]:
        return {name: p.log() for name, p in self.procs.items()}


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` has open (empty if it is gone)."""
    out: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def local_port_inodes(port: int, remote_port: int | None = None) -> set[int]:
    """Inodes of the IPv4 TCP sockets bound to local ``port`` (from ``/proc/net/tcp``), only
    those connected from ``remote_port`` when it is given."""
    out: set[int] = set()
    with open("/proc/net/tcp", encoding="ascii") as fh:
        next(fh)
        for line in fh:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) != port:
                continue
            if remote_port is None or int(fields[2].rsplit(":", 1)[1], 16) == remote_port:
                out.add(int(fields[9]))
    return out


def pids_hold_port(pids: list[int], port: int, remote_port: int | None = None) -> bool:
    """Whether one of ``pids`` has a TCP socket whose local port is ``port`` (and whose peer's
    is ``remote_port``, if given)."""
    inodes = local_port_inodes(port, remote_port)
    return any(inodes & socket_inodes(pid) for pid in pids)


def holds_port(p: HookfanProcess, port: int, remote_port: int | None = None) -> bool:
    """Whether ``p`` or one of its children (a Celery pool process, a gunicorn worker) holds
    such a socket: which worker makes the attempt a backend sees coming from ``port``."""
    return pids_hold_port([p.pid, *p.children()], port, remote_port)
