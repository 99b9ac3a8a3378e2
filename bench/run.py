"""``make bench``: measure hookfan against its floor and a naive baseline in one run, print a
table, and write docs/performance.md and docs/performance.png. See docs/performance.md."""

from __future__ import annotations

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


def main() -> int:
    from bench import measure, report
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
        floor_port = free_port()
        floor = Proc("floor", py("-m", "bench.floor", f"127.0.0.1:{floor_port}"), logdir)
        stopping.append(floor)
        hook = Hookfan(work, logdir)
        stopping.append(hook)
        hook.route("bench.example.com", backends.urls)
        wait_port(floor_port)

        print("1-2. floor and hookfan intake (workers not running)", flush=True)
        time.sleep(1.0)
        intake = measure.intake(floor_port, hook)
        floor.stop()
        stopping.remove(floor)

        print("5. Redis bytes per pending request (no workers)", flush=True)
        dead = [f"http://127.0.0.1:{free_port()}" for _ in range(5)]
        mem = measure.memory(hook, dead)
        for size, n, per, target in mem:
            print(f"  {size} B body, {n} backend(s): {per:.0f} B/request (target {target})")

        print("3. hookfan end to end", flush=True)
        hook.start_worker()
        drain = measure.warm_up(hook, backends)
        print(f"  hookfan drains {drain:.0f} copies/s with the intake idle", flush=True)
        e2e_hook = measure.end_to_end(hook, backends, start_rate=0.5 * drain / measure.COPIES)

        print("4. naive baseline end to end", flush=True)
        naive = Naive(work, logdir, backends.urls, IntakeSettings().workers,
                      DeliverySettings().concurrency)
        stopping.append(naive)
        naive.start_worker()
        drain = measure.warm_up(naive, backends)
        print(f"  naive drains {drain:.0f} copies/s with the intake idle", flush=True)
        e2e_naive = measure.end_to_end(naive, backends, start_rate=0.5 * drain / measure.COPIES)
        print("3-4. again at each max rate, alternating", flush=True)
        measure.confirm([(hook, e2e_hook), (naive, e2e_naive)], backends)
        hook.stop()
        stopping.remove(hook)
        naive_mem = measure.naive_memory(naive)
        for size, per in naive_mem:
            print(f"  naive, {size} B body, {measure.COPIES} backends: {per:.0f} B/request")
    finally:
        for thing in reversed(stopping):
            thing.stop()
    elapsed = time.time() - started
    results = report.Results(intake, e2e_hook, e2e_naive, mem, naive_mem, elapsed)
    print(report.table(results))
    report.write(results, ROOT / "docs")
    print(f"bench: wrote docs/performance.md and docs/performance.png in {elapsed:.0f} s")
    for data in work.glob("redis-*"):
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
