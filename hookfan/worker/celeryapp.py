"""The Celery app of the worker: one task, ``hookfan.deliver(backend, copies)``, one batch of
attempts to one backend per message (see :mod:`hookfan.worker.tasks`), and the dispatcher
thread that publishes those messages (see :mod:`hookfan.worker.dispatcher`)."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import ssl
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import redis
from celery import Celery, bootsteps, signals

from hookfan import backends, forkgate, keys, metrics, migrate, tracing
from hookfan.config import Settings
from hookfan.health import check_can_listen
from hookfan.schedule import Schedule
from hookfan.store import connect

from . import broker
from .dispatcher import Dispatcher
from .observe import ServingStep, keep_hookfan_logging, observer
from .retention import RetentionStep
from .tasks import Courier

log = logging.getLogger(__name__)

TASK_NAME = "hookfan.deliver"


def broker_ssl(settings: Settings) -> dict[str, Any] | None:
    """kombu's ``broker_use_ssl`` for a ``rediss://`` URL: the server's certificate is always
    verified (against ``--redis-tls-ca-file`` or the system's CAs); None for ``redis://``."""
    options = settings.redis.ssl_options()
    if not settings.redis.tls:
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED, **options}


def broker_url(settings: Settings) -> str:
    """kombu's broker URL: ``--redis-url`` (its password file filled in); with Sentinel, one
    ``sentinel://`` URL per Sentinel (kombu's Sentinel transport asks them where the primary
    named in :func:`broker_transport_options` is), each with the URL's password and database.
    Holds the password: never print it."""
    url = settings.redis.client_url()
    if not settings.redis.sentinel:
        return url
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    return ";".join(
        f"sentinel://{auth + '@' if auth else ''}{f'[{h}]' if ':' in h else h}:{p}{parts.path}"
        for h, p in settings.redis.sentinel)


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """kombu's transport options: with Sentinel, the primary's name."""
    if not settings.redis.sentinel:
        return {}
    return {"master_name": settings.redis.sentinel_master}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Broker settings shared by the worker, Flower and tests."""
    return {
        "broker_url": broker_url(settings),
        "broker_transport_options": broker_transport_options(settings),
        "broker_use_ssl": broker_ssl(settings),
        "broker_connection_retry_on_startup": True,
        # Redis at its maxmemory refuses every write that may grow memory, kombu's
        # bookkeeping of a received message included (an OutOfMemoryError, a "channel
        # error"): the consumer restarts instead of the worker exiting, and waits for memory
        # before it connects again (hookfan.worker.broker). A wake-up lost that way costs
        # nothing: the ready queues are the schedule.
        "broker_channel_error_retry": True,
        "worker_consumer": broker.NAME,
        "task_default_queue": keys.QUEUE,
        # A message is a wake-up, not state: acked after its task, given back if the pool
        # child dies, and a lost or repeated one costs nothing.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        # Flower's live view; Flower also switches them on at runtime (remote control).
        "worker_send_task_events": settings.delivery.task_events,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # Longer than any task: its batches stop before the budget, each within a lease.
        "task_time_limit": settings.delivery.task_time_limit,
    }


def install(app: Celery, settings: Settings) -> Any:
    """Register ``hookfan.deliver`` on ``app`` and return it. The Courier is made lazily in
    each process (after the prefork fork), so no Redis or HTTP connection is shared across
    processes. A warm shutdown of the main process sets ``app.hookfan_stopping`` (an Event
    made before the pool forks, so the children share it): running tasks then finish their
    batch and claim no more."""
    holder: dict[str, Courier] = {}
    stopping = multiprocessing.get_context("fork").Event()
    app.hookfan_stopping = stopping
    app.hookfan_waiting_for_memory = threading.Event()  # set by broker.MemoryAwareConsumer

    def courier() -> Courier:
        if "c" not in holder:
            schedule = Schedule(connect(settings.redis, timeout=5), settings.delivery)
            recorder = metrics.WorkerMetrics() if settings.metrics_addr is not None else None
            holder["c"] = Courier(schedule, settings.delivery,
                                  observer(recorder) if recorder else None,
                                  tracing.setup(settings.otel, "worker"),
                                  recorder.stale_outcomes if recorder else None,
                                  stopping.is_set,
                                  on_pause=recorder.backend_paused if recorder else None)
        return holder["c"]

    @app.task(  # type: ignore[untyped-decorator]
        name=TASK_NAME, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
    def deliver(backend: str, copies: int = 0) -> None:
        # ``copies`` (due when published) is for Flower's view only. Returns nothing: Flower
        # shows and logs a task's return value.
        courier().run(backend)

    return deliver


def publisher(app: Celery, task: Any) -> Any:
    """Publish one ``hookfan.deliver`` per (backend, due copies) on one producer."""
    def publish(owned: Sequence[tuple[str, int]]) -> None:
        with app.producer_or_acquire() as producer:
            for url, count in owned:
                task.apply_async((url, count), producer=producer,
                                 argsrepr=repr((url, count)), kwargsrepr="{}")
    return publish


class DispatcherStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Runs the dispatcher in the worker's main process for as long as the worker runs. If
    it dies, ``/readyz`` fails at once and the worker stops with status 1."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        app = worker.app
        settings: Settings = app.hookfan_settings
        schedule = Schedule(connect(settings.redis, timeout=5), settings.delivery)
        self.worker = worker
        self.dispatcher = Dispatcher(schedule, publisher(app, app.tasks[TASK_NAME]),
                                     on_death=self._died)
        app.hookfan_dispatching = lambda: self.dispatcher.alive
        super().__init__(worker, **kwargs)

    def _died(self) -> None:
        self.worker.app.hookfan_failed = True
        os.kill(os.getpid(), signal.SIGTERM)

    def start(self, worker: Any) -> None:
        try:
            with forkgate.held():
                migrate.migrate(self.dispatcher.schedule.r)
        except redis.RedisError as exc:  # the next worker start moves what is left
            log.error("first-engine copies not moved yet: %s", type(exc).__name__)
        try:
            with forkgate.held():
                backends.publish_worker_policy(self.dispatcher.schedule.r,
                                               worker.app.hookfan_settings.delivery)
        except redis.RedisError as exc:  # only `hookfan backends list` shows it
            log.warning("worker flags not published: %s", type(exc).__name__)
        self.dispatcher.start()

    def stop(self, worker: Any) -> None:
        self.dispatcher.stop()


class ShutdownStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Bounds a warm shutdown by ``--graceful-shutdown-timeout``.

    SIGTERM starts Celery's warm shutdown: no new messages, running attempts finish (each is
    bounded by ``--delivery-timeout``). If some still run when the timeout ends, a SIGQUIT
    turns it into a cold shutdown, which cancels them and gives their messages back to the
    queue (``acks_late``), so another worker looks at that backend at once; the copies the
    cut attempts held come back when their lease runs out.

    A backstop bounds every stop, whatever started it: ``BACKSTOP_MARGIN`` seconds after the
    timeout the process kills its pool children and exits 1. Celery 5.7 turns a broker
    connection lost at the wrong moment into an "Unrecoverable error" and a warm stop, and that
    stop can wedge on broker I/O; a worker that consumes nothing and never exits would keep
    its supervisor from restarting it. Nothing is lost by exiting: every attempt in flight is
    made again when its lease runs out."""

    BACKSTOP_MARGIN = 15.0

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        settings: Settings = worker.app.hookfan_settings
        self.timeout = settings.operator.graceful_shutdown_timeout
        self.stopping = worker.app.hookfan_stopping
        self.timer: threading.Timer | None = None
        self.backstop: threading.Timer | None = None
        worker.app.hookfan_worker = worker  # run() reads its exit code
        for name in ("stop", "terminate"):
            setattr(worker, name, self._bounded(getattr(worker, name)))
        super().__init__(worker, **kwargs)

    def _bounded(self, stop: Any) -> Any:
        def bounded(*args: Any, **kwargs: Any) -> Any:
            self._arm_backstop()
            return stop(*args, **kwargs)
        return bounded

    def _arm_backstop(self) -> None:
        if self.backstop is None:
            self.backstop = threading.Timer(self.timeout + self.BACKSTOP_MARGIN, _exit_now)
            self.backstop.daemon = True
            self.backstop.start()

    def start(self, worker: Any) -> None:
        signals.worker_shutting_down.connect(self._arm, weak=False)

    def _arm(self, sig: str = "", how: str = "", **_: Any) -> None:
        self.stopping.set()
        if how != "Warm" or self.timer is not None:
            return
        pid = os.getpid()
        self.timer = threading.Timer(self.timeout, os.kill, (pid, signal.SIGQUIT))
        self.timer.daemon = True
        self.timer.start()

    def stop(self, worker: Any) -> None:
        signals.worker_shutting_down.disconnect(self._arm)


