"""The measurements: floor vs intake, the end-to-end search for the max rate, latency and CPU
at half load, Redis bytes per pending request, the drain of a backlog with the intake idle,
the worker's memory with a large backlog for a dead backend, and a fast backend's rate beside
a slow one. Each returns plain figures."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import load
from bench.procs import Backends, Hookfan, System
from hookfan.routes import Backend

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


def paired_part(a: EndToEnd, b: EndToEnd, key: str) -> float:
    """As :func:`paired`, for one component's CPU per copy (``app``, ``worker``, ``redis``)."""
    ratios = [x.parts[key] / y.parts[key] for x, y in zip(a.at_max, b.at_max, strict=False)
              if key in x.parts and y.parts.get(key)]
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


SEARCH_STEPS = 12
"""Most steps of the max-rate search (x1.3 each: a 23-fold range from the start). It used to
stop after 6: on a faster machine hookfan was still bounded at its sixth step, and its max was
whatever that step offered."""


def end_to_end(system: System, backends: Backends, start_rate: float,
               log: callable = print) -> EndToEnd:  # type: ignore[valid-type]
    """Step the offered rate up by 1.3x from ``start_rate`` (halved while even the first offer
    is not bounded) until the backlog stops being bounded or the intake is saturated, then
    bisect once; the best bounded step is the max rate. Then half that rate,
    paced from Python with stamped bodies, for latency and CPU per copy."""
    out = EndToEnd()
    rate, bad = max(1.0, start_rate), None
    for _ in range(SEARCH_STEPS):
        step = _step(system, backends, rate, out, log)
        if not step.bounded and out.best is None and rate > 2:
            rate /= 2  # the first offer was already too much: start lower
            continue
        if not step.bounded:
            bad = rate
            break
        if len(out.steps) > 1 and step.achieved < 1.05 * out.steps[-2].achieved:
            # 30 % more offered, under 5 % more accepted: the intake is saturated, so a higher
            # offer measures nothing new about delivery.
            log(f"  {system.name}: intake saturated, the search stops here")
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
    floor_cpu_us: list[float] = field(default_factory=list)
    """CPU per answered request of the floor's gunicorn (master and workers), per run."""
    hookfan_cpu_us: list[float] = field(default_factory=list)
    """CPU per answered request of ``hookfan app`` (master and workers), per run."""
    half_rate: float = float("nan")
    """Half of hookfan's own max rate: where both are offered the same load for latency."""
    floor_half: list[load.WrkResult] = field(default_factory=list)
    hookfan_half: list[load.WrkResult] = field(default_factory=list)

    @staticmethod
    def med(runs: list[load.WrkResult], attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in runs)

    @property
    def ratio(self) -> float:
        return statistics.median(h.rps / f.rps for f, h in
                                 zip(self.floor_runs, self.hookfan_runs, strict=True))

    @property
    def cpu_ratio(self) -> float:
        """App CPU per accepted request, hookfan / floor: median of the paired runs."""
        pairs = zip(self.floor_cpu_us, self.hookfan_cpu_us, strict=True)
        return statistics.median(h / f for f, h in pairs) if self.floor_cpu_us else float("nan")

    @property
    def half_p99_ratio(self) -> float:
        """p99 at half of hookfan's max rate, hookfan / floor: median of the paired runs."""
        pairs = zip(self.floor_half, self.hookfan_half, strict=True)
        return (statistics.median(h.p99_ms / f.p99_ms for f, h in pairs) if self.floor_half
                else float("nan"))


def intake(floor_port: int, hookfan: Hookfan, floor_cpu: Callable[[], float],
           rounds: int = 3, seconds: float = 4.0,
           log: callable = print) -> Intake:  # type: ignore[valid-type]
    """Alternate floor and hookfan runs so both see the same machine noise; pair them. Then
    offer both half of hookfan's max rate, for the latency at a load both can carry."""
    f_url, h_url = f"http://127.0.0.1:{floor_port}/", f"http://127.0.0.1:{hookfan.port}/"
    load.run_wrk(f_url, 1)
    load.run_wrk(h_url, 1)
    out = Intake([], [])

    def timed(url: str, cpu: Callable[[], float], rate: float | None = None
              ) -> tuple[load.WrkResult, float]:
        before = cpu()
        res = load.run_wrk(url, seconds, rate=rate)
        return res, (cpu() - before) / max(1, res.requests) * 1e6

    for i in range(rounds):
        hookfan.clear()
        f, fc = timed(f_url, floor_cpu)
        h, hc = timed(h_url, hookfan.app.cpu)
        out.floor_runs.append(f)
        out.hookfan_runs.append(h)
        out.floor_cpu_us.append(fc)
        out.hookfan_cpu_us.append(hc)
        log(f"  round {i + 1}: floor {f.rps:.0f}/s ({fc:.0f} us CPU/request), hookfan "
            f"{h.rps:.0f}/s ({hc:.0f} us) (errors {f.errors}/{h.errors})")
    out.half_rate = 0.5 * out.med(out.hookfan_runs, "rps")
    for i in range(rounds):
        hookfan.clear()
        out.floor_half.append(load.run_wrk(f_url, seconds, rate=out.half_rate))
        out.hookfan_half.append(load.run_wrk(h_url, seconds, rate=out.half_rate))
        log(f"  at {out.half_rate:.0f} req/s, round {i + 1}: p99 floor "
            f"{out.floor_half[-1].p99_ms:.2f} ms, hookfan {out.hookfan_half[-1].p99_ms:.2f} ms")
    hookfan.clear()
    return out


