"""``make bench``: measure hookfan against its floor and a naive baseline in one run, print a
table, and write docs/performance.md and docs/performance.png. See docs/performance.md."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ensure_wrk() -> bool:
    """wrk from Debian, installed if missing (as root, or through sudo)."""
    if shutil.which("wrk"):
        return True
    print("wrk not found; installing it with apt-get", flush=True)
    sudo = [] if _is_root() else ["sudo", "-n"]
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        if subprocess.run(sudo + cmd, capture_output=True).returncode != 0:
            break
    return shutil.which("wrk") is not None


def _is_root() -> bool:
    import os
    return os.geteuid() == 0


DRAIN_REQUESTS = 50_000
"""hookfan's drain backlog: this many requests x COPIES backends = 100,000 copies."""
NAIVE_DRAIN_REQUESTS = 4_000
"""The baseline's: 8,000 copies, 30-60 s at the 150-300 copies/s it drains here (100,000
would take ten minutes)."""
RSS_COPIES = 100_000
"""Copies pending for a dead backend while the worker's memory is watched."""
SLOW_DELAY = 0.2
"""Seconds the slow backend of the isolation row takes to answer."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=Path, default=ROOT / "docs",
                        help="where to write performance.md and performance.png "
                        "(default: docs/; another directory leaves docs/ untouched)")
    docs = parser.parse_args(argv).docs

    from bench import load, measure, report
    from bench.procs import Backends, Hookfan, Naive, Proc, py, wait_port
    from hookfan.config import DeliverySettings, IntakeSettings
    from hookfan.devstack import free_port

    if not ensure_wrk():
        print("bench: wrk is required and could not be installed: "
              "apt-get install wrk", file=sys.stderr)
        return 2
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="hookfan-bench-"))
    logdir = work / "logs"
    logdir.mkdir()
    print(f"bench: logs in {logdir}", flush=True)
    stopping: list = []
    try:
        backends = Backends(measure.COPIES, logdir)
        stopping.append(backends)
        slow = Backends(1, logdir, delay=SLOW_DELAY)
        stopping.append(slow)
        floor_port = free_port()
        floor = Proc("floor", py("-m", "bench.floor", f"127.0.0.1:{floor_port}"), logdir)
        stopping.append(floor)
        hook = Hookfan(work, logdir)
        stopping.append(hook)
        fast = hook.route(load.HOST, backends.urls)
        wait_port(floor_port)

        print("1. floor and hookfan intake (workers not running)", flush=True)
        time.sleep(1.0)
        intake = measure.intake(floor_port, hook, floor.cpu)
        floor.stop()
        stopping.remove(floor)

        print("2. Redis bytes per pending request (no workers)", flush=True)
        dead = [f"http://127.0.0.1:{free_port()}" for _ in range(5)]
        mem = measure.memory(hook, dead)
        for size, n, per, target in mem:
            print(f"  {size} B body, {n} backend(s): {per:.0f} B/request (target {target})")

        print(f"3. hookfan drains {DRAIN_REQUESTS * len(fast):,} copies, intake idle", flush=True)
        drain_hook = measure.drain(hook, backends,
                                   lambda: hook.bulk_load(DRAIN_REQUESTS, fast, host=load.HOST))

        print("4. hookfan end to end", flush=True)
        warm = measure.warm_up(hook, backends)
        # Half of what delivery alone drains, and at most a quarter of what the intake takes
        # alone (with a worker beside it on 2 cores, the intake gets far less CPU).
        start = 0.5 * min(_known(drain_hook.rate, warm) / measure.COPIES,
                          0.5 * intake.med(intake.hookfan_runs, "rps"))
        print(f"  the search starts at {start:.0f} req/s", flush=True)
        e2e_hook = measure.end_to_end(hook, backends, start_rate=start)

        naive = Naive(work, logdir, backends.urls, IntakeSettings().workers,
                      DeliverySettings().concurrency)
        stopping.append(naive)
        copies = NAIVE_DRAIN_REQUESTS * measure.COPIES
        print(f"5. naive baseline drains {copies:,} copies, intake idle", flush=True)
        drain_naive = measure.drain(naive, backends,
                                    lambda: naive.bulk_load(NAIVE_DRAIN_REQUESTS))

        print("6. naive baseline end to end", flush=True)
        warm = measure.warm_up(naive, backends)
        start = 0.5 * _known(drain_naive.rate, warm) / measure.COPIES
        print(f"  the search starts at {start:.0f} req/s", flush=True)
        e2e_naive = measure.end_to_end(naive, backends, start_rate=start)
        print("7. again at each max rate, alternating", flush=True)
        measure.confirm([(hook, e2e_hook), (naive, e2e_naive)], backends)

        print("8. naive Redis bytes per pending request (no worker)", flush=True)
        naive_mem = measure.naive_memory(naive)
        for size, per in naive_mem:
            print(f"  naive, {size} B body, {measure.COPIES} backends: {per:.0f} B/request")
        naive.stop()
        stopping.remove(naive)

        rate = e2e_hook.half_rate or 50.0
        print(f"9. a fast backend at {rate:.0f} req/s, alone and beside a slow one", flush=True)
        cap = getattr(DeliverySettings(), "backend_concurrency", 4)
        slow_row = measure.slow_backend(hook, backends, slow, rate, SLOW_DELAY, cap)
        hook.stop_worker()

        print(f"10. hookfan worker memory with {RSS_COPIES:,} copies for a dead backend",
              flush=True)
        gone = hook.route("dead.example.com", [f"http://127.0.0.1:{free_port()}"])[0]
        rss = measure.worker_rss(hook, backends, fast, gone, RSS_COPIES)
        hook.stop()
        stopping.remove(hook)
    finally:
        for thing in reversed(stopping):
            thing.stop()
    elapsed = time.time() - started
    results = report.Results(intake, e2e_hook, e2e_naive, mem, naive_mem, elapsed,
                             drain_hook, drain_naive, rss, slow_row)
    print(report.table(results))
    report.write(results, docs)
    print(f"bench: wrote {docs}/performance.md and {docs}/performance.png in {elapsed:.0f} s")
    for data in work.glob("redis-*"):
        shutil.rmtree(data, ignore_errors=True)
    return 0


def _known(x: float, fallback: float) -> float:
    """``x`` unless it is NaN or not positive."""
    return x if x == x and x > 0 else fallback


if __name__ == "__main__":
    sys.exit(main())
