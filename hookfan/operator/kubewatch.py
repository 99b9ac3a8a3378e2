"""List-then-watch loops that keep a local cache of one kind of object.

Each :class:`Watcher` runs in its own thread: it lists, then watches from the list's
resourceVersion; a 410 Gone or the resync period leads to a fresh list; any other failure to a
reconnect after a backoff between ``min_delay`` and ``max_delay``. Every change calls
``on_change`` so the reconciler can run; the cache is read with :meth:`Watcher.snapshot`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from .kubeclient import Kube

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def obj_key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class Backoff:
    """Exponential delays from ``low`` to ``high`` with jitter; :meth:`reset` after success."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high, self.failures = low, high, 0

    def next(self) -> float:
        delay = min(self.high, self.low * 2.0 ** self.failures)
        self.failures += 1
        return float(delay * random.uniform(0.8, 1.0))

    def reset(self) -> None:
        self.failures = 0


class Watcher:
    def __init__(self, kube: Kube, kind: str, on_change: Callable[[], None],
                 resync: float, min_delay: float, max_delay: float,
                 keep: Callable[[Obj], Obj] | None = None, optional: bool = False) -> None:
        self.kube, self.kind, self.on_change, self.resync = kube, kind, on_change, resync
        self.keep = keep or (lambda obj: obj)
        """What of an object the cache holds (all of it by default)."""
        self.optional = optional
        """A 404 on the list (the kind's CRD is not installed) counts as synced and empty,
        so one missing CRD does not stop the operator (``helm upgrade`` does not install a
        chart's new CRDs); it is listed again after a backoff."""
        self.backoff = Backoff(min_delay, max_delay)
        self._cache: dict[tuple[str, str], Obj] = {}
        self._lock = threading.Lock()
        self.synced = threading.Event()
        """Set once the first list succeeded."""
        self.restarts = 0
        """Watch streams restarted after an error (a 410 or a broken connection)."""
        self.lists = 0

    def snapshot(self) -> dict[tuple[str, str], Obj]:
        """A copy of the cache: (namespace, name) -> object."""
        with self._lock:
            return dict(self._cache)

    def run(self, stop: threading.Event) -> None:
        """List and watch until ``stop`` is set. Never raises."""
        while not stop.is_set():
            try:
                rv = self._relist()
                self._watch_until_resync(rv, stop)
                self.backoff.reset()
            except ApiException as exc:
                self.restarts += 1
                if exc.status == 410:
                    log.info("watch expired, re-listing", extra={"resource": self.kind})
                    continue
                if exc.status == 404 and self.optional:
                    self._absent()
                self._pause(stop, f"API error {exc.status}")
            except Exception as exc:  # a dropped connection surfaces as several urllib3 types
                self.restarts += 1
                self._pause(stop, type(exc).__name__)

    def _absent(self) -> None:
        with self._lock:
            self._cache = {}
        if not self.synced.is_set():
            log.warning("resource not served by the API server, taken as empty: install its "
                        "CRD (helm/hookfan/crds/)", extra={"resource": self.kind})
            self.synced.set()
            self.on_change()

    def _pause(self, stop: threading.Event, why: str) -> None:
        delay = self.backoff.next()
        log.warning("watch failed, reconnecting", extra={"resource": self.kind, "error": why,
                                                         "retry_in": round(delay, 3)})
        stop.wait(delay)

    def _relist(self) -> str:
        items, rv = self.kube.list(self.kind, timeout=30)
        with self._lock:
            self._cache = {obj_key(o): self.keep(o) for o in items}
        self.lists += 1
        self.synced.set()
        self.on_change()
        return rv

    def _watch_until_resync(self, rv: str, stop: threading.Event) -> None:
        """Follow the watch from ``rv``, reconnecting after clean server-side timeouts, until
        the resync period is over (then the caller re-lists)."""
        deadline = time.monotonic() + self.resync
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            for event in self.kube.watch(self.kind, rv, timeout=max(1, min(int(left), 60))):
                rv = self._apply(event) or rv
                self.backoff.reset()
                if stop.is_set():
                    return

    def _apply(self, event: dict[str, Any]) -> str | None:
        """Apply one watch event to the cache; returns its resourceVersion."""
        obj = event.get("object") or {}
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        kind = event.get("type")
        if kind == "BOOKMARK":
            return str(rv) if rv else None
        with self._lock:
            if kind == "DELETED":
                self._cache.pop(obj_key(obj), None)
            elif kind in ("ADDED", "MODIFIED"):
                self._cache[obj_key(obj)] = self.keep(obj)
        self.on_change()
        return str(rv) if rv else None
