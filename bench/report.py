"""The table printed at the end of ``make bench`` and docs/performance.md + .png."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.measure import COPIES, EndToEnd, Intake, paired

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


def _f(x: float, unit: str = "", digits: int = 0) -> str:
    return "n/a" if x != x else f"{x:,.{digits}f}{unit}"  # NaN check


def _parts(e: EndToEnd) -> str:
    return " / ".join(_f(e.med_part(k)) for k in ("app", "worker", "redis"))


def rows(r: Results) -> list[tuple[str, str, str, str]]:
    """(measurement, figure, target, met?)"""
    i, h, n = r.intake, r.hook, r.naive
    hd, nd = h.med("delivered"), n.med("delivered")
    hc, nc = h.med("cpu_us"), n.med("cpu_us")
    dratio, cratio = paired(h, n, "delivered"), paired(h, n, "cpu_us")

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
        ("Intake ratio (hookfan / floor, median of pairs)", _f(i.ratio, "", 2), ">= 0.85",
         ok(i.ratio >= 0.85)),
        ("hookfan max sustained rate, req/s (deliveries/s)",
         f"{_f(h.med('achieved'))} ({_f(hd)})", "", ""),
        ("naive max sustained rate, req/s (deliveries/s)",
         f"{_f(n.med('achieved'))} ({_f(nd)})", "", ""),
        ("Max deliveries/s, hookfan / naive (median of paired runs)", _f(dratio, "x", 2),
         ">= 2x", ok(dratio >= 2)),
        ("hookfan CPU per delivered copy at max rate", _f(hc, " us"), "<= 400 us", ok(hc <= 400)),
        ("naive CPU per delivered copy at max rate", _f(nc, " us"), "", ""),
        ("CPU us/copy at max rate by part (app / worker / Redis): hookfan",
         _parts(h), "", ""),
        ("CPU us/copy at max rate by part (app / worker / Redis): naive", _parts(n), "", ""),
        ("CPU per copy at max rate, hookfan / naive (median of paired runs)",
         _f(cratio, "x", 2), "<= 0.5x", ok(cratio <= 0.5)),
        (f"hookfan accept->delivery p50 / p99 at {_f(h.half_rate)} req/s (50 %)",
         f"{_f(h.lat_p50_ms, ' ms', 1)} / {_f(h.lat_p99_ms, ' ms', 1)}", "p99 <= 100 ms",
         ok(h.lat_p99_ms <= 100)),
        (f"naive accept->delivery p50 / p99 at {_f(n.half_rate)} req/s (50 %)",
         f"{_f(n.lat_p50_ms, ' ms', 1)} / {_f(n.lat_p99_ms, ' ms', 1)}", "", ""),
        ("CPU per copy at 50 % load, hookfan / naive",
         f"{_f(h.half_cpu_us, ' us')} / {_f(n.half_cpu_us, ' us')}", "", ""),
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
        "measured (every 202 still writes the request, its delivery records, schedule entries "
        "and task messages in one MULTI/EXEC).",
        "- **End to end:** the same app plus `hookfan worker` (defaults: prefork, concurrency 4), "
        f"{COPIES} fast local backends (bench/backend.py, asyncio, one process each). wrk offers "
        "a rate (16 connections with think time) in 6 s steps, from half the drain rate seen "
        "in warm-up, ×1.3 per step until the pending "
        "backlog (hookfan: the schedule; naive: the Celery queue plus unacked) grows by more "
        "than 10 % of the offered copies, then one bisection. The best bounded step is the max "
        "rate; it is then run twice more per system, alternating hookfan and naive, and the "
        "max-rate figures are medians of those three runs (ratios: medians of the pairs). "
        "Deliveries/s and CPU per copy are measured over each step after 2 s of settling. "
        "CPU is user+sys from /proc/<pid>/stat of the app master and workers, the worker main "
        "process and its children, and Redis.",
        "- **Latency at 50 %:** a paced Python sender (bench/load.py, open loop) sends at half "
        "the max accepted rate for 8 s, stamping its send time into each body; each backend "
        "records receive time minus the stamp. This is send→delivery, so it includes the "
        "intake's own answer time.",
        "- **Naive baseline** (bench/naive/, a baseline, not hookfan): one `apply_async` per "
        "backend with the body in the message, `requests.request` per attempt, "
        "`self.retry(countdown=...)`; gunicorn with the same worker count, a Celery prefork "
        "worker with the same concurrency, its own Redis with the same AOF settings.",
        "- **Memory:** no worker running and backends unreachable, so everything stays pending; "
        "`used_memory` after N accepted requests minus before, divided by N (N = 2,000 for "
        "1 KB, 200 for 100 KB bodies).",
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
    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    ax[0][0].bar(["floor", "hookfan intake"], [i.med(i.floor_runs, "rps"),
                                               i.med(i.hookfan_runs, "rps")],
                 color=["grey", "tab:blue"])
    ax[0][0].set_title(f"Intake req/s, 32 conns, 1 KB (ratio {i.ratio:.2f})")
    ax[0][1].bar(["hookfan", "naive"], [h.med("delivered"), n.med("delivered")],
                 color=["tab:blue", "tab:orange"])
    ax[0][1].set_title("Max sustained deliveries/s")
    ax[1][0].bar(["hookfan", "naive"], [h.med("cpu_us"), n.med("cpu_us")],
                 color=["tab:blue", "tab:orange"])
    ax[1][0].axhline(400, color="red", linestyle="--", label="target 400 us")
    ax[1][0].set_title("CPU µs per delivered copy (at max rate)")
    ax[1][0].legend()
    x = range(2)
    ax[1][1].bar([p - 0.2 for p in x], [h.lat_p50_ms, n.lat_p50_ms], 0.4, label="p50",
                 color="tab:green")
    ax[1][1].bar([p + 0.2 for p in x], [h.lat_p99_ms, n.lat_p99_ms], 0.4, label="p99",
                 color="tab:red")
    ax[1][1].set_xticks(list(x), ["hookfan", "naive"])
    ax[1][1].axhline(100, color="red", linestyle="--", label="target p99 100 ms")
    ax[1][1].set_title("Accept→delivery ms at 50 % of max rate")
    ax[1][1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(r: Results, docs: Path) -> None:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    docs.mkdir(exist_ok=True)
    chart(r, docs / "performance.png")
    (docs / "performance.md").write_text(markdown(r, machine(), when))