def _exit_now() -> None:
    from billiard.process import active_children  # type: ignore[import-untyped]
    log.error("worker: stop did not finish in time; exiting (its attempts will be made again)")
    for child in active_children():
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGKILL)
    os._exit(1)


def make_celery(settings: Settings) -> Celery:
    app = Celery("hookfan", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.hookfan_settings = settings
    app.hookfan_dispatching = lambda: True
    install(app, settings)
    app.steps["worker"].add(DispatcherStep)
    app.steps["worker"].add(ShutdownStep)
    app.steps["worker"].add(RetentionStep)
    app.steps["worker"].add(ServingStep)
    return app


def run(settings: Settings) -> int:
    """Run the worker until it stops; returns its exit code (1 after Celery's "Unrecoverable
    error", so a supervisor sees the failure; ``worker_main`` itself drops the code)."""
    # Celery starts these servers inside its boot and would report a taken address as an
    # "Unrecoverable error" traceback: check them first, for an error that names the flag.
    check_can_listen("metrics-addr", settings.metrics_addr)
    check_can_listen("health-addr", settings.health_addr)
    if settings.metrics_addr is not None:
        metrics.prepare_multiproc("worker")  # before any pool child records a sample
    # Celery configures no logging of its own once a receiver answers setup_logging: its
    # lines (task received, succeeded, pool events) then reach hookfan's root handler.
    signals.setup_logging.connect(keep_hookfan_logging, weak=False)
    app = make_celery(settings)
    app.worker_main(["--quiet", "worker", "--queues", keys.QUEUE, "--pool", "prefork",
                     "--concurrency", str(settings.delivery.concurrency),
                     "--loglevel", "INFO" if settings.log.level != "error" else "ERROR",
                     "--hostname", "hookfan@%h", "--without-gossip", "--without-mingle",
                     *(["--task-events"] if settings.delivery.task_events else [])])
    worker = getattr(app, "hookfan_worker", None)
    code = int(getattr(worker, "exitcode", 0) or 0)
    return code or (1 if getattr(app, "hookfan_failed", False) else 0)
