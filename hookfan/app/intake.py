"""The intake view: match, capture, persist durably, answer. No route/path logic of Flask."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterable
from typing import Any

import redis
from flask import Flask, Response, jsonify, request
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import RequestEntityTooLarge

from hookfan import keys
from hookfan.envelope import REQUEST_HEADER, StoredRequest
from hookfan.metrics import BODY_KEY, NO_ROUTE, ROUTE_KEY, route_label
from hookfan.routes import Backend, match, normalize_host
from hookfan.store import Store
from hookfan.tracing import Tracing

from .routecache import RouteCache

log = logging.getLogger(__name__)

RAW_HEADERS = "hookfan.raw_headers"
"""WSGI environ key where hookfan's gunicorn worker puts the headers as received."""
RETRY_AFTER = "5"
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
    """The whole body, or RequestEntityTooLarge past ``limit`` bytes, chunked bodies included.
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
    except (OSError, ValueError, ParseException):
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


STARTED = "hookfan.started"


def install_request_log(app: Flask) -> None:
    """One record per answered request: status, matched route, request id, body size and
    duration. Never the path, query, headers or body, which may carry secrets."""
    @app.before_request
    def _start() -> None:
        request.environ[STARTED] = time.monotonic()

    @app.after_request
    def _answered(resp: Response) -> Response:
        started = request.environ.get(STARTED, time.monotonic())
        log.info("request answered", extra={
            "status": resp.status_code, "method": request.method,
            "route": request.environ.get(ROUTE_KEY, NO_ROUTE),
            "request_id": resp.headers.get(REQUEST_HEADER),
            "bytes": request.environ.get(BODY_KEY),
            "duration": round(time.monotonic() - started, 6)})
        return resp


class Intake:
    def __init__(self, store: Store, routes: RouteCache, write_timeout: float,
                 dedupe_headers: tuple[str, ...] = (), dedupe_window: float = 86400.0) -> None:
        self.store = store
        self.routes = routes
        self.write_timeout = write_timeout
        self.dedupe_headers = dedupe_headers
        self.dedupe_window = dedupe_window
        self.tracing: Tracing = Tracing()
        """Set by the server when ``--otel-endpoint`` is given; no-op otherwise."""

    def __call__(self) -> Response:
        """Answer one webhook, inside a ``hookfan.intake`` span (continuing the sender's
        trace when it sent a traceparent) when tracing is on."""
        with self.tracing.span("hookfan.intake", "server",
                               parent=request.headers.get("traceparent"),
                               attrs={"http.request.method": request.method}) as span:
            resp = self._answer()
            if span is not None:
                span.set_attribute("http.response.status_code", resp.status_code)
                span.set_attribute("hookfan.route",
                                   str(request.environ.get(ROUTE_KEY, NO_ROUTE)))
            return resp

    def _answer(self) -> Response:
        limit = request.max_content_length or 0
        refused = refuse(request.method, request.headers.get("Transfer-Encoding"))
        if refused is not None:
            drain(request.environ, limit)
            return refused
        table = self.routes.table()
        if table is None:
            drain(request.environ, limit)
            return error(503, "no route table loaded yet; is the operator running?",
                         **{"Retry-After": RETRY_AFTER})
        host = request.headers.get("Host", "")
        backends = match(table, host)
        request.environ[ROUTE_KEY] = route_label([b.route for b in backends])
        if not backends:
            drain(request.environ, limit)
            return error(503, "no RequestClone matches this host")
        try:
            body = read_body(request.environ, limit)
        except RequestEntityTooLarge:
            drain(request.environ, 2 * limit)
            return error(413, f"body exceeds the limit of {limit} bytes")
        except TimeoutError:
            return error(408, "request body not received in time")
        except MALFORMED_BODY:
            return error(400, "malformed request body (bad chunked framing or cut short)")
        request.environ[BODY_KEY] = len(body)
        stored = StoredRequest(method=request.method, uri=raw_uri(request.environ),
                               headers=raw_headers(request.environ), body=body,
                               client=request.remote_addr or "", accepted=time.time(), host=host)
        request_id = os.urandom(16).hex()
        try:
            with self.tracing.span("hookfan.store", attrs={"hookfan.request_id": request_id}):
                stored = dataclasses.replace(stored, trace=self.tracing.traceparent())
                request_id, copies = self._store(request_id, stored, backends)
        except redis.RedisError as exc:
            log.error("request not stored, answered 503: %s", type(exc).__name__)
            return error(503, "storage unavailable, retry later", **{"Retry-After": RETRY_AFTER})
        sock = request.environ.get("gunicorn.socket")
        if sock is not None:
            sock.settimeout(self.write_timeout)
        resp = jsonify(id=request_id, deliveries=copies)
        resp.status_code = 202
        resp.headers[REQUEST_HEADER] = request_id
        return resp

    def _store(self, request_id: str, stored: StoredRequest,
               backends: tuple[Backend, ...]) -> tuple[str, int]:
        """(request id, copies) of the stored request; a repeat of a provider delivery id
        within the window returns the first request's instead of storing anything."""
        key = dedupe_key(self.dedupe_headers, stored.headers, stored.host)
        if key is None:
            return request_id, len(self.store.accept(request_id, stored, backends))
        done = self.store.accept_once(request_id, stored, backends, key, self.dedupe_window)
        if done.duplicate:
            log.info("duplicate provider delivery id, nothing stored",
                     extra={"request_id": done.request_id})
        return done.request_id, done.deliveries
