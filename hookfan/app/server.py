"""``hookfan app``: the intake app under gunicorn, with hookfan's own threaded worker class.

The worker class is gunicorn's threaded worker plus what it does not do: it hands the app the
headers exactly as parsed (order and duplicates kept; WSGI's environ merges duplicates), it
bounds each whole request by ``--proxy-read-timeout`` (:mod:`.deadline`) so a slow client gets
dropped instead of holding a thread, and it answers unparseable requests without echoing them.
The threads of one process share Redis round trips (:mod:`hookfan.app.commit`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import _DEFER as DEFER
from gunicorn.workers.gthread import ThreadWorker

from hookfan import metrics, tracing
from hookfan.config import Settings
from hookfan.durability import DurabilityCheck
from hookfan.health import HealthServer, RedisCheck
from hookfan.store import Store, connect

from . import create_app
from .balance import RECHECK, Balance
from .deadline import DeadlineSocket, RequestTimeout
from .intake import RAW_HEADERS, Intake

log = logging.getLogger(__name__)

IDLE_WAIT = 5.0
"""How long a request thread waits for a new connection's first byte (gunicorn's own wait,
bounded by the request's deadline) before handing it back to the poller."""


STATUS_OF = (
    (RequestTimeout, 408, "Request Timeout"),
    (http_errors.LimitRequestLine, 414, "URI Too Long"),
    (http_errors.LimitRequestHeaders, 431, "Request Header Fields Too Large"),
    (http_errors.UnsupportedTransferCoding, 501, "Not Implemented"),
    (http_errors.ExpectationFailed, 417, "Expectation Failed"),
    (http_errors.ForbiddenProxyRequest, 403, "Forbidden"),
    (http_errors.ConfigurationProblem, 500, "Internal Server Error"),
    (http_errors.InvalidResponseHeader, 500, "Internal Server Error"),
    (http_errors.InvalidResponseHeaderName, 500, "Internal Server Error"),
    (http_errors.ParseException, 400, "Bad Request"),
)
"""What a request gunicorn could not parse is answered: the first class that matches."""