def pending_bytes(system: System, size: int, count: int, host: str = load.HOST) -> float:
    """Redis ``used_memory`` growth per accepted request while nothing consumes, after a
    warm-up of the same size on a few connections: the first large bodies grow the query
    buffers of the app's Redis connections once (~800 B per request over 200 100 KB
    requests), which is no cost of a pending request."""
    for _ in range(4):
        load.send_many(system.port, max(5, count // 20), load.json_body(size), host=host)
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


@dataclass
class Drain:
    """A backlog stored while no worker ran, then drained with the intake idle."""

    loaded: int
    """Copies pending when the worker started."""
    load_seconds: float
    """How long writing the backlog took (not part of the rate)."""
    delivered: int = 0
    """Copies the backends received between the first delivery seen and the end."""
    seconds: float = float("nan")
    """From the first delivery seen to backlog 0 (or to the time limit)."""
    drained: bool = False
    """False when the time limit came first: the rate is then over what was delivered."""
    parts: dict[str, float] = field(default_factory=dict)
    """CPU microseconds per delivered copy over the same window: app, worker, redis."""

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else float("nan")


def drain(system: System, backends: Backends, fill: Callable[[], int], limit: float = 120.0,
          log: callable = print) -> Drain:  # type: ignore[valid-type]
    """With the worker stopped and the backlog empty, ``fill`` writes a backlog (returns its
    copies); then start the worker and time from the first copy a backend receives until
    nothing is pending. Starting the clock at the first delivery leaves the worker's start-up
    out. Leaves the worker running and the backlog empty (cleared after ``limit`` seconds)."""
    assert system.worker is None, "drain needs the worker stopped"
    system.clear()
    backends.reset()
    t0 = time.monotonic()
    loaded = fill()
    out = Drain(loaded, time.monotonic() - t0)
    log(f"  {system.name}: {loaded:,} copies stored in {out.load_seconds:.1f} s "
        f"(pending {system.backlog():,}); starting the worker")
    system.start_worker()
    deadline = time.monotonic() + 60
    while (n0 := backends.count()) == 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{system.name}: no copy delivered within 60 s of start")
        time.sleep(0.02)
    t0, c0 = time.monotonic(), system.cpu_parts()
    deadline = t0 + limit
    while True:
        time.sleep(0.1)
        n1 = backends.count()
        if n1 >= loaded or system.backlog() == 0:
            out.drained = True
            break
        if time.monotonic() > deadline:
            break
    t1, c1 = time.monotonic(), system.cpu_parts()
    out.delivered, out.seconds = n1 - n0, t1 - t0
    out.parts = {k: (c1[k] - c0[k]) / max(1, out.delivered) * 1e6 for k in c0}
    log(f"  {system.name} drained {out.delivered:,} copies in {out.seconds:.1f} s: "
        f"{out.rate:,.0f} copies/s" + ("" if out.drained else
                                        f" (time limit {limit:.0f} s reached; cleared)"))
    if not out.drained:
        system.stop_worker()
        system.clear()
        system.start_worker()
    backends.reset()
    return out


@dataclass
class Rss:
    """The worker's resident memory idle, then with a large backlog for a dead backend."""

    idle_kb: int
    loaded_kb: int
    processes: int
    """Processes summed (the worker's main process and its pool children)."""
    copies: int
    """Copies stored for the dead backend."""
    seconds: float
    """How long the worker worked on them after they were all stored."""
    pending_end: int
    """Copies still pending at the end (all of them, as nothing can be delivered)."""

    @property
    def ratio(self) -> float:
        return self.loaded_kb / self.idle_kb if self.idle_kb else float("nan")


def _settled_rss(system: System, window: int = 6, limit: float = 40.0) -> tuple[int, int]:
    """Sample the worker's RSS every 0.5 s until the last ``window`` samples lie within 2 % of
    each other (or ``limit`` seconds); returns (their maximum in kB, process count)."""
    assert system.worker is not None
    samples: list[int] = []
    deadline = time.monotonic() + limit
    while True:
        kb, procs = system.worker.rss_kb()
        samples.append(kb)
        last = samples[-window:]
        settled = len(last) == window and max(last) <= 1.02 * min(last)
        if settled or time.monotonic() > deadline:
            return max(last), procs
        time.sleep(0.5)


def worker_rss(hook: Hookfan, backends: Backends, live: list[Backend], dead: Backend,
               copies: int = 100_000, work: float = 20.0,
               log: callable = print) -> Rss:  # type: ignore[valid-type]
    """Start a fresh worker, let it deliver a few hundred copies to ``live`` backends (so its
    pool children have imported and allocated what a working worker has) and settle: the idle
    RSS. Then store ``copies`` requests for ``dead`` (nothing listens there; every attempt
    fails and is retried later) and let the worker work on them for ``work`` seconds: the
    loaded RSS is the largest sample from the start of the load to the end. Leaves the worker
    stopped and Redis cleared."""
    assert hook.worker is None, "worker_rss starts its own worker"
    hook.clear()
    backends.reset()
    hook.start_worker()
    warm = hook.bulk_load(200, live)
    deadline = time.monotonic() + 60
    while backends.count() < warm and time.monotonic() < deadline:
        time.sleep(0.2)
    wait_drained(hook)
    idle, procs = _settled_rss(hook)
    log(f"  hookfan worker idle: {idle / 1024:.1f} MB in {procs} processes")
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        assert hook.worker is not None
        while not stop.wait(0.5):
            samples.append(hook.worker.rss_kb()[0])

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        t0 = time.monotonic()
        hook.bulk_load(copies, [dead])
        log(f"  {copies:,} copies for a dead backend stored in {time.monotonic() - t0:.1f} s; "
            f"the worker works on them for {work:.0f} s")
        time.sleep(work)
    finally:
        stop.set()
        sampler.join()
    out = Rss(idle, max(samples, default=0), procs, copies, work, hook.backlog())
    log(f"  hookfan worker with {out.pending_end:,} copies pending: {out.loaded_kb / 1024:.1f} MB "
        f"(x{out.ratio:.2f} of idle)")
    hook.stop_worker()
    hook.clear()
    backends.reset()
    return out


@dataclass
class Slow:
    """One fast backend's delivered copies/s alone, then beside a slow backend."""

    offered: float
    """req/s offered to the fast backend's host (wrk), in both phases."""
    slow_offered: float
    """req/s offered to the slow backend's host in the second phase (paced sender)."""
    delay: float
    """Seconds the slow backend takes to answer each copy."""
    cap: int
    """The worker's ``--backend-concurrency``: at most ``cap / delay`` copies/s reach it."""
    alone: float = float("nan")
    beside: float = float("nan")
    slow_delivered: float = float("nan")
    """Copies/s the slow backend received in the second phase."""

    @property
    def ratio(self) -> float:
        return self.beside / self.alone if self.alone else float("nan")


def _window(count: Callable[[], int], run: Callable[[], object],
            settle: float = 2.0) -> float:
    """Copies/s by ``count`` while ``run`` runs, from ``settle`` seconds after it started."""
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def watch() -> None:
        if not stop.wait(settle):
            while not stop.is_set():
                samples.append((time.monotonic(), count()))
                stop.wait(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run()
    finally:
        stop.set()
        watcher.join()
    if len(samples) < 2:
        return float("nan")
    (t0, n0), (t1, n1) = samples[0], samples[-1]
    return (n1 - n0) / (t1 - t0)


def slow_backend(hook: Hookfan, backends: Backends, slow: Backends, rate: float,
                 delay: float, cap: int, seconds: float = 6.0,
                 log: callable = print) -> Slow:  # type: ignore[valid-type]
    """Route ``fast.example.com`` to the first of ``backends`` and ``slow.example.com`` to
    ``slow`` (answering after ``delay`` s). Offer ``rate`` req/s to the fast host with wrk and
    count what the fast backend receives; then again while a paced sender offers the slow host
    twice what the slow backend can take at the backend ``cap``, so it keeps a backlog and
    every slot the cap allows for it busy. Copies left for the slow backend stay pending (the
    caller clears them)."""
    fast_host, slow_host = "fast.example.com", "slow.example.com"
    hook.route(fast_host, backends.urls[:1])
    hook.route(slow_host, slow.urls)
    time.sleep(0.6)  # the app's route cache polls every 250 ms
    slow_rate = 2 * max(1, cap) / delay
    out = Slow(rate, slow_rate, delay, cap)
    port = backends.ports[:1]
    url = f"http://127.0.0.1:{hook.port}/"

    def fast_load() -> object:
        return load.run_wrk(url, seconds, connections=16, rate=rate, host=fast_host)

    out.alone = _window(lambda: backends.count(port), fast_load)
    wait_drained(hook)
    log(f"  fast backend alone at {rate:.0f} req/s: {out.alone:.0f} copies/s")
    slow.reset()
    sender = threading.Thread(target=load.paced,
                              args=(hook.port, slow_rate, seconds + 1.0, 1024, 8, slow_host))
    sender.start()
    try:
        time.sleep(1.0)  # let the slow backend's backlog and busy slots build first
        s0, t0 = slow.count(), time.monotonic()
        out.beside = _window(lambda: backends.count(port), fast_load)
        out.slow_delivered = (slow.count() - s0) / (time.monotonic() - t0)
    finally:
        sender.join()
    log(f"  fast backend beside one answering after {delay * 1000:.0f} ms: {out.beside:.0f} "
        f"copies/s (x{out.ratio:.2f}); the slow one got {out.slow_delivered:.1f} copies/s")
    return out
