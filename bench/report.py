"""The table printed at the end of ``make bench`` and docs/performance.md + .png."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.measure import COPIES, Drain, EndToEnd, Intake, Rss, Slow, paired, paired_part

NOTES = Path(__file__).resolve().parent / "NOTES.md"
"""Hand-written: what was changed for speed and what each change gained."""


@dataclass
class Results:
    intake: Intake
    hook: EndToEnd
    naive: EndToEnd
    memory: list[tuple[int, int, float, float]]
    naive_memory: list[tuple[int, float]]
    elapsed: float
    drain: Drain
    naive_drain: Drain
    rss: Rss
    slow: Slow


def _f(x: float, unit: str = "", digits: int = 0) -> str:
    return "n/a" if x != x else f"{x:,.{digits}f}{unit}"  # NaN check


def _parts(e: EndToEnd) -> str:
    return " / ".join(_f(e.med_part(k)) for k in ("app", "worker", "redis"))


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _drained(d: Drain) -> str:
    """Copies/s, and how many copies it was over when the time limit cut the drain short."""
    rate = _f(d.rate)
    return rate if d.drained else f"{rate} ({d.delivered:,} of {d.loaded:,} in {d.seconds:.0f} s)"


def rows(r: Results) -> list[tuple[str, str, str, str]]:
    """(measurement, figure, target, met?)"""
    i, h, n = r.intake, r.hook, r.naive
    hd, nd = h.med("delivered"), n.med("delivered")
    hc, nc = h.med("cpu_us"), n.med("cpu_us")
    dratio, cratio = paired(h, n, "delivered"), paired(h, n, "cpu_us")
    redis_ratio = paired_part(h, n, "redis")
    worker_ratio = paired_part(h, n, "worker")
    d, nd_ = r.drain, r.naive_drain
    drain_ratio = _ratio(d.rate, nd_.rate)

    def ok(cond: bool) -> str:
        return "yes" if cond else "**no**"

    out = [
        ("Floor (bare Flask, same gunicorn) req/s", _f(i.med(i.floor_runs, "rps")), "", ""),
        ("Floor p50 / p99 latency", f"{_f(i.med(i.floor_runs, 'p50_ms'), ' ms', 2)} / "
         f"{_f(i.med(i.floor_runs, 'p99_ms'), ' ms', 2)}", "", ""),
        ("hookfan intake req/s (2 backends, no workers)", _f(i.med(i.hookfan_runs, "rps")), "",
         ""),
        ("hookfan intake p50 / p99 latency", f"{_f(i.med(i.hookfan_runs, 'p50_ms'), ' ms', 2)} / "
         f"{_f(i.med(i.hookfan_runs, 'p99_ms'), ' ms', 2)}", "", ""),
        ("Intake ratio (hookfan / floor, median of pairs)", _f(i.ratio, "", 2), ">= 0.6",
         ok(i.ratio >= 0.6)),
        ("App CPU per accepted request: floor / hookfan",
         f"{_f(statistics.median(i.floor_cpu_us), ' us')} / "
         f"{_f(statistics.median(i.hookfan_cpu_us), ' us')}", "", ""),
        ("App CPU per accepted request, hookfan / floor (median of pairs)",
         _f(i.cpu_ratio, "x", 2), "<= 2x", ok(i.cpu_ratio <= 2)),
        (f"Intake p99 at {_f(i.half_rate)} req/s (50 % of hookfan's max): floor / hookfan",
         f"{_f(i.med(i.floor_half, 'p99_ms'), ' ms', 2)} / "
         f"{_f(i.med(i.hookfan_half, 'p99_ms'), ' ms', 2)}", "", ""),
        ("Intake p99 at that rate, hookfan / floor (median of pairs)",
         _f(i.half_p99_ratio, "x", 2), "<= 3x", ok(i.half_p99_ratio <= 3)),
        ("hookfan max sustained rate, req/s (deliveries/s)",
         f"{_f(h.med('achieved'))} ({_f(hd)})", "", ""),
        ("naive max sustained rate, req/s (deliveries/s)",
         f"{_f(n.med('achieved'))} ({_f(nd)})", "", ""),
        ("Max delivered copies/s, hookfan / naive (median of paired runs)", _f(dratio, "x", 2),
         ">= 8x", ok(dratio >= 8)),
        ("hookfan CPU per delivered copy at max rate", _f(hc, " us"), "", ""),
        ("naive CPU per delivered copy at max rate", _f(nc, " us"), "", ""),
        ("CPU us/copy at max rate by part (app / worker / Redis): hookfan",
         _parts(h), "", ""),
        ("CPU us/copy at max rate by part (app / worker / Redis): naive", _parts(n), "", ""),
        ("CPU per delivered copy (app + worker + Redis), hookfan / naive (median of paired "
         "runs)", _f(cratio, "x", 2), "<= 0.15x", ok(cratio <= 0.15)),
        ("Redis CPU per delivered copy, hookfan / naive (median of paired runs)",
         _f(redis_ratio, "x", 3), "<= 0.1x", ok(redis_ratio <= 0.1)),
        ("Worker CPU per delivered copy, hookfan / naive (median of paired runs)",
         _f(worker_ratio, "x", 3), "<= 0.05x", ok(worker_ratio <= 0.05)),
        (f"hookfan accept->delivery p50 / p99 at {_f(h.half_rate)} req/s (50 %)",
         f"{_f(h.lat_p50_ms, ' ms', 1)} / {_f(h.lat_p99_ms, ' ms', 1)}", "p99 <= 100 ms",
         ok(h.lat_p99_ms <= 100)),
        (f"naive accept->delivery p50 / p99 at {_f(n.half_rate)} req/s (50 %)",
         f"{_f(n.lat_p50_ms, ' ms', 1)} / {_f(n.lat_p99_ms, ' ms', 1)}", "", ""),
        ("CPU per copy at 50 % load, hookfan / naive",
         f"{_f(h.half_cpu_us, ' us')} / {_f(n.half_cpu_us, ' us')}", "", ""),
        (f"Drain with the intake idle, copies/s: hookfan ({d.loaded:,} copies) / naive "
         f"({nd_.loaded:,} copies)", f"{_drained(d)} / {_drained(nd_)}", "", ""),
        ("Drain CPU us/copy (worker / Redis): hookfan; naive",
         f"{_f(d.parts.get('worker', float('nan')))} / "
         f"{_f(d.parts.get('redis', float('nan')))}; "
         f"{_f(nd_.parts.get('worker', float('nan')))} / "
         f"{_f(nd_.parts.get('redis', float('nan')))}", "", ""),
        (f"Drain rate, hookfan / naive (hookfan drained {d.loaded:,} copies, naive "
         f"{nd_.loaded:,})", _f(drain_ratio, "x", 1), ">= 20x", ok(drain_ratio >= 20)),
        (f"hookfan worker RSS idle / with {r.rss.pending_end:,} copies pending for a dead "
         f"backend ({r.rss.processes} processes)",
         f"{_f(r.rss.idle_kb / 1024, ' MB', 1)} / {_f(r.rss.loaded_kb / 1024, ' MB', 1)}",
         "", ""),
        ("hookfan worker RSS with a dead backend's backlog / idle", _f(r.rss.ratio, "", 3),
         "<= 1.10", ok(r.rss.ratio <= 1.10)),
        (f"Fast backend copies/s at {_f(r.slow.offered)} req/s: alone / beside a backend "
         f"answering after {r.slow.delay * 1000:.0f} ms",
         f"{_f(r.slow.alone)} / {_f(r.slow.beside)}", "", ""),
        ("Fast backend beside the slow one / alone", _f(r.slow.ratio, "", 2), ">= 0.9",
         ok(r.slow.ratio >= 0.9)),
    ]
    for size, backends, per, target in r.memory:
        out.append((f"Redis bytes per pending request, {size // 1024} KB body, "
                    f"{backends} backend(s)", _f(per, " B"), f"<= {target:,.0f} B",
                    ok(per <= target)))
    for size, per in r.naive_memory:
        out.append((f"naive: Redis bytes per pending request, {size // 1024} KB body, "
                    f"{COPIES} backends", _f(per, " B"), "", ""))
    return out


def table(r: Results) -> str:
    data = [("measurement", "figure", "target", "met")] + rows(r)
    widths = [max(len(row[c]) for row in data) for c in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in data]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    from hookfan.devstack import redis_server_binary
    rv = subprocess.run([redis_server_binary(), "--version"], capture_output=True,
                        text=True).stdout.strip()
    return {"cores": str(os.cpu_count()), "cpu": model, "os": platform.platform(),
            "python": platform.python_version(), "wrk": wrk.strip(), "redis": rv}


def _steps(e: EndToEnd, name: str) -> list[str]:
    out = []
    for s in e.steps + e.at_max[1:]:
        label = name if s in e.steps else f"{name} (again at max)"
        out.append(f"| {label} | {s.offered:,.0f} | {s.achieved:,.0f} | {s.delivered:,.0f} | "
                   f"{s.growth:+,.0f} | {s.cpu_us:,.0f} | "
                   f"{'bounded' if s.bounded else 'growing'} |")
    return out


def markdown(r: Results, m: dict[str, str], when: str) -> str:
    head = ["| measurement | figure | target | met |", "|---|---|---|---|"]
    body = [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows(r)]
    intake_runs = [f"| {k + 1} | {f.rps:,.0f} | {f.p50_ms:.2f} / {f.p99_ms:.2f} | "
                   f"{h.rps:,.0f} | {h.p50_ms:.2f} / {h.p99_ms:.2f} | {h.rps / f.rps:.2f} |"
                   for k, (f, h) in enumerate(zip(r.intake.floor_runs, r.intake.hookfan_runs,
                                                  strict=True))]
    notes = NOTES.read_text() if NOTES.exists() else ""
    return "\n".join([
        "# Performance",
        "",
        "Generated by `make bench` (`.venv/bin/python bench/run.py`); every figure in the tables "
        "below comes from the one run described here. Do not edit by hand: change bench/ and "
        "re-run.",
        "",
        f"- **Date:** {when}",
        f"- **Machine:** {m['cores']} cores, {m['cpu']}; {m['os']}",
        f"- **Software:** Python {m['python']}; {m['redis']}; {m['wrk']}",
        "- **Command:** `make bench`",
        f"- **Duration:** {r.elapsed:.0f} s",
        "",
        "![hookfan performance](performance.png)",
        "",
        "## Results",
        "",
        *head, *body,
        "",
        "## How it was measured",
        "",
        "- **Load:** wrk, one thread, 32 connections, `POST /` with a 1,024-byte JSON body and "
        "`Host: bench.example.com`. Floor and hookfan runs alternate (4 s each, 3 rounds, after a "
        "1 s warm-up) so each pair sees the same machine noise; the ratio is the median of the "
        "per-pair ratios.",
        "- **Floor:** a bare Flask view that reads the body and answers 202, served by "
        "`IntakeServer` itself (same bind, worker count, hookfan's worker class, timeouts); "
        "only the WSGI app differs.",
        f"- **Intake:** `hookfan app` (default 4 gunicorn workers) routing to {COPIES} backends, "
        "Redis with `appendonly yes`, `appendfsync always`; no worker runs, so only intake is "
        "measured (every 202 still runs the intake's one Lua script: it writes the request and "
        "a pending copy in each backend's ready queue, and publishes a wake-up for the "
        "dispatchers; the intake writes no Celery message).",
        "- **End to end:** the same app plus `hookfan worker` (defaults: prefork, concurrency 4), "
        f"{COPIES} fast local backends (bench/backend.py, asyncio, one process each). wrk offers "
        "a rate (16 connections with think time) in 6 s steps, from half the system's own "
        "drain rate (below; for hookfan at most a quarter of its intake rate; halved while "
        "even the first step is not bounded), ×1.3 per step until "
        "the pending backlog (hookfan: copies pending, ready or in flight, across all "
        "backends, `Store.pending_count`; naive: the Celery queue plus unacked) grows by more "
        "than 10 % of the offered copies, then one bisection; the search also stops when a "
        "30 % higher offer is accepted less than 5 % faster (the intake is saturated). The "
        "best bounded step is the max rate; it is then run twice more per system, "
        "alternating hookfan and naive, and the max-rate figures are medians of those three "
        "runs (ratios, of the total CPU and of each part: medians of the pairs). "
        "Deliveries/s and CPU per copy are measured over each step after 2 s of settling. "
        "CPU is user+sys from /proc/<pid>/stat of the app master and workers, the worker main "
        "process and its children, and Redis.",
        "- **Latency at 50 %:** a paced Python sender (bench/load.py, open loop) sends at half "
        "the max accepted rate for 8 s, stamping its send time into each body; each backend "
        "records receive time minus the stamp. This is send→delivery, so it includes the "
        "intake's own answer time.",
        "- **Drain with the intake idle:** with no worker running, a backlog is stored without "
        f"HTTP. hookfan: {r.drain.loaded // COPIES:,} requests × {COPIES} fast backends "
        "through `Store.accept_batch` (the intake's own script, 500 requests per pipeline). "
        f"Naive: {r.naive_drain.loaded // COPIES:,} requests × {COPIES} backends, the same "
        "`deliver` messages its intake publishes, through its own Celery app "
        "(bench/naive/backlog.py); the naive design drains a few hundred copies/s, so "
        "100,000 would take over ten minutes. Then the worker starts, and the rate is the "
        "copies the backends received from the first delivery seen (the worker's start-up is "
        "left out) until nothing is pending, divided by that time (polled every 0.1 s; a "
        "drain still running after 120 s is cut there and its rate is over what was "
        "delivered). The ratio compares the two rates. CPU per copy over the same window is "
        "shown for the worker and Redis.",
        "- **Worker memory with a dead backend:** a fresh `hookfan worker` delivers 200 "
        "requests × 2 copies to the fast backends (so its pool children have done real "
        "work), then stays idle until six samples 0.5 s apart lie within 2 % of each other: "
        f"the idle RSS is their maximum. Then {r.rss.copies:,} requests with one copy each "
        "for a URL where nothing listens are stored through `Store.accept_batch` while the "
        f"worker runs, and the worker works on them for {r.rss.seconds:.0f} s more (every "
        "attempt is refused and retried later). The loaded RSS is the largest sample (every "
        "0.5 s) from the start of the load to the end. RSS is VmRSS from /proc/<pid>/status "
        "summed over the worker's main process and its pool children.",
        "- **Slow backend:** `fast.example.com` routes to one fast backend, "
        "`slow.example.com` to a backend that answers each copy after "
        f"{r.slow.delay * 1000:.0f} ms (bench/backend.py `--delay`). wrk offers "
        f"{r.slow.offered:,.0f} req/s (hookfan's 50 % rate above) to the fast host for 6 s, "
        "and the fast backend's copies/s are counted after 2 s of settling; then the same "
        f"again while a paced sender offers {r.slow.slow_offered:.0f} req/s to the slow host, "
        "twice what the slow backend takes at the default `--backend-concurrency` "
        f"{r.slow.cap} ({r.slow.cap / r.slow.delay:.0f} copies/s), so it keeps a backlog and "
        "all its slots busy "
        f"(it received {_f(r.slow.slow_delivered, '', 1)} copies/s). The figure is the "
        "second rate over the first.",
        "- **Naive baseline** (bench/naive/, a baseline, not hookfan): one `apply_async` per "
        "backend with the body in the message, `requests.request` per attempt, "
        "`self.retry(countdown=...)`; gunicorn with the same worker count, a Celery prefork "
        "worker with the same concurrency, its own Redis with the same AOF settings.",
        "- **Memory:** no worker running and backends unreachable, so everything stays pending; "
        "`used_memory` after N accepted requests minus before, divided by N (N = 2,000 for "
        "1 KB, 200 for 100 KB bodies), after a warm-up of the same size (4 connections, N/20 "
        "requests each, at least 5) so that Redis's client query buffers, grown once by the "
        "first large bodies, are not counted as the requests' cost.",
        "- **Targets:** issue 12 (delivery engine v2) for delivery, memory and isolation; "
        "issue 13 for the intake ratio.",
        "",
        "### Intake rounds",
        "",
        "| round | floor req/s | floor p50 / p99 ms | hookfan req/s | hookfan p50 / p99 ms | "
        "ratio |",
        "|---|---|---|---|---|---|",
        *intake_runs,
        "",
        "### End-to-end steps",
        "",
        "| system | offered req/s | accepted req/s | delivered copies/s | backlog growth /s | "
        "CPU us/copy | backlog |",
        "|---|---|---|---|---|---|---|",
        *_steps(r.hook, "hookfan"), *_steps(r.naive, "naive"),
        "",
        notes,
    ]).rstrip() + "\n"


def chart(r: Results, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    i, h, n = r.intake, r.hook, r.naive
    both, colors = ["hookfan", "naive"], ["tab:blue", "tab:orange"]
    fig, ax = plt.subplots(2, 3, figsize=(14, 7))
    ax[0][0].bar(["floor", "hookfan intake"], [i.med(i.floor_runs, "rps"),
                                               i.med(i.hookfan_runs, "rps")],
                 color=["grey", "tab:blue"])
    ax[0][0].set_title(f"Intake req/s, 32 conns, 1 KB (ratio {i.ratio:.2f})")
    ax[0][1].bar(both, [h.med("delivered"), n.med("delivered")], color=colors)
    ax[0][1].set_title(f"Max sustained deliveries/s ({paired(h, n, 'delivered'):.1f}x)")
    d, nd = r.drain, r.naive_drain
    ax[0][2].bar([f"hookfan\n{d.loaded:,} copies", f"naive\n{nd.loaded:,} copies"],
                 [d.rate, nd.rate], color=colors)
    ax[0][2].set_title(f"Drain copies/s, intake idle ({_ratio(d.rate, nd.rate):.1f}x)")
    bottom = [0.0, 0.0]
    for part, color in (("app", "tab:gray"), ("worker", "tab:purple"), ("redis", "tab:red")):
        vals = [h.med_part(part), n.med_part(part)]
        ax[1][0].bar(both, vals, bottom=bottom, color=color, label=part)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax[1][0].set_title("CPU µs per delivered copy at max rate")
    ax[1][0].legend()
    x = range(2)
    ax[1][1].bar([p - 0.2 for p in x], [h.lat_p50_ms, n.lat_p50_ms], 0.4, label="p50",
                 color="tab:green")
    ax[1][1].bar([p + 0.2 for p in x], [h.lat_p99_ms, n.lat_p99_ms], 0.4, label="p99",
                 color="tab:red")
    ax[1][1].set_xticks(list(x), both)
    ax[1][1].axhline(100, color="red", linestyle="--", label="target p99 100 ms")
    ax[1][1].set_title("Accept→delivery ms at 50 % of max rate")
    ax[1][1].legend()
    ax[1][2].bar(["idle", f"{r.rss.pending_end:,} pending\n(dead backend)"],
                 [r.rss.idle_kb / 1024, r.rss.loaded_kb / 1024], color=["grey", "tab:blue"])
    ax[1][2].axhline(1.1 * r.rss.idle_kb / 1024, color="red", linestyle="--",
                     label="target: idle + 10 %")
    ax[1][2].set_title("hookfan worker RSS, MB")
    ax[1][2].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(r: Results, docs: Path) -> None:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    docs.mkdir(exist_ok=True)
    chart(r, docs / "performance.png")
    (docs / "performance.md").write_text(markdown(r, machine(), when))
