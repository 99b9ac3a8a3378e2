"""The one Celery task, ``hookfan.deliver(backend)``: claim a batch of that backend's due
copies, send them, record every outcome, and go on while the backend has due copies and no
other task is waiting for a process.

Each batch is one settle script (record the last batch, claim the next) and one pipelined
read of the stored requests. Copies are sent over keep-alive connections by up to as many
threads as the claim granted sender slots (``--backend-concurrency``, across all workers).
An attempt is started only while it can end before its lease does; a copy left unsent goes
back to the ready queue without counting as an attempt.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from hookfan import answers
from hookfan.config import DeliverySettings
from hookfan.deliverypolicy import DeliveryPolicy, effective
from hookfan.envelope import StoredRequest, forward_headers
from hookfan.policy import Outcome, classify, parse_retry_after, retry_delay
from hookfan.routes import Backend
from hookfan.schedule import Batch, Claimed, Result, Schedule
from hookfan.tracing import Tracing

from .transport import Sent, Transport

log = logging.getLogger(__name__)

MARGIN = 1.0
"""Seconds kept between the last attempt's deadline and the end of its lease."""
SLOW = 0.005
"""An attempt slower than this (seconds) makes the rest of its batch go out concurrently."""
MIN_CYCLE = 0.025
"""Shortest time between two claims of one task unless the last one was half full: under a
steady load a copy waits at most this long for its batch, and batches get fuller (worker CPU
per copy at 500 req/s offered, median of 3 runs: 382 us at 10 ms, 337 us at 25 ms)."""
BUSY = 12
"""A claim that found at least this many copies (a stream of about 500 copies/s to the backend)
waits twice :data:`MIN_CYCLE` before the next, so batches fill to about twice the size where
the per-batch costs matter most; below it a copy's wait stays short (at 680 req/s offered to 2
backends, two alternating runs of 3 rounds each of a throwaway script over
bench/measure.e2e_step, mean of the two medians: worker CPU per copy 116 -> 96 us, Redis
119 -> 105 us)."""
POLICY_TTL = 2.0
"""Seconds a process keeps the published delivery policies before reading them again: a
changed ``spec.delivery`` applies within this (one read per process, not per batch)."""
LINGER = 0.25
"""How long a task keeps its backend with nothing due before handing it back: new copies
meanwhile cost no wake-up, no Celery message and no task start."""
PAUSE_LOOK = 1.0
"""A batch still sending this long after its claim asks Redis whether its backend was paused
meanwhile (then at most this often): the copies not yet sent go back unattempted. Batches
that end sooner never ask; the next claim sees a pause."""


@dataclass(frozen=True)
class Attempt:
    """One finished attempt, as logs, metrics and traces see it."""

    copy: Claimed
    backend: Backend
    request: StoredRequest | None
    outcome: Outcome
    took: float
    retry_after: float | None = None
    """Seconds the backend asked to wait (its Retry-After), if it said."""
    sent: bool = True
    """False when the send window closed before the attempt could start."""

    @property
    def accepted(self) -> float:
        return self.request.accepted if self.request is not None else self.copy.started


Observer = Callable[[Attempt, str], None]
"""Called with each finished attempt and its kind (delivered, retry, dead)."""


def origin_form(uri: str) -> str:
    """The request target to send: absolute-form (``http://h/p``) reduced to ``/p``; the
    asterisk-form of ``OPTIONS *`` as it came."""
    if uri.startswith("/") or uri == "*":
        return uri
    scheme, sep, rest = uri.partition("://")
    if sep and scheme.isalpha():
        slash = rest.find("/")
        return rest[slash:] if slash >= 0 else "/"
    return "/" + uri


@functools.lru_cache(maxsize=4096)
def _url_path(url: str) -> str:
    return urlsplit(url).path


