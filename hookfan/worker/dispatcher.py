"""The dispatcher: finds backends with due copies and publishes a ``hookfan.deliver`` wake-up
for each. One runs as a thread in every worker's main process; several are safe at once.

The per-backend ready queues in Redis are the schedule. A published message only says "look
at this backend": :meth:`Schedule.dispatch` takes the backend's ownership (a hold that lapses
by itself), so a backend gets no second message while a task owns it, and a lost message or
a dead worker only delays its copies until the hold lapses. The dispatcher sleeps until the
next due time Redis reports, or until the intake wakes it (Pub/Sub), so a first attempt
starts within milliseconds of the 202 without polling.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from hookfan import forkgate, keys
from hookfan.schedule import Schedule
from hookfan.store import is_oom

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[tuple[str, int]]], None]
"""Publishes one task per (backend url, due copies)."""


class Dispatcher:
    """Runs :meth:`step` whenever woken or due. Redis being unreachable is retried; any other
    error ends the thread, marks it dead and calls ``on_death`` (the worker then stops with
    status 1 so its supervisor restarts it)."""

    def __init__(self, schedule: Schedule, publish: Publish, idle: float = 1.0,
                 on_death: Callable[[], None] | None = None) -> None:
        self.schedule = schedule
        self.publish = publish
        self.idle = idle
        """Longest sleep without a wake-up: bounds the delay a lost wake-up can cause."""
        self.on_death = on_death
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dead = False

    @property
    def alive(self) -> bool:
        """False once the thread died of an unexpected error (for ``/readyz``)."""
        return not self._dead

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hookfan-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def step(self) -> float:
        """Dispatch what is due; returns how long to wait for a wake-up before the next step."""
        with forkgate.held():
            owned, wait = self.schedule.dispatch()
            if owned:
                self.publish(owned)
        if owned:
            return 0.0  # more may be due than one call takes
        return self.idle if wait is None else min(wait, self.idle)

    def _run(self) -> None:
        pubsub: Any = None
        try:
            while not self._stop.is_set():
                try:
                    if pubsub is None:
                        with forkgate.held():
                            pubsub = self.schedule.r.pubsub(ignore_subscribe_messages=True)
                            pubsub.subscribe(keys.WAKE)
                    delay = self.step()
                    if delay > 0:
                        _wait(pubsub, delay)
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning("dispatcher: Redis unavailable (%s), retrying",
                                type(exc).__name__)
                    _close(pubsub)
                    pubsub = None
                    self._stop.wait(1.0)
                except Exception as exc:
                    if not is_oom(exc):
                        raise
                    # Redis refuses writes that grow memory: publishing waits; deliveries
                    # already running go on and free memory.
                    log.warning("dispatcher: Redis is full (maxmemory), retrying")
                    self._stop.wait(1.0)
        except Exception as exc:  # a broken invariant: let the supervisor restart the worker
            log.error("dispatcher: stopped by %s: %s; the worker stops",
                      type(exc).__name__, exc)
            self._dead = True
            if self.on_death is not None:
                self.on_death()
        finally:
            _close(pubsub)


def _wait(pubsub: Any, delay: float) -> None:
    """Block until a wake-up arrives or ``delay`` passes, then drain queued wake-ups."""
    deadline = time.monotonic() + delay
    if pubsub.get_message(timeout=delay) is None and time.monotonic() < deadline:
        return
    while pubsub.get_message(timeout=0) is not None:
        pass


def _close(pubsub: Any) -> None:
    if pubsub is not None:
        with contextlib.suppress(redis.RedisError, OSError):
            pubsub.close()
