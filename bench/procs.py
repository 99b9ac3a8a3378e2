"""Processes the bench starts (Redis, backends, floor, hookfan, the naive baseline), their CPU
time from /proc, and the two systems under test behind one interface."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

from hookfan import keys
from hookfan.devstack import free_port, redis_args
from hookfan.routes import Backend, build_table
from hookfan.store import Store

ROOT = Path(__file__).resolve().parent.parent
_TICK = os.sysconf("SC_CLK_TCK")


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout:.0f}s")


def _tree_cpu(root: int) -> float:
    """user+sys seconds of ``root`` and all its live descendants."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2:].split()
        # fields after the command: state ppid ... utime(14th overall) stime(15th)
        stats[int(entry)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / _TICK)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
            todo += [p for p, (pp, _) in stats.items() if pp == pid]
    return total


class Proc:
    """A subprocess in its own session, logging to a file; stopped by signalling its group."""

    def __init__(self, name: str, args: list[str], logdir: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        log = open(logdir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, **(env or {})}, start_new_session=True)

    def cpu(self) -> float:
        return _tree_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def py(*args: str) -> list[str]:
    return [sys.executable, *args]


class Backends:
    """``n`` fast local backends (bench/backend.py), each its own process."""

    def __init__(self, n: int, logdir: Path) -> None:
        self.ports = [free_port() for _ in range(n)]
        self.procs = [Proc(f"backend-{p}", py("-m", "bench.backend", str(p)), logdir)
                      for p in self.ports]
        for p in self.ports:
            wait_port(p)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def _get(self, port: int, path: str) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path)
            return conn.getresponse().read()
        finally:
            conn.close()

    def count(self) -> int:
        return sum(json.loads(self._get(p, "/_stats"))["count"] for p in self.ports)

    def latencies(self) -> list[float]:
        return [x for p in self.ports for x in json.loads(self._get(p, "/_stats"))["lat"]]

    def reset(self) -> None:
        for p in self.ports:
            self._get(p, "/_reset")

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


class RedisServer:
    def __init__(self, name: str, workdir: Path, logdir: Path) -> None:
        self.port = free_port()
        data = workdir / name
        data.mkdir(parents=True, exist_ok=True)
        self.proc = Proc(name, redis_args(self.port, str(data), "always") +
                         ["--loglevel", "warning"], logdir)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis.from_url(self.url)
        wait_port(self.port)

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])


class System:
    """A fan-out system under test: an intake app, workers, one Redis."""

    name = ""
    app: Proc
    worker: Proc | None = None
    redis: RedisServer
    port: int

    def cpu_parts(self) -> dict[str, float]:
        """CPU seconds so far of the app (master + workers), the worker (main + pool
        children) and Redis."""
        return {"app": self.app.cpu(), "worker": self.worker.cpu() if self.worker else 0.0,
                "redis": self.redis.proc.cpu()}

    def cpu(self) -> float:
        return sum(self.cpu_parts().values())

    def backlog(self) -> int:
        raise NotImplementedError

    def start_worker(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for p in (self.worker, self.app, self.redis.proc):
            if p is not None:
                p.stop()


class Hookfan(System):
    name = "hookfan"

    def __init__(self, workdir: Path, logdir: Path) -> None:
        self.logdir = logdir
        self.redis = RedisServer("redis-hookfan", workdir, logdir)
        self.store = Store(self.redis.client)
        self.port = free_port()
        self.app = Proc("hookfan-app", self._cli("app", "--http-addr", f"127.0.0.1:{self.port}"),
                        logdir)
        wait_port(self.port)

    def _cli(self, *args: str) -> list[str]:
        return py("-m", "hookfan.cli", *args, "--redis-url", self.redis.url)

    def route(self, host: str, urls: list[str]) -> None:
        """Publish ``host`` -> ``urls`` (added to what is already routed), as the operator would."""
        current = self.store.load_routes()
        entries = [(h, b) for h, bs in (current.routes.items() if current else []) for b in bs]
        entries += [(host, Backend(f"bench/{host}-{i}", u)) for i, u in enumerate(urls)]
        self.store.publish_routes(build_table(entries, 0))

    def start_worker(self) -> None:
        self.worker = Proc("hookfan-worker", self._cli("worker"), self.logdir)

    def backlog(self) -> int:
        return int(self.redis.client.zcard(keys.SCHEDULE))

    def clear(self) -> None:
        """Drop pending requests (not the route table)."""
        r = self.redis.client
        doomed = [k for pat in (keys.REQUEST + "*", keys.DELIVERY + "*")
                  for k in r.scan_iter(pat, count=1000)]
        for i in range(0, len(doomed), 1000):
            r.delete(*doomed[i:i + 1000])
        r.delete(keys.SCHEDULE, keys.QUEUE, keys.DEAD)


class Naive(System):
    """The afternoon design (bench/naive/), configured as a user would: gunicorn with the same
    worker count as hookfan's app, a Celery prefork worker with hookfan's concurrency."""

    name = "naive"

    def __init__(self, workdir: Path, logdir: Path, backends: list[str],
                 workers: int, concurrency: int) -> None:
        self.logdir = logdir
        self.concurrency = concurrency
        self.redis = RedisServer("redis-naive", workdir, logdir)
        self.env = {"NAIVE_BROKER": self.redis.url, "NAIVE_BACKENDS": ",".join(backends)}
        self.port = free_port()
        self.app = Proc("naive-app", py("-m", "gunicorn", "-w", str(workers), "-b",
                                        f"127.0.0.1:{self.port}", "--log-level", "warning",
                                        "bench.naive.app:app"), logdir, self.env)
        wait_port(self.port)

    def start_worker(self) -> None:
        self.worker = Proc("naive-worker", py(
            "-m", "celery", "-A", "bench.naive.tasks", "worker", "--pool", "prefork",
            "--concurrency", str(self.concurrency), "--loglevel", "INFO", "--without-gossip",
            "--without-mingle"), self.logdir, self.env)

    def backlog(self) -> int:
        r = self.redis.client
        return int(r.llen("celery")) + int(r.hlen("unacked"))
