"""Load generators: wrk (fixed concurrency, optionally throttled) and a paced Python sender
that stamps the send time into each body so backends can measure accept->delivery latency."""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HOST = "bench.example.com"
"""The Host every bench request carries; routed to the bench backends."""

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def json_body(size: int, stamp: float | None = None) -> bytes:
    """A JSON object of exactly ``size`` bytes; with ``stamp`` it starts ``{"ts":<stamp>,``."""
    head = b'{"ts":%.6f,"pad":"' % stamp if stamp is not None else b'{"pad":"'
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    """Non-2xx answers plus socket errors."""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _lua(body: bytes, host: str, delay_ms: float | None) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{body.decode()}]==]",
             f'wrk.headers["Host"] = "{host}"',
             'wrk.headers["Content-Type"] = "application/json"']
    if delay_ms is not None:
        # Think time per connection so N connections offer about N * 1000 / delay requests/s;
        # uniform jitter keeps the connections from marching in step.
        lo, hi = max(1, int(delay_ms * 0.5)), max(2, int(delay_ms * 1.5))
        lines.append(f"function delay() return math.random({lo}, {hi}) end")
    return "\n".join(lines) + "\n"


def _duration(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def run_wrk(url: str, seconds: float, connections: int = 32, body_size: int = 1024,
            rate: float | None = None, host: str = HOST) -> WrkResult:
    """wrk -t1 for ``seconds``; with ``rate``, each connection pauses so the total offered is
    about ``rate`` requests/s (closed loop: the achieved rate is what ``rps`` reports)."""
    delay = 1000.0 * connections / rate if rate else None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_lua(json_body(body_size), host, delay))
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency", "-s", fh.name,
             url], capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    finally:
        Path(fh.name).unlink()
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.M))
    errs = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses:|connect|read|write|"
                                          r"timeout) (\d+)", out))
    return WrkResult(rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
                     p50_ms=_duration(pct.get("50", "")) * 1e3,
                     p99_ms=_duration(pct.get("99", "")) * 1e3,
                     requests=int(re.search(r"(\d+) requests in", out).group(1)), errors=errs)


def send_many(port: int, count: int, body: bytes, host: str = HOST) -> int:
    """``count`` POSTs on one keep-alive connection; returns how many got 202."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    ok = 0
    try:
        for _ in range(count):
            conn.request("POST", "/", body=body, headers={"Host": host,
                                                          "Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            ok += resp.status == 202
    finally:
        conn.close()
    return ok


def paced(port: int, rate: float, seconds: float, body_size: int = 1024, threads: int = 8,
          host: str = HOST) -> tuple[int, int]:
    """Open-loop: send at ``rate`` requests/s for ``seconds``, each body stamped with its send
    time. Returns (sent, accepted)."""
    start = time.time() + 0.05
    total = int(rate * seconds)
    counts = [[0, 0] for _ in range(threads)]

    def sender(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for n in range(i, total, threads):
            wait = start + n / rate - time.time()
            if wait > 0:
                time.sleep(wait)
            try:
                conn.request("POST", "/", body=json_body(body_size, time.time()),
                             headers={"Host": host, "Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                counts[i][1] += resp.status == 202
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            counts[i][0] += 1
        conn.close()

    workers = [threading.Thread(target=sender, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return sum(c[0] for c in counts), sum(c[1] for c in counts)
