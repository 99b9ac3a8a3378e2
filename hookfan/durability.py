"""Whether Redis runs with the settings that make "202 means durable" true.

A 202 promises the request is on disk. That holds only with ``appendonly yes`` (an AOF at
all), ``appendfsync always`` (Redis answers a write after fsync'ing it) and ``maxmemory-policy
noeviction`` (Redis refuses writes when full rather than deleting stored ones). The app and the
worker read these at start and then every minute; the app refuses webhooks while one is off,
unless ``--allow-unsafe-redis`` says a developer accepts that.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import redis

from hookfan import forkgate

log = logging.getLogger(__name__)

REQUIRED = {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}
"""The Redis settings a durable 202 needs, and the value each must have."""
INTERVAL = 60.0
"""Seconds between two readings once one succeeded."""
RETRY = 1.0
"""Seconds between attempts until the first reading succeeds (Redis not up yet)."""


@dataclass(frozen=True)
class Unsafe:
    """A Redis setting whose value breaks "202 means durable"."""

    name: str
    value: str

    @property
    def fix(self) -> str:
        want = REQUIRED[self.name]
        return f"CONFIG SET {self.name} {want} (and in redis.conf: {self.name} {want})"


def unsafe_settings(config: Mapping[str, str]) -> list[Unsafe]:
    """The settings of ``config`` (as CONFIG GET answers) with a value other than the one in
    :data:`REQUIRED`. A setting absent from ``config`` counts as unsafe (value ``""``). Pure."""
    return [Unsafe(name, config.get(name, "")) for name, want in REQUIRED.items()
            if config.get(name, "").lower() != want]


class DurabilityCheck:
    """Reads :data:`REQUIRED` from Redis now (:meth:`check`) and then on a daemon thread
    (:meth:`start`). ``refusing`` is the one flag the intake reads per request: true while the
    last reading found a setting unsafe, unless ``allow_unsafe``. A Redis that refuses CONFIG
    GET (managed Redis) cannot be checked: a warning, and not refusing. Redis unreachable or
    too slow to answer: the last state stays, and until a first reading succeeds the thread
    reads again every :data:`RETRY` seconds without refusing meanwhile (such a Redis cannot
    store a request either: the intake answers 503 on its own; refusing on "not read yet"
    left a process refusing after a slow first reading, see the chaos test of Redis outages).
    """

    def __init__(self, client: redis.Redis, allow_unsafe: bool, process: str,
                 interval: float = INTERVAL, report: bool = True) -> None:
        """``process`` (``app`` or ``worker``) words the log lines; ``report=False`` keeps
        this instance silent (the gunicorn master's, for readiness: its workers log)."""
        self.client = client
        self.allow_unsafe = allow_unsafe
        self.process = process
        self.report = report
        self.interval = interval
        self.known = False
        self.refusing = False
        self._unsafe: list[Unsafe] = []
        self._stop = threading.Event()

    def check(self) -> None:
        """One reading: update ``refusing``; log each unsafe setting and how to fix it (at
        every reading while the app refuses, else when they change)."""
        try:
            with forkgate.held():
                pipe = self.client.pipeline(transaction=False)
                for name in REQUIRED:
                    pipe.config_get(name)
                answers = pipe.execute()
        except redis.ResponseError as exc:  # CONFIG renamed away or denied by an ACL
            self._unreadable(exc)
            return
        except redis.RedisError:
            return
        unsafe = unsafe_settings({str(k): str(v) for a in answers for k, v in a.items()})
        was_refusing, changed = self.refusing, unsafe != self._unsafe or not self.known
        self.known, self._unsafe = True, unsafe
        self.refusing = bool(unsafe) and not self.allow_unsafe
        if self.report and (changed or self.refusing):
            for u in unsafe:
                self._report(u)
        if self.report and was_refusing and not self.refusing:
            log.info("Redis durability settings checked: appendonly, appendfsync and "
                     "maxmemory-policy keep a 202 durable")

    def _report(self, u: Unsafe) -> None:
        extra = {"setting": u.name, "value": u.value, "fix": u.fix}
        if self.allow_unsafe:
            log.warning("Redis %s is %r: a 202 is not durable; running anyway "
                        "(--allow-unsafe-redis, for development only)", u.name, u.value,
                        extra=extra)
        elif self.process == "app":
            log.error("Redis %s is %r: a 202 would not be durable, so webhooks are refused "
                      "(503) until it is fixed: %s", u.name, u.value, u.fix, extra=extra)
        else:
            log.error("Redis %s is %r: accepted webhooks are not durable; not ready until it "
                      "is fixed: %s", u.name, u.value, u.fix, extra=extra)

    def _unreadable(self, exc: redis.ResponseError) -> None:
        if self.report and not self.known:
            log.warning("cannot check Redis durability settings (CONFIG GET refused: %s): make "
                        "sure it runs with appendonly yes, appendfsync always and "
                        "maxmemory-policy noeviction (docs/operations.md)",
                        type(exc).__name__, extra={"fix": "; ".join(
                            f"{k} {v}" for k, v in REQUIRED.items())})
        self.known = True
        self.refusing = False

    def start(self) -> DurabilityCheck:
        """Check now, then every :data:`INTERVAL` seconds on a daemon thread until :meth:`stop`."""
        self.check()
        threading.Thread(target=self._run, daemon=True, name="redis-durability").start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval if self.known else min(RETRY, self.interval)):
            self.check()

    def stop(self) -> None:
        self._stop.set()
