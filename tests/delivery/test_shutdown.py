"""Graceful shutdown: SIGTERM loses nothing, and what a cut attempt held comes back on time.

Worker (see ``ShutdownStep`` in hookfan/worker/celeryapp.py): SIGTERM stops it taking messages;
running attempts finish. Past ``--graceful-shutdown-timeout`` a cold shutdown cuts them and
gives their ``hookfan.deliver`` messages back to the queue, so another worker looks at that
backend at once. A message names a backend, not a copy: the copy a cut attempt held stays
claimed until its lease (2 x ``--delivery-timeout`` + 5 s) runs out, and then comes back as a
failed attempt (``LeaseExpired``), never earlier (that would be two attempts at once).
App: gunicorn stops accepting, finishes the requests in flight, then exits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hookfan import keys
from hookfan.config import DeliverySettings
from hookfan.routes import match
from hookfan.store import Store
from tests.conftest import route_file
from tests.stackfixtures import send
from tests.support.procs import Stack, holds_port, pids_hold_port, port_open, wait_until
from tests.support.redisproc import RedisProcess


@dataclass(frozen=True)
class Arrival:
    delivery_id: str
    attempt: str
    at: float
    """time.monotonic() when the request arrived."""
    port: int
    """The sender's local port: which worker process made the attempt."""