def refusal(status: int, reason: str) -> bytes:
    """A whole answer with a fixed body: nothing of the request (a header value, the query
    string) is echoed, unlike gunicorn's own error pages."""
    body = b'{"error":"%s"}\n' % reason.lower().encode()
    return (b"HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (status, reason.encode(), len(body), body))


def header_bytes(headers: list[tuple[str, str]]) -> int:
    """Bytes of the header lines as received (``name: value`` and CRLF each)."""
    return sum(len(n) + len(v) + 4 for n, v in headers)


class IntakeWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker (``--threads`` request threads per process; kept-alive
    connections wait in its poller without holding a thread), with hookfan's header capture,
    header-size limit, whole-request deadline (:mod:`.deadline`) and error answers."""

    read_timeout = 10.0
    write_timeout = 10.0

    @property
    def worker_connections(self) -> int:
        """gunicorn's loop polls the listening socket while its connections are below this:
        the configured limit, or what it holds now while :mod:`.balance` says another worker
        should take the next one."""
        balance = self.app.balance
        if balance is not None and not balance.may_accept(self.nr_conns):
            if not self._recheck_due:  # wake the loop to look again (it may sleep 1 s)
                self._recheck_due = True
                timer = threading.Timer(RECHECK, self.method_queue.defer, (self._rechecked,))
                timer.daemon = True
                timer.start()
            return int(self.nr_conns)
        return self._max_connections

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._max_connections = value

    _recheck_due = False

    def _rechecked(self) -> None:
        self._recheck_due = False

    def handle_exit(self, sig: Any, frame: Any) -> None:
        if self.app.balance is not None:
            self.app.balance.leave()  # no other worker holds back for this one any more
        super().handle_exit(sig, frame)

    def handle_quit(self, sig: Any, frame: Any) -> None:
        if self.app.balance is not None:
            self.app.balance.leave()
        super().handle_quit(sig, frame)

    def init_process(self) -> None:
        if self.app.balance is not None:
            self.app.balance.join()
        self._local = threading.local()
        self.read_timeout = self.app.settings.intake.proxy_read_timeout
        self.write_timeout = self.app.settings.intake.proxy_write_timeout
        # gunicorn installs the worker's signal handlers, then loads the app (load_wsgi
        # below): a SIGTERM that comes while the app loads is honoured once it has loaded.
        super().init_process()

    def load_wsgi(self) -> None:
        """The app, wrapped: it gets the headers exactly as parsed, and header lines over
        ``--max-header-bytes`` are answered 431 before it runs."""
        super().load_wsgi()
        app_callable, local = self.wsgi, self._local  # type: ignore[has-type]
        max_header_bytes = self.app.settings.intake.max_header_bytes
        too_large = refusal(431, "Request Header Fields Too Large")

        def with_headers(environ: dict[str, Any], start_response: Any) -> Any:
            headers = environ[RAW_HEADERS] = local.headers
            if header_bytes(headers) > max_header_bytes:
                # Before the app: nothing of such a request is stored.
                log.warning("request refused: header lines over --max-header-bytes",
                            extra={"status": 431, "limit": max_header_bytes})
                environ["gunicorn.socket"].sendall(too_large)
                raise StopIteration  # gunicorn closes the connection, answers nothing more
            return app_callable(environ, start_response)

        self.wsgi = with_headers

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Answer a request gunicorn could not parse (or the app failed on) with its status
        and a fixed reason, and log the class of error: never a header value, the path or
        the query, which gunicorn's own messages and pages carry."""
        status, reason = next(((st, r) for cls, st, r in STATUS_OF if isinstance(exc, cls)),
                              (500, "Internal Server Error"))
        peer = addr[0] if isinstance(addr, tuple) and addr else ""
        if status == 500:
            log.error("error handling a request: %s", type(exc).__name__,
                      extra={"status": status, "client": peer})
        else:
            log.info("request refused: %s", type(exc).__name__,
                     extra={"status": status, "client": peer})
        with contextlib.suppress(OSError):
            client.sendall(refusal(status, reason))

    def enqueue_req(self, conn: Any) -> None:
        """A connection goes to a request thread: accepted, or readable again. Its request's
        clock starts here, so time spent queued behind slow senders counts, and every
        connection ahead of a request in the queue is done within the timeout."""
        if not isinstance(conn.sock, DeadlineSocket):
            conn.sock = DeadlineSocket.adopt(conn.sock, self.read_timeout, self.write_timeout)
        conn.sock.start()
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        sock: DeadlineSocket = conn.sock
        try:
            if not conn.initialized and not conn.data_ready and not conn.wait_for_data(
                    max(min(sock.left(), IDLE_WAIT), 0.0)):
                return DEFER  # nothing sent yet: wait in the poller, not in a thread
            return super().handle(conn)
        finally:
            sock.finish()

    def handle_request(self, req: Any, conn: Any) -> Any:
        self._local.headers = req.headers  # this thread's request
        keepalive = super().handle_request(req, conn)
        # Answered: gunicorn's own drain of an unread body (bounded by its own deadline) must
        # not end in a 408 written after the answer.
        conn.sock.finish()
        # A request whose deadline passed (answered 408) leaves the connection at an unknown
        # point of its body: close it rather than drain what a slow sender still trickles.
        return keepalive and not conn.sock.expired


class HookfanLogger(GunicornLogger):  # type: ignore[misc]
    """gunicorn's own log lines through hookfan's root handler (JSON or console, at
    ``--log-level``), instead of gunicorn's handlers and format."""

    def setup(self, cfg: Any) -> None:
        for logger in (self.error_log, self.access_log):
            logger.handlers[:] = []
            logger.propagate = True
            logger.setLevel(logging.NOTSET)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        """gunicorn's debug lines pass exceptions whose text holds request bytes (a premature
        close logs the headers read so far): only their class is logged."""
        self.error_log.debug(msg, *(type(a).__name__ if isinstance(a, BaseException) else a
                                    for a in args), **kwargs)


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
            durable = DurabilityCheck(store.r, settings.redis.allow_unsafe, "app",
                                      report=False).start()  # its workers log
            HealthServer(settings.health_addr, RedisCheck(
                store.r, lambda _: app_ready(store) and not durable.refusing)).start()

    def child_exit(_server: Any, worker: Any) -> None:
        if settings.metrics_addr is not None:
            metrics.mark_dead(worker.pid)

    return {"when_ready": when_ready, "child_exit": child_exit}


class IntakeServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, extra: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.extra = extra or {}
        workers = int(self.extra.get("workers", settings.intake.workers))
        self.balance = Balance(workers) if workers > 1 else None
        """Connections held per worker process, shared by all of them (:mod:`.balance`)."""
        super().__init__()

    def load_config(self) -> None:
        s = self.settings.intake
        host, port = s.http_addr
        options = {
            "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            "workers": s.workers,
            "threads": s.threads,
            # Longer than a proxy's idle upstream connections (ingress-nginx: 60 s), so the
            # proxy, not hookfan, closes an idle one: no request sent on a closing connection.
            "keepalive": 75,
            "worker_class": f"{IntakeWorker.__module__}.{IntakeWorker.__qualname__}",
            # The arbiter kills a worker stuck longer than this: the last line against a client
            # that trickles its headers.
            "timeout": int(s.proxy_read_timeout + s.proxy_write_timeout) + 5,
            # SIGTERM: stop accepting, finish in-flight requests for at most this long.
            "graceful_timeout": math.ceil(self.settings.operator.graceful_shutdown_timeout),
            "limit_request_fields": 200,
            "limit_request_field_size": 16384,
            # Headers with "_" in their names are kept as sent (gunicorn drops them by
            # default). hookfan reads the raw header list, not the WSGI environ where such a
            # name could merge with its "-" twin; the forwarded copy is built from that list.
            "header_map": "dangerous",
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
        # Routes loaded as the process boots, not by its first request: a process that gets
        # no request before Redis goes away still routes (and answers 503 "storage
        # unavailable" rather than "no route table").
        app.extensions["hookfan.routes"].start()
        return app


def run(settings: Settings) -> None:
    if settings.metrics_addr is not None:
        metrics.prepare_multiproc("app")  # before gunicorn forks a worker
    IntakeServer(settings).run()
