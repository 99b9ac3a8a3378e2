"""Invariant 1 of issue 12: every due time, lease and age comes from Redis's clock. A worker
whose clock runs 30 s ahead must not take copies in flight at another worker for lapsed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import datetime

from hookfan import keys
from hookfan.devstack import free_port
from hookfan.envelope import StoredRequest
from hookfan.routes import Backend
from tests.engine.backends import GaugedBackend
from tests.engine.harness import Engine, readyz
from tests.support.procs import HookfanProcess, wait_until

SKEW = 30
PATCHED_MAIN = (
    "import sys, time\n"
    "_time, _time_ns = time.time, time.time_ns\n"
    f"time.time = lambda: _time() + {SKEW}\n"
    f"time.time_ns = lambda: _time_ns() + {SKEW * 10**9}\n"
    "from hookfan.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n")
"""The process's time functions are shifted before hookfan is imported; its prefork pool
children inherit them."""
HELD = 8.0


class SkewedProcess(HookfanProcess):
    def start(self) -> SkewedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([sys.executable, "-c", PATCHED_MAIN, *self.args],
                                     stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        return self


def log_skew(text: str) -> float:
    """How far ahead of this process's clock the last log line's timestamp is."""
    last = json.loads(text.strip().splitlines()[-1])
    stamp = datetime.strptime(last["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return (stamp - datetime.utcnow()).total_seconds()


def test_worker_with_a_clock_30s_ahead_does_not_reclaim_copies_in_flight(
        engine: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Each request is held until the skewed worker has looked (at most HELD seconds), within
    # a 10 s attempt deadline: a lease of 25 s, which a clock 30 s ahead would see as past.
    release = threading.Event()
    backend = GaugedBackend(hold=lambda _a, _s: release.wait(HELD)).start()
    flags = ["--delivery-timeout", "10s", "--min-retry-delay", "100ms", "--max-retry-delay", "1s"]
    try:
        # The normal worker has one pool process: while its task sends, it takes no message.
        normal = engine.worker("normal", "--concurrency", "1", *flags)
        now = time.time()
        engine.store.accept_batch([
            (f"skew{i}", StoredRequest("POST", "/c", (), b"%d" % i, "10.0.0.1", now,
                                       "clock.example.com"),
             [Backend("ns/clock", backend.url)]) for i in range(4)])
        backend.gauge.wait(lambda g: g.now >= 1, 20, "the normal worker sending")

        port = free_port()
        skewed = engine.add(SkewedProcess(
            ["worker", "--concurrency", "2", *flags, "--log-level", "debug",
             "--health-addr", f"127.0.0.1:{port}", "--redis-url", engine.redis_url],
            tmp_path / "logs", "skewed").start())
        wait_until(lambda: readyz(port) == 200, 30, "skewed worker ready")
        assert SKEW - 5 < log_skew(skewed.log()) < SKEW + 5, "the clock patch did not take"
        in_flight = {d.decode() for d in engine.r.zrange(keys.inflight(backend.url), 0, -1)}
        assert in_flight and backend.gauge.now >= 1
        # A wake-up for the backend that only the skewed worker is free to take: its task
        # settles the backend while the normal worker's attempts are in flight.
        engine.wake(backend.url)
        def reclaimed() -> list[tuple[str, int]]:
            return [(a.delivery_id, a.attempt) for a in backend.gauge.arrivals if a.attempt > 1]
        wait_until(lambda: ("Task hookfan.deliver[" in skewed.log()
                            and " succeeded in " in skewed.log()) or reclaimed(), 10,
                   "the skewed worker's task ran")
        assert not reclaimed(), "the skewed worker re-claimed copies in flight"
        assert not release.is_set(), "the attempts ended before the skewed worker looked"
        release.set()

        wait_until(lambda: engine.store.pending_count() == 0
                   or any(a.attempt > 1 for a in backend.gauge.arrivals), 30,
                   "all copies delivered (or one re-claimed)")
        arrivals = backend.gauge.arrivals
        print(f"copies in flight at the normal worker when the skewed one looked: "
              f"{len(in_flight)}; arrivals {[(a.delivery_id, a.attempt) for a in arrivals]}")
        assert {a.attempt for a in arrivals} == {1}
        assert len(arrivals) == 4 and len(backend.gauge.ids()) == 4
        for proc in (normal, skewed):
            assert "LeaseExpired" not in proc.log()
        assert not any(k.startswith("last_error:") for k in engine.store.delivery_figures())
        assert engine.store.dead_ids() == []
    finally:
        release.set()
        backend.stop()
