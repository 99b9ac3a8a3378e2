"""One delivery attempt: send the copy, classify the answer, record what comes next."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from hookfan.config import DeliverySettings
from hookfan.envelope import forward_headers
from hookfan.policy import Outcome, classify, next_step, parse_retry_after
from hookfan.store import Attempt, Deferred, Store
from hookfan.tracing import Tracing

from .transport import Sent, Transport

log = logging.getLogger(__name__)


def origin_form(uri: str) -> str:
    """The request target to send: absolute-form (``http://h/p``) reduced to ``/p``."""
    if uri.startswith("/"):
        return uri
    scheme, sep, rest = uri.partition("://")
    if sep and scheme.isalpha():
        slash = rest.find("/")
        return rest[slash:] if slash >= 0 else "/"
    return "/" + uri if uri != "*" else "/"


class Deliverer:
    """Makes attempts for one process, with its own keep-alive connections to backends."""

    def __init__(self, store: Store, settings: DeliverySettings,
                 observe: Callable[[Attempt, Outcome, str, float], None] | None = None,
                 tracing: Tracing | None = None) -> None:
        self.store = store
        self.settings = settings
        self.http = Transport(settings.delivery_timeout)
        self.observe = observe
        """Called with (attempt, outcome, kind, seconds taken) after each finished attempt."""
        self.tracing = tracing or Tracing()

    def attempt(self, delivery_id: str, generation: int) -> str:
        """Make one attempt; returns the outcome kind, ``stale`` for a superseded message, or
        ``deferred`` when the backend already has ``--backend-concurrency`` attempts in flight."""
        s = self.settings
        begun = time.time_ns()
        # A deferred copy waits about as long as a running attempt may take, jittered so
        # deferred copies do not all come back at once.
        att = self.store.begin(delivery_id, generation, hold=2 * s.delivery_timeout + 5,
                               cap=s.backend_concurrency,
                               busy_delay=random.uniform(0.5, 1.0) * s.delivery_timeout)
        if att is None:
            return "stale"
        if isinstance(att, Deferred):
            log.debug("attempt deferred: backend at its in-flight cap",
                      extra={"delivery_id": delivery_id})
            return "deferred"
        parent = self.store.trace_parent(att.request_id) if self.tracing.enabled else None
        with self.tracing.span("hookfan.deliver", "consumer", parent=parent, start_ns=begun,
                               attrs=span_attrs(att)):
            return self._finish(att, generation)

    def _finish(self, att: Attempt, generation: int) -> str:
        s, delivery_id = self.settings, att.delivery_id
        t0 = time.monotonic()
        with self.tracing.span(f"HTTP {att.request.method}", "client",
                               attrs={"server.address": att.backend.url}) as span:
            sent = self.send(att)
            if span is not None and sent.status is not None:
                span.set_attribute("http.response.status_code", sent.status)
        took = time.monotonic() - t0
        outcome = classify(sent.status, sent.error)
        if outcome.kind == "delivered":
            self.store.complete(delivery_id, att.backend)
            return self._log(att, outcome, "delivered", took)
        now = time.time()
        kind, due = next_step(outcome, att.number, att.started, now, s.min_retry_delay,
                              s.max_retry_delay, s.max_retry_age,
                              parse_retry_after(sent.retry_after, now))
        if kind == "retry":
            self.store.retry(delivery_id, generation, due, outcome.reason, att.backend)
        else:
            self.store.dead_letter(delivery_id, generation, outcome.reason, att.backend)
        return self._log(att, outcome, kind, took)

    def send(self, att: Attempt) -> Sent:
        req = att.request
        lines = self.tracing.outbound(
            forward_headers(req, att.request_id, att.delivery_id, att.number))
        had_length = any(n.lower() == "content-length" for n, _ in req.headers)
        body = req.body if (req.body or had_length) else None
        return self.http.send(att.backend.url, req.method, origin_form(req.uri), lines, body)

    def _log(self, att: Attempt, outcome: Outcome, kind: str, took: float) -> str:
        log.info("attempt %s", kind, extra={
            "delivery_id": att.delivery_id, "request_id": att.request_id,
            "route": att.backend.route, "backend": att.backend.url, "attempt": att.number,
            "status": outcome.status, "reason": outcome.reason, "duration": round(took, 6)})
        if self.observe is not None:
            try:
                self.observe(att, outcome, kind, took)
            except Exception as exc:  # figures must never fail a delivery that happened
                log.warning("attempt not recorded in metrics: %s", type(exc).__name__)
        return kind


def span_attrs(att: Attempt) -> dict[str, str | int]:
    """What a delivery span says: ids, route, backend, attempt number. Never content."""
    return {"hookfan.delivery_id": att.delivery_id, "hookfan.request_id": att.request_id,
            "hookfan.route": att.backend.route, "hookfan.backend": att.backend.url,
            "hookfan.attempt": att.number}