class FirstHangs:
    """A real backend: the first request waits for :attr:`release` (outside any lock), the
    rest are answered 200 at once. Records every request that arrives."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.arrivals: list[Arrival] = []
        self.answered: list[str] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                first = not backend.arrivals
                did = self.headers.get("X-Hookfan-Delivery", "")
                backend.arrivals.append(Arrival(did, self.headers.get("X-Hookfan-Attempt", ""),
                                                time.monotonic(), self.client_address[1]))
                if first:
                    backend.release.wait(120)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    return  # the attempt was cut: its worker is gone
                backend.answered.append(did)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def of(self, delivery_id: str) -> list[Arrival]:
        return [a for a in self.arrivals if a.delivery_id == delivery_id]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hang() -> Iterator[FirstHangs]:
    b = FirstHangs()
    yield b
    b.stop()


def make_stack(redis: RedisProcess, tmp: Path, grace: str, timeout: str = "20s") -> Stack:
    (tmp / "routes").mkdir(exist_ok=True)
    return Stack(redis.url, tmp / "routes", tmp / "logs",
                 worker_args=["--delivery-timeout", timeout,
                              "--graceful-shutdown-timeout", grace])


def ready(stack: Stack, name: str) -> bool:
    return " ready." in stack.procs[name].log()


def routed(store: Store, host: str) -> bool:
    """Whether the route table published in Redis routes ``host``."""
    table = store.load_routes()
    return table is not None and bool(match(table, host))


CUT_TIMEOUT = 8.0
LEASE = DeliverySettings(delivery_timeout=CUT_TIMEOUT).lease
"""21 s: how long the copy of a cut attempt stays claimed."""


def test_worker_sigterm_cuts_a_long_attempt_gives_the_backend_to_another_worker_at_once(
        module_redis, tmp_path, hang, stack_store: Store):
    """The attempt outlives the 1 s grace: it is cut, the backend's other copy is delivered by
    the other worker at once (the message came back), and the cut copy is sent again only once
    its lease ran out, as attempt 2."""
    stack = make_stack(module_redis, tmp_path, "1s", f"{CUT_TIMEOUT:.0f}s")
    route_file(stack.routes_dir, "sd-give.example.com", [hang])  # type: ignore[list-item]
    try:
        stack.start_operator()
        stack.start_app()
        workers = [stack.start_worker("first"), stack.start_worker("second")]
        wait_until(lambda: ready(stack, "first") and ready(stack, "second"), 60,
                   "both workers ready")
        a = send(stack, "sd-give.example.com", b'{"copy": "a"}')
        assert a.status_code == 202
        wait_until(lambda: len(hang.arrivals) == 1, 20, "first attempt in flight")
        (first,) = hang.arrivals
        assert first.delivery_id == f"{a.json()['id']}-0" and first.attempt == "1"
        (cut,) = [w for w in workers if holds_port(w, first.port)]
        # A second copy for the same backend waits behind the attempt in flight: the backend
        # is owned by the task that runs it.
        b = send(stack, "sd-give.example.com", b'{"copy": "b"}')
        assert b.status_code == 202
        b_id = f"{b.json()['id']}-0"
        os.kill(cut.pid, signal.SIGTERM)
        wait_until(lambda: cut.proc.poll() is not None, 20, "cut worker exited")  # type: ignore[union-attr]
        exited = time.monotonic()
        assert first.delivery_id not in hang.answered  # it was cut, not finished
        # The cut copy: claimed until its lease ran out, then attempt 2 (the cut one counted).
        wait_until(lambda: len(hang.of(first.delivery_id)) >= 2, LEASE + 15,
                   "the cut copy sent again after its lease", interval=0.1)
        again = hang.of(first.delivery_id)[1]
        assert again.attempt == "2"
        assert again.at - first.at >= LEASE - 1.0, (again.at - first.at, LEASE)
        assert again.at - first.at <= LEASE + 10, (again.at - first.at, LEASE)
        # The given-back message: the other worker took the backend at once and delivered b,
        # long before a's lease ran out (or the backend's ownership lapsed, 5 s after that).
        wait_until(lambda: b_id in hang.answered, 10, "the other copy delivered")
        (b_arrival,) = hang.of(b_id)
        print(f"cut worker exited {exited - first.at:.1f} s after the attempt began; other copy "
              f"delivered after {b_arrival.at - first.at:.1f} s; cut copy sent again after "
              f"{again.at - first.at:.1f} s (lease {LEASE:.0f} s)")
        assert b_arrival.at - exited < 5, \
            f"the other copy waited {b_arrival.at - first.at:.1f} s (lease {LEASE:.0f} s)"
        wait_until(lambda: first.delivery_id in hang.answered, 10, "the cut copy delivered")
        wait_until(lambda: not stack_store.pending(hang.url), 10, "nothing pending")
        assert len(hang.of(first.delivery_id)) == 2 and len(hang.of(b_id)) == 1
    finally:
        stack.stop()


def test_worker_sigterm_lets_a_running_attempt_finish(module_redis, tmp_path, hang,
                                                     stack_store: Store):
    stack = make_stack(module_redis, tmp_path, "30s")
    route_file(stack.routes_dir, "sd-finish.example.com", [hang])  # type: ignore[list-item]
    try:
        stack.start_operator()
        stack.start_app()
        worker = stack.start_worker()
        assert send(stack, "sd-finish.example.com", b"{}").status_code == 202
        wait_until(lambda: len(hang.arrivals) == 1, 20, "attempt in flight")
        os.kill(worker.pid, signal.SIGTERM)
        wait_until(lambda: "Warm shutdown" in worker.log() or "warm shutdown" in worker.log(),
                   10, "worker shutting down")
        # The scenario, not a synchronisation: the attempt runs on well into the shutdown.
        time.sleep(3)
        assert worker.proc is not None and worker.proc.poll() is None  # it waits for the attempt
        assert hang.answered == [] and stack_store.pending(hang.url) != []
        hang.release.set()
        assert worker.proc.wait(20) == 0
        wait_until(lambda: len(hang.answered) == 1, 5, "the attempt answered")
        assert len(hang.arrivals) == 1
        # The task recorded the outcome and let go of the backend before the process ended:
        # no copy, sender slot or ownership is left for a lease or hold to expire.
        assert stack_store.pending(hang.url) == []
        assert stack_store.r.zcard(keys.inflight(hang.url)) == 0
        assert stack_store.r.zcard(keys.slots(hang.url)) == 0
        assert stack_store.r.zscore(keys.OWNED, hang.url) is None
    finally:
        stack.stop()


def test_app_sigterm_finishes_the_request_in_flight_and_takes_no_new_one(
        module_redis, tmp_path, make_backend, stack_store: Store):
    backend = make_backend()
    stack = make_stack(module_redis, tmp_path, "10s")
    route_file(stack.routes_dir, "sd-app.example.com", [backend])
    try:
        stack.start_operator()
        # This Redis still holds the previous test's table: start the app only once this
        # operator's is out, so neither gunicorn worker can answer the request in flight 503.
        wait_until(lambda: routed(stack_store, "sd-app.example.com"), 10, "route published")
        app = stack.start_app()
        stack.start_worker()
        assert send(stack, "sd-app.example.com", b"{}").status_code == 202
        body = b'{"in": "flight"}'
        conn = socket.create_connection(("127.0.0.1", stack.port), timeout=20)
        conn.sendall(b"POST / HTTP/1.1\r\nHost: sd-app.example.com\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body[:5])
        wait_until(lambda: len(app.children()) == 2, 10, "both gunicorn workers up")
        client_port = conn.getsockname()[1]
        # SIGTERM only once a worker has accepted the connection: one still in the listen
        # backlog is in flight nowhere, and both workers would rightly exit at once.
        wait_until(lambda: pids_hold_port(app.children(), stack.port, client_port), 10,
                   "a gunicorn worker reading the request")
        # The app answers others while a request is in flight. (A gunicorn worker still
        # loading the app when SIGTERM comes exits once it has loaded: IntakeWorker loads it
        # after gunicorn installed the worker's signal handlers.)
        assert send(stack, "sd-app.example.com", b'{"probe": 1}').status_code == 202
        os.kill(app.pid, signal.SIGTERM)
        # The idle worker exits at once; the busy one stays until its request is answered.
        wait_until(lambda: len(app.children()) == 1, 10, "idle gunicorn worker gone")
        conn.sendall(body[5:])
        answer = conn.recv(4096)
        assert answer.startswith(b"HTTP/1.1 202"), answer[:80]
        conn.close()
        assert app.proc is not None and app.proc.wait(15) == 0
        assert not port_open(stack.port)
        got = backend.wait_for(3)
        assert body in {r.body for r in got}
    finally:
        stack.stop()


BACKSTOP = """
import sys, threading
from hookfan.config import OperatorSettings, Settings
from hookfan.worker.celeryapp import ShutdownStep, make_celery

class WedgedWorker:
    # Stands in for Celery's WorkController (a real wedged stop could not be produced on
    # demand): its stop never returns, as when a warm stop waits on a broker that is gone.
    app = make_celery(Settings(operator=OperatorSettings(graceful_shutdown_timeout=0.2)))
    def stop(self, *args, **kwargs):
        threading.Event().wait()
    terminate = stop

ShutdownStep.BACKSTOP_MARGIN = 0.3
worker = WedgedWorker()
ShutdownStep(worker)
print("stopping", flush=True)
worker.stop(exitcode=1)
print("stop returned", flush=True)
"""


def test_a_wedged_stop_still_ends_the_process_with_status_1() -> None:
    """Whatever stops the worker, the process exits within the backstop, so a supervisor
    restarts it instead of keeping a worker that consumes nothing."""
    done = subprocess.run([sys.executable, "-c", BACKSTOP], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "stopping" in done.stdout and "stop returned" not in done.stdout
