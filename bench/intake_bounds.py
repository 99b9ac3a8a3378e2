"""What bounds the intake's floor ratio (issue 13): the bench's intake step with the durable
write taken apart.

    .venv/bin/python -m bench.intake_bounds [ROUNDS]    (default 3)

Runs the intake step of ``make bench`` (wrk -c32 against the bare-Flask floor and hookfan,
alternating, median of the pairs) for three hookfan variants on the same machine:

- ``durable``: hookfan as shipped (the accept script, ``appendfsync always``);
- ``no fsync``: the same writes with ``appendfsync no`` (``--allow-unsafe-redis``);
- ``round trip only``: every accept replaced by ``GET`` of a missing key sent through the
  same group commit (one real Redis round trip per batch, nothing written, nothing synced;
  a nil reply reads as stored). An experiment: nothing it answers is stored.

The last variant is the most the app can reach with one Redis round trip per batch of
requests; the gap between it and ``durable`` is what the write itself (Redis's script, AOF
write and fsync, on the same two cores as the app) costs. See bench/NOTES.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from bench import load, measure
from bench.procs import Backends, Hookfan, Proc, py, wait_port
from hookfan.devstack import free_port


class RoundTripOnly(Hookfan):
    """``hookfan app`` with each accept replaced by a GET (see the module's docstring)."""

    def _cli(self, *args: str) -> list[str]:
        cmd = super()._cli(*args)
        if args and args[0] == "app":
            return py("-m", "bench.intake_bounds", "--serve", *cmd[cmd.index("hookfan.cli") + 1:])
        return cmd


def serve_round_trip_only(argv: list[str]) -> None:
    import hookfan.app.commit as commit
    from hookfan.cli import main

    original = commit._Call.__init__

    def get_instead(self: commit._Call, _args: tuple[object, ...]) -> None:
        original(self, ("GET", "hookfan:bounds:none"))

    commit._Call.__init__ = get_instead  # type: ignore[method-assign]
    sys.exit(main(argv))


def run(variant: str, rounds: int) -> measure.Intake:
    work = Path(tempfile.mkdtemp(prefix=f"hookfan-bounds-{variant.replace(' ', '-')}-"))
    logdir = work / "logs"
    logdir.mkdir()
    backends = Backends(measure.COPIES, logdir)
    floor_port = free_port()
    floor = Proc("floor", py("-m", "bench.floor", f"127.0.0.1:{floor_port}"), logdir)
    make = RoundTripOnly if variant == "round trip only" else Hookfan
    hook = make(work, logdir, "no" if variant == "no fsync" else "always")
    try:
        hook.route(load.HOST, backends.urls)
        wait_port(floor_port)
        time.sleep(1.0)
        return measure.intake(floor_port, hook, floor.cpu, rounds=rounds,
                              log=lambda line: print(f"  {variant}:{line}", flush=True))
    finally:
        floor.stop()
        hook.stop()
        backends.stop()


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve"]:
        serve_round_trip_only(argv[1:])
    rounds = int(argv[0]) if argv else 3
    results = {v: run(v, rounds) for v in ("durable", "no fsync", "round trip only")}
    print(f"\n{'hookfan variant':<18} {'req/s vs floor':>15} {'app CPU vs floor':>17} "
          f"{'hookfan req/s':>14} {'floor req/s':>12}")
    for variant, r in results.items():
        print(f"{variant:<18} {r.ratio:>14.2f}x {r.cpu_ratio:>16.2f}x "
              f"{r.med(r.hookfan_runs, 'rps'):>14,.0f} {r.med(r.floor_runs, 'rps'):>12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
