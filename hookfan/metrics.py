"""Prometheus metrics of the app and the worker, and the multiprocess plumbing they share.

Both processes fork children (gunicorn workers, Celery's prefork pool), so both use
prometheus_client's multiprocess mode: children write samples to files in a directory, and
the parent serves them on ``--metrics-addr``. :func:`prepare_multiproc` must run before
``prometheus_client`` is first imported in the parent (the library picks its value class at
import), which is why this module imports it lazily.

Names follow Prometheus conventions: ``hookfan_`` prefix, counters end in ``_total``,
durations are ``_seconds`` histograms. Labels are bounded by configuration, never by traffic:
``route`` is the matched RequestClone(s) (``namespace/name``) or ``none``, ``backend`` the
resolved backend URL, ``status`` an HTTP status code. See docs/metrics.md.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hookfan.config import listening

if TYPE_CHECKING:
    from flask import Flask, Response
    from prometheus_client import CollectorRegistry

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
ROUTE_KEY = "hookfan.route"
"""WSGI environ key where the intake leaves the ``route`` label of a request."""
BODY_KEY = "hookfan.body_bytes"
"""WSGI environ key where the intake leaves the size of the body it read."""
STARTED_KEY = "hookfan.started"
"""WSGI environ key: ``time.monotonic()`` when the request reached the app (set by the intake's
request log, read by it and by the duration histogram)."""
NO_ROUTE = "none"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
AGE_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0)
BYTES_BUCKETS = (256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
                 10485760.0)
REJECT_REASONS = ("redis_full", "max_pending", "quota", "redis_unavailable", "signature",
                  "verify_unreadable", "answer_waits")
ANSWER_MODES = ("AwaitAllPreferSuccessful", "AwaitAllPreferFailed", "AwaitAllReport")
ANSWER_OUTCOMES = ("answered", "timeout", "redis_error", "refused")
ATTEMPT_BUCKETS = (1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0)


def route_label(routes: Sequence[str]) -> str:
    """The ``route`` label of an intake request: its matched RequestClones, sorted and
    comma-joined, or ``none``. Bounded by the route table, not by what senders send."""
    return ",".join(sorted(set(routes))) or NO_ROUTE


def prepare_multiproc(kind: str) -> str:
    """Point prometheus_client at an empty directory for this process tree; return it.

    ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's own variable; the chart mounts an
    emptyDir there) is used when set, else a fresh temporary directory, so an app and a
    worker on one machine never share one. Either way it is emptied first: files left by a
    previous run would carry its counters over. Must run before prometheus_client is imported.
    """
    path = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix=f"hookfan-{kind}-prom-")
    os.makedirs(path, exist_ok=True)
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    os.environ[MULTIPROC_ENV] = path
    return path


def multiproc_registry() -> CollectorRegistry:
    """A registry that reads every child's samples from the multiprocess directory."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def serve(addr: tuple[str, int], registry: CollectorRegistry) -> Callable[[], None]:
    """Serve ``registry`` on ``addr`` at ``/metrics`` in a daemon thread; returns a stop
    function. Raises SettingsError naming ``--metrics-addr`` if the address is taken."""
    with listening("metrics-addr", addr):
        server = _metrics_server(addr, registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="metrics")
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return stop


def _metrics_server(addr: tuple[str, int], registry: CollectorRegistry) -> Any:
    """prometheus_client's server (its ``start_http_server``), without the ``Server:
    WSGIServer/0.2 CPython/3.x`` banner on answers and error pages."""
    from wsgiref.simple_server import make_server

    from prometheus_client import exposition, make_wsgi_app

    from hookfan.health import BANNER

    class Handler(exposition._SilentHandler):
        def version_string(self) -> str:
            return BANNER

    class Server(exposition.ThreadingWSGIServer):
        pass

    family, host = exposition._get_best_family(addr[0], addr[1])  # type: ignore[no-untyped-call]
    Server.address_family = family
    app = make_wsgi_app(registry)

    def bannered(environ: dict[str, Any], start_response: Any) -> Any:
        return app(environ, lambda status, headers, *exc: start_response(
            status, [*headers, ("Server", BANNER)], *exc))
    return make_server(host, addr[1], bannered, Server, handler_class=Handler)


def mark_dead(pid: int) -> None:
    """Tell the multiprocess collector a child has exited (its live gauges drop out)."""
    from prometheus_client.multiprocess import mark_process_dead
    mark_process_dead(pid)  # type: ignore[no-untyped-call]


# -- app --------------------------------------------------------------------------------------

