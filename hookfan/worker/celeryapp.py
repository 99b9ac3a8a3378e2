"""The Celery app of the worker: one task, ``hookfan.deliver``, one attempt per message."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import ssl
import threading
from typing import Any

from celery import Celery, bootsteps, signals

from hookfan import keys, metrics, tracing
from hookfan.config import Settings
from hookfan.health import check_can_listen
from hookfan.store import Store, connect
from hookfan.taskmsg import TASK_NAME

from .deliver import Deliverer
from .observe import ServingStep, keep_hookfan_logging, observer
from .promoter import Promoter

log = logging.getLogger(__name__)


def broker_ssl(settings: Settings) -> dict[str, Any] | None:
    """kombu's ``broker_use_ssl`` for a ``rediss://`` URL: the server's certificate is always
    verified (against ``--redis-tls-ca-file`` or the system's CAs); None for ``redis://``."""
    options = settings.redis.ssl_options()
    if not settings.redis.tls:
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED, **options}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Broker settings shared by the worker, Flower and tests."""
    return {
        "broker_url": settings.redis.client_url(),
        "broker_use_ssl": broker_ssl(settings),
        "broker_connection_retry_on_startup": True,
        "task_default_queue": keys.QUEUE,
        # A message is acked after its attempt; a pool child killed mid-attempt gives it back.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        # Flower's live view; Flower also switches them on at runtime (remote control).
        "worker_send_task_events": settings.delivery.task_events,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_time_limit": int(3 * settings.delivery.delivery_timeout + 10),
    }


def install(app: Celery, settings: Settings) -> None:
    """Register ``hookfan.deliver`` on ``app``. The Deliverer is made lazily in each process
    (after the prefork fork), so no Redis or HTTP connection is shared across processes."""
    holder: dict[str, Deliverer] = {}

    def deliverer() -> Deliverer:
        if "d" not in holder:
            store = Store(connect(settings.redis, timeout=5), settings.delivery.lease)
            recorder = metrics.WorkerMetrics() if settings.metrics_addr is not None else None
            holder["d"] = Deliverer(store, settings.delivery, observer(recorder),
                                    tracing.setup(settings.otel, "worker"))
        return holder["d"]

    @app.task(  # type: ignore[untyped-decorator]
        name=TASK_NAME, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
    def deliver(delivery_id: str, generation: int) -> None:
        # Returns nothing: Flower shows and logs a task's return value.
        deliverer().attempt(delivery_id, generation)


class PromoterStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Runs the promoter in the worker's main process for as long as the worker runs."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        settings: Settings = worker.app.hookfan_settings
        store = Store(connect(settings.redis, timeout=5), settings.delivery.lease)
        self.promoter = Promoter(store)
        super().__init__(worker, **kwargs)

    def start(self, worker: Any) -> None:
        self.promoter.start()

    def stop(self, worker: Any) -> None:
        self.promoter.stop()


class ShutdownStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Bounds a warm shutdown by ``--graceful-shutdown-timeout``.

    SIGTERM starts Celery's warm shutdown: no new messages, running attempts finish (each is
    bounded by ``--delivery-timeout``). If some still run when the timeout ends, a SIGQUIT
    turns it into a cold shutdown, which cancels them and gives their messages back to the
    queue (``acks_late``); the message keeps its generation, so another worker runs the
    attempt at once instead of waiting for the hold to expire.

    A backstop bounds every stop, whatever started it: ``BACKSTOP_MARGIN`` seconds after the
    timeout the process kills its pool children and exits 1. Celery 5.7 turns a broker
    connection lost at the wrong moment into an "Unrecoverable error" and a warm stop, and that
    stop can wedge on broker I/O; a worker that consumes nothing and never exits would keep
    its supervisor from restarting it. Nothing is lost by exiting: every attempt in flight is
    made again when its hold in the schedule expires."""

    BACKSTOP_MARGIN = 15.0

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        settings: Settings = worker.app.hookfan_settings
        self.timeout = settings.operator.graceful_shutdown_timeout
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
    install(app, settings)
    app.steps["worker"].add(PromoterStep)
    app.steps["worker"].add(ShutdownStep)
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
    return int(getattr(worker, "exitcode", 0) or 0)
