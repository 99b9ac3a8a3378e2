"""Delivery latency as a webhook's sender and its backend see it: from the moment a marked
webhook is sent to the moment its copy arrives at the backend (one clock, ``time.time()``,
on both sides)."""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable

from tests.stackfixtures import raw_send
from tests.support.backends import Received
from tests.support.procs import wait_until


class Arrivals:
    """A :class:`RecordingBackend` ``respond`` hook: notes when each marked copy first arrived
    (``{"marker": ...}`` in its body) and answers 200."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, req: Received, _n: int) -> tuple[int, dict[str, str]]:
        marker = str(json.loads(req.body)["marker"])
        with self._lock:
            self.at.setdefault(marker, time.time())
        return 200, {}

    def have(self, markers: list[str]) -> bool:
        with self._lock:
            return all(m in self.at for m in markers)


def latencies(url: str, host: str, arrivals: Arrivals, tag: str, samples: int = 60,
              pace: float = 0.05, more: Callable[[], bool] | None = None,
              timeout: float = 60.0) -> list[float]:
    """Send ``samples`` marked webhooks to ``host`` one by one, ``pace`` seconds apart (a
    steady trickle, as webhooks come, not a burst), and go on while ``more()`` holds; then wait
    until every copy arrived and return each one's send start -> arrival, in seconds."""
    sent: dict[str, float] = {}
    while len(sent) < samples or (more is not None and more()):
        marker = f"{tag}{len(sent)}"
        sent[marker] = time.time()
        body = json.dumps({"marker": marker}).encode()
        assert raw_send(url, host, body).status_code == 202
        time.sleep(pace)  # the trickle's pace, not a wait for anything
    markers = list(sent)
    wait_until(lambda: arrivals.have(markers), timeout, f"{tag} copies delivered")
    return [arrivals.at[m] - sent[m] for m in markers]


def p95(values: list[float]) -> float:
    """The 95th percentile, interpolated within the values (never beyond the largest)."""
    return statistics.quantiles(values, n=20, method="inclusive")[-1]