def install_app(app: Flask) -> None:
    """Count and time every intake request with prometheus-flask-exporter (gunicorn
    multiprocess mode); the master serves them (see :mod:`hookfan.app.server`).

    ``hookfan_http_requests_total{status,route}``, ``hookfan_http_request_duration_seconds
    {status}`` and ``hookfan_http_request_body_bytes``. The intake leaves the route label and
    body size in the WSGI environ; a request that never got that far counts as route ``none``.
    """
    from flask import request
    from prometheus_client import Counter, Histogram
    from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics

    GunicornPrometheusMetrics(app, export_defaults=False)
    # The two per-request metrics are recorded here rather than with the exporter's
    # counter/histogram decorators, which inspect each label function's signature on every
    # request (inspect.getfullargspec, three times): ~70 -> ~25 us of CPU per request for the
    # metrics (in process, 3,000 calls of the intake app on a real Redis; a throwaway script).
    answered = Counter("hookfan_http_requests_total", "Intake requests answered, by status and "
                       "matched route.", ["status", "route"], registry=None)
    duration = Histogram("hookfan_http_request_duration_seconds", "Time to answer an intake "
                         "request.", ["status"], buckets=LATENCY_BUCKETS, registry=None)
    body = Histogram("hookfan_http_request_body_bytes", "Size of intake request bodies read.",
                     buckets=BYTES_BUCKETS, registry=None)

    @app.after_request
    def _answered(resp: Response) -> Response:
        environ = request.environ
        status = resp.status_code
        started = environ.get(STARTED_KEY)
        if started is not None:
            duration.labels(status).observe(time.monotonic() - started)
        answered.labels(status, environ.get(ROUTE_KEY, NO_ROUTE)).inc()
        size = environ.get(BODY_KEY)
        if size is not None:
            body.observe(size)
        return resp

    rejected = Counter("hookfan_intake_rejected_total", "Intake requests answered 503 (or 401) "
                       "without storing them, by reason: redis_full (Redis at maxmemory), "
                       "max_pending (over --max-pending), quota (the host over "
                       "--max-pending-per-host or --max-stored-bytes-per-host), "
                       "redis_unavailable, signature (401: spec.verify failed), answer_waits "
                       "(over --max-answer-waits).", ["reason"],
                       registry=None)
    for reason in REJECT_REASONS:
        rejected.labels(reason)
    unacknowledged = Counter(
        "hookfan_intake_unacknowledged_total", "Intake requests stored but answered 503 "
        "because fewer replicas than --min-replicas-ack acknowledged the write in time (the "
        "sender's retry may be delivered twice).", registry=None)
    waits = Counter("hookfan_answer_waits_total", "Requests to Receivers with an AwaitAll "
                    "responseType, by mode and outcome: answered (every target's first answer "
                    "came), timeout (some target counted as 504), redis_error (the wait broke "
                    "off; missing targets counted as 504), refused (503 over "
                    "--max-answer-waits, nothing stored).", ["mode", "outcome"], registry=None)
    wait_time = Histogram("hookfan_answer_wait_seconds", "Time a request to an AwaitAll "
                          "Receiver waited for its targets' first answers.", ["mode"],
                          buckets=LATENCY_BUCKETS, registry=None)
    for mode in ANSWER_MODES:
        for outcome in ANSWER_OUTCOMES:
            waits.labels(mode, outcome)

    def waited(mode: str, outcome: str, took: float) -> None:
        waits.labels(mode, outcome).inc()
        if outcome != "refused":
            wait_time.labels(mode).observe(took)

    intake: Any = app.extensions.get("hookfan.intake")  # view_functions holds a wrapper now
    if intake is not None:
        intake.waited = waited
        intake.rejected = lambda reason: rejected.labels(reason).inc()
        intake.unacknowledged = unacknowledged.inc


def gunicorn_hooks(addr: tuple[str, int]) -> dict[str, Any]:
    """gunicorn settings that serve the app's metrics from the master on ``addr``
    (``when_ready``) and drop a dead worker's live samples (``child_exit``)."""
    def when_ready(_server: Any) -> None:
        serve(addr, multiproc_registry())

    def child_exit(_server: Any, worker: Any) -> None:
        mark_dead(worker.pid)

    return {"when_ready": when_ready, "child_exit": child_exit}


# -- worker -----------------------------------------------------------------------------------

class WorkerMetrics:
    """Delivery metrics, recorded in whichever pool child makes the attempt."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram
        by = ("route", "backend")
        # registry=None: in multiprocess mode samples go to files; the parent's collector
        # reads them, and a second instance in one process cannot clash in a registry.
        self.attempts = Counter("hookfan_delivery_attempts_total", "Delivery attempts by "
                                "outcome.", ("outcome", *by), registry=None)
        self.duration = Histogram("hookfan_delivery_attempt_duration_seconds", "Duration of "
                                  "one delivery attempt.", by, buckets=LATENCY_BUCKETS,
                                  registry=None)
        self.latency = Histogram("hookfan_delivery_latency_seconds", "Acceptance to "
                                 "delivery of a copy.", by, buckets=AGE_BUCKETS, registry=None)
        self.per_copy = Histogram("hookfan_delivery_attempts_per_copy", "Attempts a "
                                  "delivered copy took.", by, buckets=ATTEMPT_BUCKETS,
                                  registry=None)
        self.stale = Counter("hookfan_stale_outcomes_total", "Attempt outcomes dropped because "
                             "their copy had been re-claimed or had ended (a lease ran out).",
                             registry=None)
        self.paused = Counter("hookfan_backend_paused_total", "Backends paused by "
                              "--auto-pause-after.", ("backend",), registry=None)
        self._lock = threading.Lock()

    def backend_paused(self, backend: str) -> None:
        with self._lock:
            self.paused.labels(backend).inc()

    def stale_outcomes(self, count: int) -> None:
        with self._lock:
            self.stale.inc(count)

    def attempt(self, outcome: str, route: str, backend: str, duration: float,
                number: int, accepted: float, now: float) -> None:
        """Record one finished attempt (``delivered``, ``retry`` or ``dead_letter``)."""
        with self._lock:
            self.attempts.labels(outcome, route, backend).inc()
            self.duration.labels(route, backend).observe(duration)
            if outcome == "delivered":
                self.latency.labels(route, backend).observe(max(0.0, now - accepted))
                self.per_copy.labels(route, backend).observe(number)
