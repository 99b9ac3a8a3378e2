"""``hookfan app``: the intake app under gunicorn, with hookfan's own sync worker class.

The worker class does two things gunicorn's does not: it hands the app the headers exactly as
parsed (order and duplicates kept; WSGI's environ merges duplicates), and it puts a read timeout
on each client socket so a slow client gets dropped instead of holding a worker.
"""

from __future__ import annotations

import logging
import math
import socket
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.workers.sync import SyncWorker

from hookfan import metrics, tracing
from hookfan.config import Settings
from hookfan.health import HealthServer, RedisCheck
from hookfan.store import Store, connect

from . import create_app
from .intake import RAW_HEADERS, Intake

log = logging.getLogger(__name__)


class IntakeWorker(SyncWorker):  # type: ignore[misc]
    read_timeout = 10.0
    _headers: list[tuple[str, str]] = []

    def init_process(self) -> None:
        app_callable = None

        def with_headers(environ: dict[str, Any], start_response: Any) -> Any:
            environ[RAW_HEADERS] = self._headers
            return app_callable(environ, start_response)  # type: ignore[misc]

        self.load_wsgi()
        app_callable, self.wsgi = self.wsgi, with_headers  # type: ignore[has-type]
        self.read_timeout = self.app.settings.intake.proxy_read_timeout
        super().init_process()

    def load_wsgi(self) -> None:
        if getattr(self, "wsgi", None) is None:
            super().load_wsgi()

    def accept(self, listener: socket.socket) -> None:
        client, addr = listener.accept()
        client.setblocking(True)
        client.settimeout(self.read_timeout)
        self.handle(listener, client, addr)

    def handle_request(self, listener: Any, req: Any, client: Any, addr: Any) -> Any:
        # A sync worker serves one request at a time, so one slot is enough.
        self._headers = req.headers
        return super().handle_request(listener, req, client, addr)


class HookfanLogger(GunicornLogger):  # type: ignore[misc]
    """gunicorn's own log lines through hookfan's root handler (JSON or console, at
    ``--log-level``), instead of gunicorn's handlers and format."""

    def setup(self, cfg: Any) -> None:
        for logger in (self.error_log, self.access_log):
            logger.handlers[:] = []
            logger.propagate = True
            logger.setLevel(logging.NOTSET)


def app_ready(store: Store) -> bool:
    """Readiness of the app: Redis answers and a route table has been published (each worker
    loads it within ~250 ms). Raises redis errors, which :class:`RedisCheck` turns false."""
    return store.routes_version() is not None


def serving_hooks(settings: Settings) -> dict[str, Any]:
    """gunicorn hooks that serve metrics and health from the master (``when_ready``) and drop
    a dead worker's live metric samples (``child_exit``)."""
    def when_ready(_server: Any) -> None:
        if settings.metrics_addr is not None:
            metrics.serve(settings.metrics_addr, metrics.multiproc_registry())
        if settings.health_addr is not None:
            store = Store(connect(settings.redis, timeout=1.0))
            HealthServer(settings.health_addr, RedisCheck(store.r, lambda _: app_ready(store)),
                         ).start()

    def child_exit(_server: Any, worker: Any) -> None:
        if settings.metrics_addr is not None:
            metrics.mark_dead(worker.pid)

    return {"when_ready": when_ready, "child_exit": child_exit}


class IntakeServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, extra: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.extra = extra or {}
        super().__init__()

    def load_config(self) -> None:
        s = self.settings.intake
        host, port = s.http_addr
        options = {
            "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            "workers": s.workers,
            "worker_class": f"{IntakeWorker.__module__}.{IntakeWorker.__qualname__}",
            # The arbiter kills a worker stuck longer than this: the last line against a client
            # that trickles its headers.
            "timeout": int(s.proxy_read_timeout + s.proxy_write_timeout) + 5,
            # SIGTERM: stop accepting, finish in-flight requests for at most this long.
            "graceful_timeout": math.ceil(self.settings.operator.graceful_shutdown_timeout),
            "limit_request_fields": 200,
            "limit_request_field_size": 16384,
            "accesslog": None,
            "logger_class": f"{HookfanLogger.__module__}.{HookfanLogger.__qualname__}",
            **serving_hooks(self.settings),
            **self.extra,
        }
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn >= 25.1 opens a control socket in $HOME: one path shared by every
            # instance on a host, and unwritable under a read-only root filesystem.
            options.setdefault("control_socket_disable", True)
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        app = create_app(self.settings)
        intake = app.view_functions["intake"]
        assert isinstance(intake, Intake)
        intake.tracing = tracing.setup(self.settings.otel, "app")  # in the worker: after fork
        if self.settings.metrics_addr is not None:
            metrics.install_app(app)
        return app


def run(settings: Settings) -> None:
    if settings.metrics_addr is not None:
        metrics.prepare_multiproc("app")  # before gunicorn forks a worker
    IntakeServer(settings).run()
