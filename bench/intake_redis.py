"""Redis CPU per copy spent on the intake alone, at given rates, with and without fsync.

    .venv/bin/python -m bench.intake_redis [RATE ...]    (default: 600 300 and wrk's max)

No worker runs: every figure is what the intake's one script per request (request, two copies,
the wake-up) costs Redis, divided by the copies it stores (2 backends), with ``appendfsync
always`` (hookfan's setting) and ``appendfsync no`` (the same writes without the fsync of each
event-loop pass). Used in bench/NOTES.md ("Redis per copy") to show how much of the 0.1x target
the intake alone takes at the rate where hookfan's end-to-end maximum lies.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import load
from bench.procs import Backends, Hookfan

ROUNDS = 3
SECONDS = 4.0


def per_copy(hook: Hookfan, rate: float | None) -> tuple[float, float]:
    """(median Redis CPU us per stored copy over ROUNDS runs, accepted req/s of the last)."""
    runs, rps = [], 0.0
    for _ in range(ROUNDS):
        hook.clear()
        before = hook.redis.proc.cpu()
        res = load.run_wrk(f"http://127.0.0.1:{hook.port}/", SECONDS, rate=rate)
        runs.append((hook.redis.proc.cpu() - before) / max(1, res.requests) / 2 * 1e6)
        rps = res.rps
    return statistics.median(runs), rps


def main(argv: list[str]) -> int:
    rates: list[float | None] = [float(a) for a in argv] or [600.0, 300.0, None]
    work = Path(tempfile.mkdtemp(prefix="hookfan-intake-redis-"))
    logdir = work / "logs"
    logdir.mkdir()
    backends = Backends(2, logdir)
    try:
        for fsync in ("always", "no"):
            hook = Hookfan(work / fsync, logdir, appendfsync=fsync)
            try:
                hook.route(load.HOST, backends.urls)
                time.sleep(1.0)
                load.run_wrk(f"http://127.0.0.1:{hook.port}/", 1)
                for rate in rates:
                    us, rps = per_copy(hook, rate)
                    offered = "max" if rate is None else f"{rate:.0f}/s"
                    print(f"appendfsync {fsync:6} offered {offered:>7} accepted {rps:5.0f}/s: "
                          f"Redis {us:4.0f} us per copy (intake only)", flush=True)
            finally:
                hook.stop()
    finally:
        backends.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
