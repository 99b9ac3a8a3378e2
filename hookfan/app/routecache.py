"""The app's in-memory copy of the route table, refreshed in the background.

Each request reads the table from memory; a thread polls the version key every 250 ms and loads
the table only when the version changed, so the app sees a change within ~250 ms and pays no
Redis round trip per request. A request whose host the table does not route looks at the version
once more before it is answered 503 (at most every :data:`MISS_REFRESH` seconds per process), so
a route just published is live in every process for the first request that needs it.

Looks made for a request (the first load, and the look for an unrouted host) go through the
``quick`` client, whose short timeouts keep a hung Redis from holding the request past the 2 s
its 503 is due in; one request makes at most one such look.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import redis

from hookfan.routes import RouteTable
from hookfan.store import Store

log = logging.getLogger(__name__)


MISS_REFRESH = 0.05
"""Shortest time between two looks at the version for requests the table does not route: a
flood of unknown hosts costs Redis at most 20 reads a second per app process."""


class RouteCache:
    def __init__(self, store: Store, interval: float = 0.25, quick: Store | None = None) -> None:
        self._store = store
        self._quick = quick or store
        self._interval = interval
        self._table: RouteTable | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._missed_at = 0.0

    def table(self) -> RouteTable | None:
        """The last loaded table; None until one has been published and loaded."""
        if self._thread is None:
            self._start()
        return self._table

    def fresher(self) -> RouteTable | None:
        """The table, looked at again first if that was not done within :data:`MISS_REFRESH`
        (for a host the last loaded table does not route). Never raises: with Redis
        unreachable it is the last loaded table."""
        now = time.monotonic()
        if now - self._missed_at >= MISS_REFRESH:
            self._missed_at = now
            # Unreachable: the poller logs it; the request is answered from what is loaded.
            with contextlib.suppress(redis.RedisError):
                self.refresh(self._quick)
        return self.table()

    def refresh(self, store: Store | None = None) -> None:
        """Load the table if its version changed. Raises redis errors to the caller."""
        store = store or self._store
        version = store.routes_version()
        current = self._table
        if version is not None and (current is None or current.version != version):
            self._table = store.load_routes()

    def close(self) -> None:
        self._stop.set()

    def start(self) -> None:
        """Load the table now and start polling (at the latest, the first request does)."""
        self.table()

    def _start(self) -> None:
        # Started in the process that serves (gunicorn's worker, not a pre-fork parent).
        with self._lock:
            if self._thread is not None:
                return
            try:
                self.refresh(self._quick)
            except redis.RedisError:
                # That was this request's look: it does not look again (fresher) at once.
                self._missed_at = time.monotonic()
                log.warning("route table not loaded yet: Redis unreachable")
            self._thread = threading.Thread(target=self._run, name="route-cache", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.refresh()
            except redis.RedisError as exc:
                log.debug("route table refresh failed: %s", type(exc).__name__)