def copy_target(url: str, uri: str) -> str:
    """The request target of a copy to the backend ``url``: the request's own (origin-form)
    when the URL has no path (a RequestClone's), else the URL's path (a Receiver target's)
    with the request's query string."""
    target = origin_form(uri)
    path = _url_path(url)
    if not path:
        return target
    _, sep, query = target.partition("?")
    return path + sep + query


class Courier:
    """Runs ``hookfan.deliver`` tasks in one (pool) process, with its own connections."""

    def __init__(self, schedule: Schedule, settings: DeliverySettings,
                 observe: Observer | None = None, tracing: Tracing | None = None,
                 on_stale: Callable[[int], None] | None = None,
                 stopping: Callable[[], bool] = lambda: False,
                 on_pause: Callable[[str], None] | None = None) -> None:
        self.schedule = schedule
        self.on_pause = on_pause
        """Called with a backend's URL when a settle auto-paused it (--auto-pause-after)."""
        self.s = settings
        self.http = Transport(settings.delivery_timeout)
        self.observe = observe
        self.on_stale = on_stale
        self.tracing = tracing or Tracing()
        self._pool: ThreadPoolExecutor | None = None
        self._slow: set[str] = set()
        """Backends whose last batch in this process had an answer slower than :data:`SLOW`:
        their next batch goes out concurrently from its first copy."""
        self.stopping = stopping
        """True once the worker began a warm shutdown: finish the batch, claim no more."""
        self._look = (0.0, False)
        """(monotonic time of the next look at the pause, paused when last looked)."""
        self._look_lock = threading.Lock()
        self._policies: dict[str, DeliveryPolicy] = {}
        self._policies_at = -POLICY_TTL

    def policy(self, url: str) -> DeliveryPolicy | None:
        """``url``'s published delivery policy (None: the flags alone), at most
        :data:`POLICY_TTL` old. Raises redis errors."""
        now = time.monotonic()
        if now - self._policies_at >= POLICY_TTL:
            self._policies, self._policies_at = self.schedule.policies(), now
        return self._policies.get(url)

    def run(self, url: str) -> int:
        """Deliver ``url``'s due copies until none has been due for :data:`LINGER` seconds,
        the task's budget is spent or other tasks wait; returns the number of attempts made.
        Raises redis errors (the copies claimed are then taken back when their lease runs
        out)."""
        token = os.urandom(6).hex()
        started = idle = time.monotonic()
        results: list[Result] = []
        attempts: list[Attempt] = []
        held, made, want, last = 0, 0, self.s.batch, 0.0
        policy = self.policy(url)
        s = self.s if policy is None else effective(self.s, policy)
        # An ordered backend's batches hold one copy: waiting for more would only slow it.
        cycle = 0.0 if policy is not None and policy.ordered else MIN_CYCLE
        while True:
            # A claim that found little waits a moment, so copies arriving one by one are
            # sent in batches (one settle script per batch, not per copy).
            pause = last + cycle - time.monotonic()
            if want and pause > 0:
                time.sleep(pause)
            claimed_at = last = time.monotonic()
            batch = self.schedule.settle(url, token, held, results, want, linger=want > 0,
                                         policy=policy)
            self._report(attempts, batch)
            if batch.autopaused:
                self._auto_paused(url)
            if batch.ended:
                return made
            held, results, attempts = batch.senders, [], []
            if batch.copies:
                idle = claimed_at
                self._look = (claimed_at + PAUSE_LOOK, False)
                attempts = self._send(url, batch, claimed_at + self.s.lease - MARGIN)
                results = [result(a, s) for a in attempts]
                attempts = [a for a in attempts if a.sent]
                made += len(attempts)
            go_on = (batch.queued == 0 and not self.stopping()
                     and claimed_at - started < self.s.task_budget
                     and (batch.copies or claimed_at - idle < LINGER))
            want = self.s.batch if go_on else 0
            if len(batch.copies) >= self.s.batch // 2:
                last = 0.0  # a full batch: claim the next at once
            elif len(batch.copies) >= BUSY:
                last += MIN_CYCLE  # a steady stream: let the next batch fill for longer

    def _send(self, url: str, batch: Batch, lease_end: float) -> list[Attempt]:
        """Send the batch's copies: one after another while answers come fast (threads only
        pay off against a slow backend), then, after an attempt slower than :data:`SLOW`, the
        rest on up to ``batch.senders`` threads at once. A backend that was slow in its last
        batch gets the threads from the first copy (else each batch of a backend answering in
        8 s would take 16 s: its first copy alone, then the rest)."""
        requests = self.schedule.requests(c.request_id for c in batch.copies)
        out: list[Attempt] = []
        copies = batch.copies
        i = 0
        while i < len(copies) and url not in self._slow:
            copy = copies[i]
            out.append(self._attempt(url, copy, requests.get(copy.request_id), lease_end))
            i += 1
            if out[-1].took > SLOW and batch.senders > 1:
                break
        rest = iter(copies[i:])
        lock = threading.Lock()

        def sender() -> None:
            while True:
                with lock:
                    copy = next(rest, None)
                if copy is None:
                    return
                att = self._attempt(url, copy, requests.get(copy.request_id), lease_end)
                with lock:
                    out.append(att)

        n = min(batch.senders, len(copies) - i)
        if n > 0:
            pool = self._threads()
            for f in [pool.submit(sender) for _ in range(n)]:
                f.result()
        if any(a.took > SLOW for a in out):
            self._slow.add(url)
        else:
            self._slow.discard(url)
        return out

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            size = self.s.backend_concurrency or 16
            self._pool = ThreadPoolExecutor(size, thread_name_prefix="hookfan-send")
        return self._pool

    def _attempt(self, url: str, copy: Claimed, req: StoredRequest | None,
                 lease_end: float) -> Attempt:
        backend = Backend(copy.route, url)
        if req is None:
            return Attempt(copy, backend, None, Outcome("dead", "RequestMissing"), 0.0)
        t0 = time.monotonic()
        if t0 + self.s.delivery_timeout > lease_end or self._paused(url, t0):
            return Attempt(copy, backend, req, Outcome("retry", "Unsent"), 0.0, sent=False)
        parent = req.trace or None if self.tracing.enabled else None
        with self.tracing.span("hookfan.deliver", "consumer", parent=parent,
                               attrs=span_attrs(copy, url)), \
                self.tracing.span(f"HTTP {req.method}", "client",
                                  attrs={"server.address": url}) as span:
            # The sender of this request waits for the first answer of every copy.
            awaited = req.await_ms > 0 and copy.attempt == 1
            try:
                sent = self.send(url, copy, req, answers.BODY_CAP if awaited else 0)
            except Exception as exc:  # a bug here must not strand the rest of the batch
                log.error("attempt failed inside hookfan: %s", type(exc).__name__,
                          extra={"delivery_id": copy.delivery_id, "backend": url})
                sent = Sent(None, type(exc).__name__)
            if span is not None and sent.status is not None:
                span.set_attribute("http.response.status_code", sent.status)
        if awaited:
            self._answer(copy, req, sent)
        return Attempt(copy, backend, req, classify(sent.status, sent.error),
                       time.monotonic() - t0, parse_retry_after(sent.retry_after, time.time()))

    def _answer(self, copy: Claimed, req: StoredRequest, sent: Sent) -> None:
        """Hand the first answer to the intake thread waiting for it. Its loss (Redis
        unreachable) costs that sender a 504 for this target, never the delivery."""
        whole = sent.whole
        answer = answers.recorded(sent.status, whole.headers if whole else None,
                                  whole.body if whole else None)
        try:
            self.schedule.record_answer(copy.request_id,
                                        answers.encode(copy.delivery_id, answer), req.await_ms)
        except Exception as exc:
            log.warning("first answer not handed to its waiting sender: %s",
                        type(exc).__name__, extra={"delivery_id": copy.delivery_id})

    def send(self, url: str, copy: Claimed, req: StoredRequest, capture: int = 0) -> Sent:
        lines = self.tracing.outbound(
            forward_headers(req, copy.request_id, copy.delivery_id, copy.attempt))
        had_length = any(n.lower() == "content-length" for n, _ in req.headers)
        body = req.body if (req.body or had_length) else None
        return self.http.send(url, req.method, copy_target(url, req.uri), lines, body,
                              capture=capture)

    def _paused(self, url: str, now: float) -> bool:
        """Was ``url`` paused since this batch was claimed? Asks Redis only once a batch has
        sent for :data:`PAUSE_LOOK` seconds, then at most that often (a Redis error: no)."""
        with self._look_lock:
            at, paused = self._look
            if now < at:
                return paused
            try:
                paused = self.schedule.paused(url)
            except Exception as exc:  # the claim will see it; an attempt is worth more
                log.warning("pause not looked at: %s", type(exc).__name__)
            self._look = (now + PAUSE_LOOK, paused)
            return paused

    def _auto_paused(self, url: str) -> None:
        log.warning("backend auto-paused: no delivery for --auto-pause-after while failing; "
                    "`hookfan backends resume %s` once it is fixed", url, extra={"backend": url})
        if self.on_pause is not None:
            try:
                self.on_pause(url)
            except Exception as exc:  # figures must never fail a delivery task
                log.warning("auto-pause not counted in metrics: %s", type(exc).__name__)

    def _report(self, attempts: Sequence[Attempt], batch: Batch) -> None:
        """Log and observe the attempts the last settle recorded (now that it is known which
        of them the settle turned into dead letters)."""
        if batch.stale and self.on_stale is not None:
            self.on_stale(batch.stale)
        if batch.stale:
            log.warning("stale outcomes dropped", extra={"count": batch.stale})
        dead = set(batch.dead)
        for att in attempts:
            kind = att.outcome.kind
            if kind == "retry" and att.copy.delivery_id in dead:
                kind = "dead"
            # A delivered copy is logged at debug: at thousands a second its line would cost
            # a sixth of the worker's CPU; failures stay at info.
            level = logging.DEBUG if kind == "delivered" else logging.INFO
            if log.isEnabledFor(level):
                log.log(level, "attempt %s", kind, extra={
                    "delivery_id": att.copy.delivery_id, "request_id": att.copy.request_id,
                    "route": att.backend.route, "backend": att.backend.url,
                    "attempt": att.copy.attempt, "status": att.outcome.status,
                    "reason": att.outcome.reason, "duration": round(att.took, 6)})
            if self.observe is not None:
                try:
                    self.observe(att, kind)
                except Exception as exc:  # figures must never fail a delivery that happened
                    log.warning("attempt not recorded in metrics: %s", type(exc).__name__)


def result(att: Attempt, s: DeliverySettings) -> Result:
    """What the settle script records for an attempt. Pure. The retry age is checked by the
    script, on Redis's clock."""
    if not att.sent:
        return Result(att.copy, "u")
    kind = att.outcome.kind
    if kind == "delivered":
        return Result(att.copy, "d")
    size = len(att.request.body) if att.request is not None else -1
    if kind == "retry":
        delay = retry_delay(att.copy.attempt, s.min_retry_delay, s.max_retry_delay,
                            att.retry_after)
        return Result(att.copy, "r", delay, att.outcome.reason, size)
    return Result(att.copy, "x", 0.0, att.outcome.reason, size)


def span_attrs(copy: Claimed, url: str) -> dict[str, str | int]:
    """What a delivery span says: ids, route, backend, attempt number. Never content."""
    return {"hookfan.delivery_id": copy.delivery_id, "hookfan.request_id": copy.request_id,
            "hookfan.route": copy.route, "hookfan.backend": url,
            "hookfan.attempt": copy.attempt}
