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
from hookfan.envelope import StoredRequest
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


def _table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, user+sys seconds) of every live process."""
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
    return stats


def _tree(root: int, stats: dict[int, tuple[int, float]]) -> list[int]:
    """``root`` and all its live descendants."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out.append(pid)
            todo += [p for p, (pp, _) in stats.items() if pp == pid]
    return out


def _tree_cpu(root: int) -> float:
    """user+sys seconds of ``root`` and all its live descendants."""
    stats = _table()
    return sum(stats[pid][1] for pid in _tree(root, stats))


def rss_kb(pid: int) -> int:
    """VmRSS of one process in kB; 0 once it has gone (or for a zombie)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kb(root: int) -> tuple[int, int]:
    """(summed VmRSS in kB, process count) of ``root`` and its live descendants (for a Celery
    worker: the main process and its pool children)."""
    pids = _tree(root, _table())
    return sum(rss_kb(p) for p in pids), len(pids)


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

    def rss_kb(self) -> tuple[int, int]:
        """(summed VmRSS in kB, process count) of the process and its descendants."""
        return tree_rss_kb(self.proc.pid)

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
    """``n`` local backends (bench/backend.py), each its own process; fast unless ``delay``
    (seconds before each answer) is given."""

    def __init__(self, n: int, logdir: Path, delay: float = 0.0) -> None:
        self.ports = [free_port() for _ in range(n)]
        extra = ["--delay", str(delay)] if delay else []
        kind = "slow-backend" if delay else "backend"
        self.procs = [Proc(f"{kind}-{p}", py("-m", "bench.backend", str(p), *extra), logdir)
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

    def count(self, ports: list[int] | None = None) -> int:
        """Copies received so far, by all backends or by those on ``ports``."""
        return sum(json.loads(self._get(p, "/_count"))["count"]
                   for p in (self.ports if ports is None else ports))

    def latencies(self) -> list[float]:
        return [x for p in self.ports for x in json.loads(self._get(p, "/_stats"))["lat"]]

    def reset(self) -> None:
        for p in self.ports:
            self._get(p, "/_reset")

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


class RedisServer:
    def __init__(self, name: str, workdir: Path, logdir: Path,
                 appendfsync: str = "always") -> None:
        self.port = free_port()
        data = workdir / name
        data.mkdir(parents=True, exist_ok=True)
        self.proc = Proc(name, redis_args(self.port, str(data), appendfsync) +
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

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def stop(self) -> None:
        for p in (self.worker, self.app, self.redis.proc):
            if p is not None:
                p.stop()


class Hookfan(System):
    name = "hookfan"

    KEEP = frozenset({keys.ROUTES.encode(), keys.ROUTES_VERSION.encode()})
    """What :meth:`clear` leaves: the route table, as the operator published it."""
    CELERY = (keys.QUEUE, "unacked", "unacked_index")
    """The Celery queue of ``hookfan.deliver`` messages and kombu's bookkeeping of the ones a
    worker holds (both outside the ``hookfan:`` prefix)."""

    def __init__(self, workdir: Path, logdir: Path, appendfsync: str = "always") -> None:
        """``appendfsync`` other than ``always`` starts the app with ``--allow-unsafe-redis``
        (for measuring what the fsync costs, never for the bench's figures)."""
        self.logdir = logdir
        self.redis = RedisServer("redis-hookfan", workdir, logdir, appendfsync)
        self.store = Store(self.redis.client)
        self.port = free_port()
        unsafe = [] if appendfsync == "always" else ["--allow-unsafe-redis"]
        self.app = Proc("hookfan-app", self._cli("app", "--http-addr", f"127.0.0.1:{self.port}",
                                                 *unsafe), logdir)
        wait_port(self.port)

    def _cli(self, *args: str) -> list[str]:
        return py("-m", "hookfan.cli", *args, "--redis-url", self.redis.url)

    def route(self, host: str, urls: list[str]) -> list[Backend]:
        """Publish ``host`` -> ``urls`` (added to what is already routed), as the operator
        would; returns the new backends."""
        current = self.store.load_routes()
        entries = [(h, b) for h, bs in (current.routes.items() if current else []) for b in bs]
        added = [Backend(f"bench/{host}-{i}", u) for i, u in enumerate(urls)]
        self.store.publish_routes(build_table(entries + [(host, b) for b in added], 0))
        return added

    def start_worker(self, *flags: str) -> None:
        """``hookfan worker`` with its defaults, plus ``flags`` (e.g. ``--concurrency 8``)."""
        self.worker = Proc("hookfan-worker", self._cli("worker", *flags), self.logdir)

    def backlog(self) -> int:
        """Copies pending (ready or in flight) across all backends."""
        pending = getattr(self.store, "pending_count", None)
        if pending is None:  # engine v1, until Store.pending_count lands
            return int(self.redis.client.zcard(keys.PREFIX + "schedule"))
        return int(pending())

    def clear(self) -> None:
        """Drop everything hookfan keeps in Redis but the route table: requests, copies, the
        schedule, dead letters, figures, and the Celery queue. Run it with no worker running."""
        r = self.redis.client
        doomed: list[bytes] = []
        for key in r.scan_iter(match=keys.PREFIX + "*", count=1000):
            if key not in self.KEEP:
                doomed.append(key)
            if len(doomed) >= 1000:
                r.delete(*doomed)
                doomed = []
        if doomed:
            r.delete(*doomed)
        r.delete(*self.CELERY)

    def bulk_load(self, requests: int, backends: list[Backend], body_size: int = 1024,
                  chunk: int = 500, host: str = "bench.example.com") -> int:
        """Store ``requests`` POSTs of ``body_size``-byte JSON bodies, each with a copy for every
        one of ``backends``, through :meth:`Store.accept_batch` (the intake's own script, one
        pipeline per ``chunk``), without HTTP. Returns the copies written."""
        pad = b'{"pad":"' + b"x" * max(0, body_size - 10) + b'"}'
        headers = (("Host", host), ("Content-Type", "application/json"),
                   ("Content-Length", str(len(pad))))
        for start in range(0, requests, chunk):
            now = time.time()
            batch = [(os.urandom(16).hex(),
                      StoredRequest("POST", "/", headers, pad, "127.0.0.1", now, host), backends)
                     for _ in range(min(chunk, requests - start))]
            self.store.accept_batch(batch)
        return requests * len(backends)


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

    def clear(self) -> None:
        """Drop every queued message (run it with the worker stopped)."""
        self.redis.client.delete("celery", "unacked", "unacked_index")

    def bulk_load(self, requests: int, body_size: int = 1024) -> int:
        """Queue what the baseline's intake would for ``requests`` POSTs of ``body_size``-byte
        bodies, through its own Celery app (bench/naive/backlog.py), without HTTP. Returns the
        copies queued."""
        subprocess.run(py("-m", "bench.naive.backlog", str(requests), str(body_size)), cwd=ROOT,
                       env={**os.environ, **self.env}, check=True, timeout=600)
        return requests * len(self.env["NAIVE_BACKENDS"].split(","))
