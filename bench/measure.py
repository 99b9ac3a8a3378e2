"""The measurements: floor vs intake, the end-to-end search for the max rate, latency and CPU
at half load, and Redis bytes per pending request. Each returns plain figures."""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field

from bench import load
from bench.procs import Backends, Hookfan, System

COPIES = 2
"""Backends per request in the intake and end-to-end measurements."""


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def wait_drained(system: System, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if system.backlog() == 0:
            return True
        time.sleep(0.2)
    return False


@dataclass
class Step:
    """One end-to-end step at an offered rate."""

    offered: float
    achieved: float
    """Accepted requests/s (wrk's figure)."""
    delivered: float
    """Copies delivered per second while the load ran (after the settle time)."""
    growth: float
    """Backlog growth in copies/s over the measured window."""
    cpu_us: float
    """CPU microseconds per delivered copy in the window."""
    bounded: bool
    errors: int = 0
    parts: dict[str, float] = field(default_factory=dict)
    """CPU microseconds per delivered copy by component: app, worker, redis."""


def e2e_step(system: System, backends: Backends, rate: float, seconds: float = 6.0,
             settle: float = 2.0) -> Step:
    """Offer ``rate`` requests/s with wrk and watch the backlog: bounded when it grows by less
    than 10 % of the offered copies (plus a little slack for what is in flight)."""
    samples: list[tuple[float, int, int, dict[str, float]]] = []
    stop = threading.Event()

    def watch() -> None:
        t0 = time.monotonic()
        mark = t0 + settle
        while not stop.is_set():
            now = time.monotonic()
            if now >= mark:
                samples.append((now, system.backlog(), backends.count(), system.cpu_parts()))
                mark += 0.5
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        res = load.run_wrk(f"http://127.0.0.1:{system.port}/", seconds, connections=16,
                           rate=rate)
    finally:
        stop.set()
        watcher.join()
    (t0, b0, n0, c0), (t1, b1, n1, c1) = samples[0], samples[-1]
    span = t1 - t0
    growth = (b1 - b0) / span
    delivered = (n1 - n0) / span
    bounded = (b1 - b0) < 0.1 * res.rps * COPIES * span + 20 * COPIES
    parts = {k: (c1[k] - c0[k]) / max(1, n1 - n0) * 1e6 for k in c0}
    return Step(rate, res.rps, delivered, growth, sum(parts.values()), bounded, res.errors,
                parts)


@dataclass
class EndToEnd:
    steps: list[Step] = field(default_factory=list)
    best: Step | None = None
    half_rate: float = 0.0
    half_sent: int = 0
    half_accepted: int = 0
    lat_p50_ms: float = float("nan")
    lat_p99_ms: float = float("nan")
    half_cpu_us: float = float("nan")
    half_delivered: int = 0
    at_max: list[Step] = field(default_factory=list)
    """The best search step plus the confirmation runs at the same offered rate."""

    def med(self, attr: str) -> float:
        vals = [getattr(st, attr) for st in self.at_max]
        return statistics.median(vals) if vals else float("nan")

    def med_part(self, key: str) -> float:
        vals = [st.parts[key] for st in self.at_max if key in st.parts]
        return statistics.median(vals) if vals else float("nan")


def paired(a: EndToEnd, b: EndToEnd, attr: str) -> float:
    """Median over runs i of a.at_max[i].attr / b.at_max[i].attr: ratios of runs made close
    together in time, so both sides saw similar machine noise."""
    ratios = [getattr(x, attr) / getattr(y, attr)
              for x, y in zip(a.at_max, b.at_max, strict=False) if getattr(y, attr)]
    return statistics.median(ratios) if ratios else float("nan")


def confirm(systems: list[tuple[System, EndToEnd]], backends: Backends, rounds: int = 2,
            log: callable = print) -> None:  # type: ignore[valid-type]
    """Re-run each system's best step ``rounds`` times, alternating between the systems, so
    the max-rate figures are medians and the ratios come from neighbouring runs."""
    for _ in range(rounds):
        for system, e in systems:
            if e.best is None:
                continue
            step = e2e_step(system, backends, e.best.offered)
            e.at_max.append(step)
            log(f"  {system.name} again at {e.best.offered:.0f}/s: delivered "
                f"{step.delivered:.0f} copies/s, backlog {step.growth:+.0f}/s, "
                f"{step.cpu_us:.0f} us CPU/copy")
            wait_drained(system)


def end_to_end(system: System, backends: Backends, start_rate: float,
               log: callable = print) -> EndToEnd:  # type: ignore[valid-type]
    """Step the offered rate up by 1.3x from ``start_rate`` until the backlog stops being
    bounded, then bisect once; the best bounded step is the max rate. Then half that rate,
    paced from Python with stamped bodies, for latency and CPU per copy."""
    out = EndToEnd()
    rate, bad = start_rate, None
    for _ in range(6):
        step = _step(system, backends, rate, out, log)
        if not step.bounded:
            bad = rate
            break
        rate *= 1.3
    if bad is not None and out.best is not None:
        _step(system, backends, (out.best.offered + bad) / 2, out, log)
    if out.best is None:
        return out
    out.at_max.append(out.best)
    out.half_rate = out.best.achieved / 2
    backends.reset()
    c0 = system.cpu()
    out.half_sent, out.half_accepted = load.paced(system.port, out.half_rate, 8.0)
    wait_drained(system, 10.0)
    c1 = system.cpu()
    lat = backends.latencies()
    out.half_delivered = len(lat)
    out.lat_p50_ms, out.lat_p99_ms = pct(lat, 50) * 1e3, pct(lat, 99) * 1e3
    out.half_cpu_us = (c1 - c0) / max(1, backends.count()) * 1e6
    log(f"  {system.name} half load {out.half_rate:.0f}/s: p50 {out.lat_p50_ms:.1f} ms, "
        f"p99 {out.lat_p99_ms:.1f} ms, {out.half_cpu_us:.0f} us CPU/copy")
    return out


def _step(system: System, backends: Backends, rate: float, out: EndToEnd, log) -> Step:  # type: ignore[no-untyped-def]
    step = e2e_step(system, backends, rate)
    out.steps.append(step)
    log(f"  {system.name} offered {rate:.0f}/s: accepted {step.achieved:.0f}/s, delivered "
        f"{step.delivered:.0f} copies/s, backlog {step.growth:+.0f}/s, "
        f"{step.cpu_us:.0f} us CPU/copy -> {'bounded' if step.bounded else 'GROWING'}")
    if step.bounded and (out.best is None or step.delivered > out.best.delivered):
        out.best = step
    if not wait_drained(system):
        log(f"  {system.name}: backlog did not drain within 30 s")
    return step


def warm_up(system: System, backends: Backends, requests: int = 150) -> float:
    """Wait until a copy reaches the backends (workers up and consuming), then send a burst of
    ``requests`` and time its drain. Returns that drain rate in copies/s (a first estimate of
    capacity, with the intake idle) and zeroes the backend counters."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        load.send_many(system.port, 1, load.json_body(1024))
        time.sleep(0.5)
        if backends.count() > 0:
            break
    else:
        raise RuntimeError(f"{system.name}: no copy delivered within 60 s of start")
    wait_drained(system)
    load.send_many(system.port, requests, load.json_body(1024))
    n0, t0 = backends.count(), time.monotonic()
    wait_drained(system, 60)
    rate = (backends.count() - n0) / (time.monotonic() - t0)
    backends.reset()
    return rate


@dataclass
class Intake:
    floor_runs: list[load.WrkResult]
    hookfan_runs: list[load.WrkResult]

    @staticmethod
    def med(runs: list[load.WrkResult], attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in runs)

    @property
    def ratio(self) -> float:
        return statistics.median(h.rps / f.rps for f, h in
                                 zip(self.floor_runs, self.hookfan_runs, strict=True))


def intake(floor_port: int, hookfan: Hookfan, rounds: int = 3, seconds: float = 4.0,
           log: callable = print) -> Intake:  # type: ignore[valid-type]
    """Alternate floor and hookfan runs so both see the same machine noise; pair them."""
    f_url, h_url = f"http://127.0.0.1:{floor_port}/", f"http://127.0.0.1:{hookfan.port}/"
    load.run_wrk(f_url, 1)
    load.run_wrk(h_url, 1)
    floor_runs, hook_runs = [], []
    for i in range(rounds):
        hookfan.clear()
        floor_runs.append(load.run_wrk(f_url, seconds))
        hook_runs.append(load.run_wrk(h_url, seconds))
        log(f"  round {i + 1}: floor {floor_runs[-1].rps:.0f}/s, hookfan "
            f"{hook_runs[-1].rps:.0f}/s (errors {floor_runs[-1].errors}/{hook_runs[-1].errors})")
    hookfan.clear()
    return Intake(floor_runs, hook_runs)


def pending_bytes(system: System, size: int, count: int, host: str = load.HOST) -> float:
    """Redis ``used_memory`` growth per accepted request while nothing consumes."""
    before = system.redis.used_memory()
    ok = load.send_many(system.port, count, load.json_body(size), host=host)
    return (system.redis.used_memory() - before) / max(1, ok)


def naive_memory(naive: System) -> list[tuple[int, float]]:
    """(body bytes, bytes per pending request) for the baseline with its worker stopped."""
    assert naive.worker is not None
    naive.worker.stop()
    naive.worker = None
    out = []
    for size, count in ((1024, 2000), (100 * 1024, 200)):
        naive.redis.client.delete("celery", "unacked", "unacked_index")
        out.append((size, pending_bytes(naive, size, count)))
    return out


def memory(hookfan: Hookfan, dead_urls: list[str]) -> list[tuple[int, int, float, float]]:
    """(body bytes, backends, bytes per pending request, target) with no workers running."""
    out = []
    for backends in (1, 5):
        host = f"mem{backends}.example.com"
        hookfan.route(host, dead_urls[:backends])
    time.sleep(0.6)  # the app's route cache polls every 250 ms
    for size, count in ((1024, 2000), (100 * 1024, 200)):
        for backends in (1, 5):
            hookfan.clear()
            per = pending_bytes(hookfan, size, count, f"mem{backends}.example.com")
            out.append((size, backends, per, size + 1024 + 300 * backends))
    hookfan.clear()
    return out
