"""The intake view: match, capture, persist durably, answer. No route/path logic of Flask."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
from flask import Flask, Request, Response, jsonify, request
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import RequestEntityTooLarge

from hookfan import answers, keys, signatures
from hookfan.envelope import REQUEST_HEADER, StoredRequest
from hookfan.metrics import BODY_KEY, NO_ROUTE, ROUTE_KEY, STARTED_KEY, route_label
from hookfan.routes import Backend, PathRoute, normalize_host, request_host
from hookfan.store import OverQuota, Quota, Replayed, Store, accepted, is_oom
from hookfan.tracing import Tracing

from .answer import Waiter
from .commit import GroupCommit, NotAcknowledged, Unknown
from .deadline import RequestTimeout
from .peers import TrustedPeers
from .routecache import RouteCache

log = logging.getLogger(__name__)

RAW_HEADERS = "hookfan.raw_headers"
"""WSGI environ key where hookfan's gunicorn worker puts the headers as received."""
RETRY_AFTER = "5"
SUSPENDED_RETRY_AFTER = "60"
"""Seconds a sender is asked to wait before retrying a suspended Receiver: a suspension is
an operator's decision, usually longer than a Redis hiccup."""
REFUSED_METHODS = frozenset({"CONNECT", "TRACE"})
"""Never forwarded: CONNECT asks for a tunnel, TRACE echoes the request (headers included)."""
ALLOW = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
MALFORMED_BODY = (ParseException, NoMoreData)
"""gunicorn's errors for a body that breaks its framing (a bad chunk size, a missing
terminator, the connection closed early): the sender gets 400, not 500."""


def error(status: int, message: str, **headers: str) -> Response:
    resp = jsonify(error=message)
    resp.status_code = status
    resp.headers.update(headers)
    return resp


