"""Traffic and bookkeeping for the chaos scenarios: a sender of marked webhooks and a tally of
what every backend received against what the senders were promised (202)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.stackfixtures import raw_send
from tests.support.backends import Received, RecordingBackend


def marker_of(got: Received) -> str:
    return str(json.loads(got.body)["marker"])


@dataclass
class Sender:
    """Sends webhooks, each with a unique marker in its body, from ``threads`` threads until
    stopped. A request cut off before its answer is sent again (same marker) when
    ``retry_cut``, as a provider would; 503s are not retried (the marker is simply not owed)."""

    url: str
    host: str
    threads: int = 2
    pace: float = 0.1
    """Pause between one thread's requests: keeps the load steady rather than maximal."""
    retry_cut: bool = True
    prefix: str = "m"
    accepted: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    cut: int = 0
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Sender:
        for t in range(self.threads):
            th = threading.Thread(target=self._run, args=(t,), daemon=True)
            th.start()
            self._workers.append(th)
        return self

    def stop(self) -> Sender:
        self._stop.set()
        for th in self._workers:
            th.join(60)
        return self

    def wait_accepted(self, count: int, timeout: float = 60.0) -> None:
        from tests.support.procs import wait_until
        wait_until(lambda: len(self.accepted) >= count, timeout, f"{count} webhooks accepted")

    def _run(self, thread: int) -> None:
        n = 0
        while not self._stop.is_set():
            self.send_one(f"{self.prefix}{thread}-{n}")
            n += 1
            self._stop.wait(self.pace)

    def send_one(self, marker: str) -> int | None:
        body = json.dumps({"marker": marker, "pad": "x" * 200}).encode()
        with self._lock:
            self.sent += 1
        for _ in range(5 if self.retry_cut else 1):
            try:
                status = raw_send(self.url, self.host, body, timeout=20).status_code
            except (OSError, http.client.HTTPException):  # cut mid-answer (head, no body)
                with self._lock:
                    self.cut += 1
                time.sleep(0.1)  # a provider backs off before sending again
                continue
            with self._lock:
                self.statuses[status] += 1
                if status == 202:
                    self.accepted.add(marker)
            return status
        return None


@dataclass
class Tally:
    """Per-backend figures for one scenario."""

    scenario: str
    backend: str
    sent: int
    accepted: int
    delivered: int
    lost: int
    duplicates: int
    seconds: float

    def row(self) -> str:
        return (f"| {self.scenario} | {self.backend} | {self.sent} | {self.accepted} | "
                f"{self.delivered} | {self.lost} | {self.duplicates} | {self.seconds:.0f} s |")


def wait_delivered(backends: Iterable[RecordingBackend], owed: set[str],
                   timeout: float = 150.0) -> None:
    """Wait until every backend holds a copy of every owed marker; on timeout, return anyway
    so the tally reports what is missing instead of a bare timeout."""
    for b in backends:
        try:
            # Counting first keeps the check cheap: it runs on every copy that arrives.
            b.wait_for(0, timeout, pred=lambda got: len(got) >= len(owed)
                       and owed <= {marker_of(r) for r in got})
        except AssertionError:
            return


def tally(scenario: str, sender: Sender, backends: dict[str, list[RecordingBackend]],
          started: float) -> list[Tally]:
    """Count, per backend, copies received against 202s given; print and record them."""
    out = []
    for name, incarnations in backends.items():
        got = [marker_of(r) for b in incarnations for r in list(b.received)]
        seen = Counter(got)
        out.append(Tally(scenario, name, sender.sent, len(sender.accepted), len(got),
                         len(sender.accepted - set(seen)), len(got) - len(seen),
                         time.monotonic() - started))
    report(out)
    return out


def report(rows: list[Tally]) -> None:
    for r in rows:
        print(r.row())
    path = os.environ.get("HOOKFAN_CHAOS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(vars(r)) + "\n")


class Downable(RecordingBackend):
    """A recording backend that can go down for real: :meth:`down` also cuts the keep-alive
    connections (RecordingBackend.stop closes only the listener, and a worker's pooled
    connection would keep being served)."""

    def start(self) -> Downable:
        super().start()
        assert self._server is not None
        serve = self._server.process_request
        self.conns: list[socket.socket] = []

        def track(request: Any, address: Any) -> None:
            self.conns.append(request)
            serve(request, address)

        self._server.process_request = track  # type: ignore[method-assign]
        return self

    def down(self) -> None:
        self.stop()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)


class PortHold:
    """Keeps a down backend's port: bound but not listening, so connections are refused at
    once and no other process (tests run in parallel) takes the port meanwhile."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))

    def release(self) -> None:
        self.sock.close()


def repeat_at_random(times: int, within: float, action: Callable[[int], None],
                     seed: int | None = None) -> None:
    """Run ``action(i)`` ``times`` times at random moments spread over ``within`` seconds."""
    import random
    rng = random.Random(seed)
    slot = within / times
    for i in range(times):
        time.sleep(rng.uniform(0.2, 1.0) * slot)  # the randomness is the point: fault timing
        action(i)