def raw_headers(environ: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Headers in arrival order with duplicates. Under gunicorn they come from its parser;
    elsewhere (Flask's test client) they are rebuilt from the CGI variables."""
    given: Iterable[tuple[str, str]] | None = environ.get(RAW_HEADERS)
    if given is not None:
        return tuple((canonical(n), v) for n, v in given)
    out = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out.append((canonical(key[5:].replace("_", "-")), value))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            out.append((canonical(key.replace("_", "-")), value))
    return tuple(out)


def canonical(name: str) -> str:
    """``X-HUB-SIGNATURE`` -> ``X-Hub-Signature``, the form Go's net/http (the original) sent."""
    return "-".join(part.capitalize() for part in name.split("-"))


def raw_uri(environ: dict[str, Any]) -> str:
    uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if uri:
        return str(uri)
    query = environ.get("QUERY_STRING", "")
    return str(environ.get("PATH_INFO", "/")) + ("?" + query if query else "")


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The whole body, or RequestEntityTooLarge past ``limit`` bytes, chunked bodies included;
    NoMoreData when the connection closed before the Content-Length (or the last chunk) came.
    (Werkzeug's limited stream stops at the limit without complaint for chunked bodies, which
    would silently truncate them, as the original did.)"""
    declared = environ.get("CONTENT_LENGTH")
    if declared and int(declared) > limit:
        raise RequestEntityTooLarge()
    stream = environ["wsgi.input"]
    if declared:
        want = int(declared)
    elif environ.get("wsgi.input_terminated"):
        want = limit + 1
    else:
        return b""
    parts = []
    got = 0
    while got < want:
        chunk = stream.read(min(1 << 18, want - got))
        if not chunk:
            if declared:
                # gunicorn hands back what came before the close without complaint: a body
                # cut short of its Content-Length must never be stored as if it were whole.
                raise NoMoreData(b"")
            break
        parts.append(chunk)
        got += len(chunk)
    if got > limit:
        raise RequestEntityTooLarge()
    return b"".join(parts)


def drain(environ: dict[str, Any], limit: int) -> None:
    """Read and discard an unread body (up to ``limit`` bytes, within the read timeout) before
    an early answer, so the sender finishes sending and reads the answer instead of a reset."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    left = limit
    try:
        while left > 0:
            chunk = stream.read(min(65536, left))
            if not chunk:
                return
            left -= len(chunk)
    except (OSError, ValueError, ParseException, RequestTimeout):
        return


def dedupe_key(names: tuple[str, ...], headers: tuple[tuple[str, str], ...],
               host: str) -> str | None:
    """The de-duplication key of a request: the first of ``names`` (case-insensitive) it
    carries, with its value and the normalised host; None when it carries none of them."""
    present = {n.lower(): v for n, v in reversed(headers)}
    for name in names:
        value = present.get(name.lower())
        if value:
            return keys.dedupe(normalize_host(host), name, value)
    return None


def refuse(method: str, transfer_encoding: str | None) -> Response | None:
    """The answer to a request hookfan never takes, or None. gunicorn already refuses a
    request with both Content-Length and Transfer-Encoding, or with an unknown coding; a coding
    it accepts besides ``chunked`` (``gzip, chunked``) would be stored still encoded and
    forwarded without saying so, so only plain ``chunked`` passes."""
    if method in REFUSED_METHODS:
        return error(405, f"{method} is never forwarded", Allow=ALLOW)
    if transfer_encoding is not None and transfer_encoding.strip().lower() != "chunked":
        return error(501, "only Transfer-Encoding: chunked is supported")
    return None


def install_request_log(app: Flask) -> None:
    """One record per answered request: status, matched route, request id, body size and
    duration. Never the path, query, headers or body, which may carry secrets."""
    @app.before_request
    def _start() -> None:
        request.environ[STARTED_KEY] = time.monotonic()

    @app.after_request
    def _answered(resp: Response) -> Response:
        if not log.isEnabledFor(logging.INFO):
            return resp
        environ = request.environ
        started = environ.get(STARTED_KEY) or time.monotonic()
        log.info("request answered", extra={
            "status": resp.status_code, "method": environ.get("REQUEST_METHOD"),
            "route": environ.get(ROUTE_KEY, NO_ROUTE),
            "request_id": resp.headers.get(REQUEST_HEADER),
            "bytes": environ.get(BODY_KEY),
            "duration": round(time.monotonic() - started, 6)})
        return resp


class Intake:
    def __init__(self, store: Store, routes: RouteCache, write_timeout: float,
                 dedupe_headers: tuple[str, ...] = (), dedupe_window: float = 86400.0,
                 lookup: Store | None = None, max_pending: int = 0, quota: Quota | None = None,
                 trusted_proxies: tuple[str, ...] = (), min_replicas_ack: int = 0,
                 replica_ack_timeout: float = 1.0) -> None:
        self.store = store
        self.commit = GroupCommit(store.r, store.scripts["accept"], min_replicas_ack,
                                  replica_ack_timeout)
        self.lookup = lookup or store
        """Where to look after a lost reply: a client of its own, with short timeouts."""
        self.routes = routes
        self.write_timeout = write_timeout
        self.dedupe_headers = dedupe_headers
        self.dedupe_window = dedupe_window
        self.max_pending = max_pending
        self.quota = quota or Quota()
        """What one host may hold in Redis; the accept script checks it."""
        self.trusted = TrustedPeers(trusted_proxies)
        """Whether a peer's X-Forwarded-Proto/-Host reach backends as sent."""
        self._pending = 0
        self._pending_at = 0.0
        self._memory_full = False
        self._memory_at = 0.0
        self._written = 0
        self._write_budget = float("inf")
        self.rejected: Callable[[str], None] = lambda reason: None
        """Counts a request answered 503 by reason; set by the metrics when they are on."""
        self.unacknowledged: Callable[[], None] = lambda: None
        """Counts a request stored but answered 503 for want of replica acknowledgements."""
        self.tracing: Tracing = Tracing()
        """Set by the server when ``--otel-endpoint`` is given; no-op otherwise."""
        self.waiter = Waiter(store.r, 0)
        """Waits for first answers (AwaitAll Receivers); set by :func:`hookfan.app.create_app`
        with a client of its own and ``--max-answer-waits``. The default waits for none."""
        self.waited: Callable[[str, str, float], None] = lambda mode, outcome, took: None
        """Counts an answer-mode request by mode and outcome; set by the metrics."""

    def __call__(self) -> Response:
        """Answer one webhook, inside a ``hookfan.intake`` span (continuing the sender's
        trace when it sent a traceparent) when tracing is on."""
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        self.commit.expect()
        try:
            return self._traced(req)
        finally:
            self.commit.settled()

    def _traced(self, req: Request) -> Response:
        if not self.tracing.enabled:
            return self._answer(req, req.environ)
        with self.tracing.span("hookfan.intake", "server",
                               parent=req.headers.get("traceparent"),
                               attrs={"http.request.method": req.method}) as span:
            resp = self._answer(req, req.environ)
            if span is not None:
                span.set_attribute("http.response.status_code", resp.status_code)
                span.set_attribute("hookfan.route", str(req.environ.get(ROUTE_KEY, NO_ROUTE)))
            return resp

    def _answer(self, req: Request, environ: dict[str, Any]) -> Response:
        limit = req.max_content_length or 0
        method = req.method
        refused = refuse(method, environ.get("HTTP_TRANSFER_ENCODING"))
        if refused is not None:
            drain(environ, limit)
            return refused
        host = environ.get("HTTP_HOST", "")
        route_key = request_host(host)
        if route_key is None:
            drain(environ, limit)
            return error(400, "missing or invalid Host header")
        table = self.routes.table()
        path = environ.get("PATH_INFO", "")
        if table is None or (route_key not in table.routes and path not in table.receivers):
            table = self.routes.fresher()  # published since the last poll?
        if table is None:
            drain(environ, limit)
            return error(503, "no route table loaded yet; is the operator running?",
                         **{"Retry-After": RETRY_AFTER})
        backends = table.routes.get(route_key, ())
        # One dict look for a table with Receivers, none without: host routing costs the same.
        receiver = table.receivers.get(path) if table.receivers else None
        if receiver is not None:
            if receiver.suspended:
                environ[ROUTE_KEY] = receiver.route
                drain(environ, limit)
                return error(503, "this Receiver is suspended (spec.suspend)",
                             **{"Retry-After": SUSPENDED_RETRY_AFTER})
            backends += receiver.backends
            if receiver.body_limit:
                limit = min(limit, receiver.body_limit) if limit else receiver.body_limit
        environ[ROUTE_KEY] = route_label([b.route for b in backends])
        if not backends:
            drain(environ, limit)
            if receiver is not None:
                return error(503, "no target of this Receiver is ready (see its status)",
                             **{"Retry-After": RETRY_AFTER})
            return error(503, "no RequestClone matches this host")
        try:
            body = read_body(environ, limit)
        except RequestEntityTooLarge:
            drain(environ, 2 * limit)
            return error(413, f"body exceeds the limit of {limit} bytes")
        except (TimeoutError, RequestTimeout):
            return error(408, "request not received within --proxy-read-timeout")
        except MALFORMED_BODY:
            return error(400, "malformed request body (bad chunked framing or cut short)")
        environ[BODY_KEY] = len(body)
        seen = None
        if table.verify:  # a dict lookup more only when some host is verified
            check = table.verify.get(route_key)
            if check is not None:
                if check.unreadable:  # never served unverified
                    log.error("request not stored, answered 503: %s", check.unreadable,
                              extra={"route": environ[ROUTE_KEY]})
                    self.rejected("verify_unreadable")
                    return error(503, "signing secrets unavailable, retry later",
                                 **{"Retry-After": RETRY_AFTER})
                verdict = signatures.check(check, raw_headers(environ), body, time.time(),
                                           route_key)
                if isinstance(verdict, signatures.Failed):
                    return self._unsigned(verdict.reason)
                if verdict.replay_key is not None:
                    seen = (verdict.replay_key, verdict.ttl)
        self._written += len(body)
        shed = self._shed()
        if shed is not None:
            return shed
        waiting = receiver if receiver is not None and answers.awaited(receiver.mode) else None
        if waiting is None:
            return self._persist(req, environ, body, backends, seen, None)
        if not self.waiter.enter():
            return self._waits_full(waiting)
        try:
            return self._persist(req, environ, body, backends, seen, waiting)
        finally:
            self.waiter.leave()

    def _persist(self, req: Request, environ: dict[str, Any], body: bytes,
                 backends: tuple[Backend, ...], seen: tuple[str, float] | None,
                 waiting: PathRoute | None) -> Response:
        """Store the request and its copies, then answer: 202, or with ``waiting`` (a
        Receiver with an AwaitAll mode, whose targets are the last of ``backends``) the
        answer its mode makes of the first answers of its targets."""
        method, host = req.method, environ.get("HTTP_HOST", "")
        request_id = os.urandom(16).hex()
        try:
            with self.tracing.span("hookfan.store", attrs={"hookfan.request_id": request_id}):
                stored = StoredRequest(method=method, uri=raw_uri(environ),
                                       headers=raw_headers(environ), body=body,
                                       client=req.remote_addr or "", accepted=time.time(),
                                       host=host, trace=self.tracing.traceparent(),
                                       trusted=self.trusted(req.remote_addr or ""),
                                       await_ms=(max(1, int(waiting.timeout * 1000))
                                                 if waiting is not None else 0))
                request_id, copies, duplicate = self._store(request_id, stored, backends,
                                                            seen)
        except Replayed:
            return self._unsigned("replayed: this signed request was accepted before")
        except NotAcknowledged as exc:
            return self._not_acknowledged(exc)
        except OverQuota as exc:
            return self._over_quota(exc)
        except redis.RedisError as exc:
            if is_oom(exc):
                return self._full()
            return self._unavailable(exc)
        if waiting is not None and not duplicate:
            ids = keys.delivery_ids(request_id, copies)[copies - len(waiting.backends):]
            resp = self._awaited(waiting, request_id, ids)
        else:
            resp = None
        sock = environ.get("gunicorn.socket")
        if sock is not None:
            sock.settimeout(self.write_timeout)
        if resp is not None:
            return resp
        # What jsonify(id=..., deliveries=...) answers, without its encoder.
        return Response(b'{"deliveries":%d,"id":"%s"}\n' % (copies, request_id.encode()), 202,
                        {REQUEST_HEADER: request_id}, mimetype="application/json")

    def _awaited(self, receiver: PathRoute, request_id: str, ids: list[str]) -> Response:
        """The answer of an AwaitAll Receiver's request, stored as ``request_id`` with the
        copies ``ids`` for its targets: wait for their first answers (up to its timeout) and
        answer as its mode says (:func:`hookfan.answers.choose`). The body is never logged."""
        started = time.monotonic()
        waited = self.waiter.wait(request_id, ids, receiver.timeout)
        chosen = answers.choose(receiver.mode, waited.answers, waited.missing)
        outcome = "redis_error" if waited.failed else "timeout" if waited.missing else "answered"
        self.waited(receiver.mode, outcome, time.monotonic() - started)
        if waited.missing:
            log.info("answer wait ended without %d of %d first answers (%s)", waited.missing,
                     len(ids), outcome, extra={"request_id": request_id,
                                               "route": receiver.route})
        resp = Response(chosen.body, chosen.status)
        del resp.headers["Content-Type"]  # the backend's own, or none
        for name, value in chosen.headers:
            resp.headers.add(name, value)
        resp.headers[REQUEST_HEADER] = request_id
        return resp

    def _waits_full(self, receiver: PathRoute) -> Response:
        # Refused before storing: a 503 that told a lie (stored after all) would be retried
        # and delivered twice; a 202 would pass for the backend's answer.
        log.warning("request not stored, answered 503: --max-answer-waits requests of this "
                    "process already wait for answers", extra={"route": receiver.route})
        self.rejected("answer_waits")
        self.waited(receiver.mode, "refused", 0.0)
        return error(503, "too many requests waiting for their answers, retry later",
                     **{"Retry-After": RETRY_AFTER})

    def _shed(self) -> Response | None:
        """503 (before writing) while Redis is in its delivery reserve, or while more than
        ``--max-pending`` copies are pending; None otherwise. Both figures are read at most
        every :data:`MEMORY_REFRESH` / :data:`PENDING_REFRESH` seconds per process."""
        now = time.monotonic()
        if now >= self._memory_at or self._written > self._write_budget:
            self._memory_at = now + MEMORY_REFRESH
            self._written = 0
            # On the short-timeout client: a Redis that does not answer this leaves no time
            # for the write within the 2 s a sender gets its 503 in.
            try:
                info = self.lookup.r.info("memory")
            except redis.RedisError as exc:
                self._memory_at = 0.0
                return self._unavailable(exc)
            limit = int(info.get("maxmemory", 0))
            self._memory_full = bool(limit) and (
                int(info.get("used_memory", 0)) >= (1 - MEMORY_RESERVE) * limit)
            # Look again after this process wrote an eighth of the reserve, however soon.
            self._write_budget = MEMORY_RESERVE * limit / 8 if limit else float("inf")
        if self._memory_full:
            return self._full()
        if not self.max_pending:
            return None
        if now >= self._pending_at:
            self._pending_at = now + PENDING_REFRESH
            try:
                self._pending = self.lookup.pending_count()
            except redis.RedisError as exc:
                self._pending_at = 0.0
                return self._unavailable(exc)
        if self._pending <= self.max_pending:
            return None
        log.warning("request not stored, answered 503: %d copies pending, over --max-pending "
                    "%d", self._pending, self.max_pending)
        self.rejected("max_pending")
        return error(503, "too many deliveries pending, retry later",
                     **{"Retry-After": RETRY_AFTER})

    def _over_quota(self, exc: OverQuota) -> Response:
        # The route names the host; the Host value itself is never logged.
        log.warning("request not stored, answered 503: its host holds its quota (%s)",
                    exc.flag, extra={"route": request.environ.get(ROUTE_KEY, NO_ROUTE)})
        self.rejected("quota")
        return error(503, "this host has too many webhooks stored, retry later",
                     **{"Retry-After": RETRY_AFTER})

    def _unsigned(self, reason: str) -> Response:
        # The reason names the check and header names only: no value sent, no digest.
        log.warning("request not stored, answered 401: signature verification failed (%s)",
                    reason, extra={"route": request.environ.get(ROUTE_KEY, NO_ROUTE)})
        self.rejected("signature")
        resp = jsonify(error="signature verification failed", reason=reason)
        resp.status_code = 401
        return resp

    def _unavailable(self, exc: BaseException) -> Response:
        log.error("request not stored, answered 503: %s", type(exc).__name__)
        self.rejected("redis_unavailable")
        return error(503, "storage unavailable, retry later", **{"Retry-After": RETRY_AFTER})

    def _not_acknowledged(self, exc: NotAcknowledged) -> Response:
        log.error("request stored but answered 503: %s (--min-replicas-ack); the sender's "
                  "retry may be delivered twice", exc)
        self.unacknowledged()
        return error(503, "storage not replicated in time, retry later",
                     **{"Retry-After": RETRY_AFTER})

    def _full(self) -> Response:
        log.error("request not stored, answered 503: Redis is full (its maxmemory, less the "
                  "reserve kept for deliveries); deliveries and dead-letter purges free memory")
        self.rejected("redis_full")
        return error(503, "storage full, retry later", **{"Retry-After": RETRY_AFTER})

    def _store(self, request_id: str, stored: StoredRequest, backends: tuple[Backend, ...],
               seen: tuple[str, float] | None = None) -> tuple[str, int, bool]:
        """(request id, copies, duplicate) of the stored request; a repeat of a provider delivery id
        within the window returns the first request's instead of storing anything. The write
        goes through the process's group commit. When its reply is lost, look (on a fresh
        connection) whether it committed before answering. ``seen``: see
        :meth:`Store.accept_call`. Raises redis errors: not stored; :class:`Replayed`."""
        key = dedupe_key(self.dedupe_headers, stored.headers, stored.host)
        started = time.monotonic()
        for attempt in (1, 2):
            keys_, args, ids = self.store.accept_call(request_id, stored, backends, key,
                                                      self.dedupe_window, self.quota, seen)
            try:
                done = accepted(self.commit(keys_, args), request_id, len(ids))
                break
            except Unknown:
                found = self.lookup.resolve(request_id, key)
                log.warning("reply to a write lost; looked: %s",
                            "not stored" if found is None else "stored")
            if found is not None and self.commit.min_acks:
                # Stored, but whether replicas have it is unknown: no 202 for it.
                raise NotAcknowledged("reply lost; replicas not asked")
            if found is not None:
                done = found if found.duplicate else accepted(None, request_id, len(ids))
                break
            # Not stored, and that id is fenced: a write under a new id cannot duplicate it.
            # Once only, and only when the loss was quick (a connection Redis had closed).
            if attempt == 2 or time.monotonic() - started > RETRY_WITHIN:
                raise redis.ConnectionError("write lost, not stored")
            request_id = os.urandom(16).hex()
        if done.duplicate:
            log.info("duplicate provider delivery id, nothing stored",
                     extra={"request_id": done.request_id})
        return done.request_id, done.deliveries, done.duplicate

RETRY_WITHIN = 0.5
"""A write found not stored after a lost reply is sent again under a new id only if all this
took less than this many seconds (the 503 must still come within 2 s)."""
PENDING_REFRESH = 1.0
"""Seconds between two reads of the pending count for ``--max-pending``, per app process."""
MEMORY_RESERVE = 0.10
"""Share of Redis's ``maxmemory`` the intake leaves to the workers: it stops storing webhooks
at 90 %, so deliveries (whose writes free memory in the end), dead letters and Celery's own
messages still fit, and the backlog drains. At 100 % Redis refuses every write that grows
memory, Celery's included."""
MEMORY_REFRESH = 0.1
"""Seconds between two reads of Redis's memory figures, per app process."""
