"""The ledger in Redis: requests, the per-backend schedule, dead letters, the route table.

Every state change of a copy is one Lua script (:mod:`hookfan.scripts`), so a crash between
two writes never leaves a copy half-scheduled. This module holds what the intake, the CLI and
the operator do; the worker's claim/settle calls are in :mod:`hookfan.schedule`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from hookfan import keys, scripts
from hookfan.config import RedisSettings
from hookfan.envelope import StoredRequest
from hookfan.routes import Backend, RouteTable


@dataclass(frozen=True)
class Accepted:
    """What :meth:`Store.accept_once` did: stored a new request, or found its first copy."""

    request_id: str
    deliveries: int
    duplicate: bool


@dataclass(frozen=True)
class DeadLetter:
    delivery_id: str
    request_id: str
    backend: Backend
    attempts: int
    last_error: str
    dead_at: float
    accepted: float
    method: str
    uri: str
    body_size: int
    generation: int = 0

    def summary(self) -> dict[str, Any]:
        """What ``deadletters list`` prints: no body, no header values."""
        return {"id": self.delivery_id, "request": self.request_id, "route": self.backend.route,
                "backend": self.backend.url, "attempts": self.attempts,
                "last_error": self.last_error, "dead_at": self.dead_at,
                "accepted": self.accepted, "method": self.method,
                "path": self.uri.split("?", 1)[0], "body_bytes": self.body_size}


@dataclass(frozen=True)
class PendingCopy:
    """A copy waiting in a backend's schedule (ready or in flight), as the operator counts it."""

    delivery_id: str
    backend: Backend
    attempts: int
    started: float
    """Unix time (Redis clock) its retry age began: acceptance, or its last replay."""


def connect(target: str | RedisSettings, timeout: float = 1.5) -> redis.Redis:
    """A client that fails fast: the intake must answer 503 within 2 s when Redis is gone.

    ``target`` is a URL, or the settings, whose password file and TLS files are then used
    (:meth:`RedisSettings.client_url`, :meth:`RedisSettings.ssl_options`)."""
    if isinstance(target, RedisSettings):
        url, tls = target.client_url(), target.ssl_options()
    else:
        url, tls = target, {}
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                health_check_interval=10, **tls)


def parse_copy(value: bytes) -> tuple[int, int, float, str]:
    """(generation, attempts, t0 seconds, route) of a :data:`keys.COPIES` value."""
    g, a, t0, route = value.decode().split(" ", 3)
    return int(g), int(a), int(t0) / 1000, route


class Store:
    def __init__(self, client: redis.Redis) -> None:
        # redis-py's stubs type replies as bytes | str; this client always returns bytes.
        self.r: Any = client
        self.scripts = scripts.register(client)

    # -- route table -------------------------------------------------------------------------
    def publish_routes(self, table: RouteTable) -> int:
        """Write the whole table with a new version in one transaction; returns the version."""
        version = int(self.r.incr(keys.ROUTES_VERSION))
        published = RouteTable(version, table.routes)
        pipe = self.r.pipeline(transaction=True)
        pipe.set(keys.ROUTES, published.to_json())
        pipe.set(keys.ROUTES_VERSION, version)
        pipe.execute()
        return version

    def routes_version(self) -> int | None:
        raw = self.r.get(keys.ROUTES_VERSION)
        return None if raw is None else int(raw)

    def load_routes(self) -> RouteTable | None:
        """The published table, or None if the operator has not published one yet."""
        raw = self.r.get(keys.ROUTES)
        return None if raw is None else RouteTable.from_json(raw)

    # -- intake ------------------------------------------------------------------------------
    def accept(self, request_id: str, req: StoredRequest, backends: Sequence[Backend]) -> list[str]:
        """Store the request once and one pending copy per backend (its ready-queue entry and
        state), in one Lua script (atomic, one round trip), and wake the dispatchers.
        Raises redis errors; nothing is half-written."""
        keys_, args, ids = self._accept_call(request_id, req, backends)
        self.scripts["accept"](keys=keys_, args=args)
        return ids

    def accept_batch(self, entries: Sequence[tuple[str, StoredRequest, Sequence[Backend]]]
                     ) -> None:
        """:meth:`accept` for many requests in one pipeline (bulk loads: benchmarks, the
        backlog test). Each request is written atomically; the batch as a whole is not."""
        pipe = self.r.pipeline(transaction=False)
        for request_id, req, backends in entries:
            keys_, args, _ = self._accept_call(request_id, req, backends)
            self.scripts["accept"](keys=keys_, args=args, client=pipe)
        pipe.execute()

    def accept_once(self, request_id: str, req: StoredRequest, backends: Sequence[Backend],
                    dedupe_key: str, window: float) -> Accepted:
        """As :meth:`accept`, unless ``dedupe_key`` already names a request accepted within
        ``window`` seconds: then nothing is written and that request is returned. The check and
        the write are one Lua script, so two identical requests racing each other store one set
        of deliveries. Raises redis errors; nothing is half-written."""
        keys_, args, ids = self._accept_call(request_id, req, backends, dedupe_key, window)
        first = self.scripts["accept"](keys=keys_, args=args)
        if first:
            rid, _, n = first.decode().partition(":")
            return Accepted(rid, int(n or 0), True)
        return Accepted(request_id, len(ids), False)

    def _accept_call(self, request_id: str, req: StoredRequest, backends: Sequence[Backend],
                     dedupe_key: str | None = None, window: float = 0.0
                     ) -> tuple[list[str], list[Any], list[str]]:
        ids = keys.delivery_ids(request_id, len(backends))
        fields = [x for pair in req.to_fields().items() for x in pair]
        req_key = keys.request(request_id)
        keys_ = [req_key, dedupe_key or req_key, keys.DUE, keys.OWNED, keys.BACKENDS]
        args: list[Any] = ["1" if dedupe_key else "0", max(1, int(window * 1000)), request_id,
                           len(ids), len(fields) // 2, *fields]
        for did, backend in zip(ids, backends, strict=True):
            keys_ += [keys.ready(backend.url), keys.copies(backend.url)]
            args += [did, backend.url, backend.route]
        return keys_, args, ids

    # -- what is pending ---------------------------------------------------------------------
    def backend_urls(self) -> list[str]:
        """Every backend URL that has had a copy (sorted)."""
        return sorted(u.decode() for u in self.r.smembers(keys.BACKENDS))

    def pending_count(self) -> int:
        """Copies pending (ready or in flight) across all backends. Raises redis errors."""
        urls = self.backend_urls()
        pipe = self.r.pipeline(transaction=False)
        for url in urls:
            pipe.hlen(keys.copies(url))
        return sum(int(n) for n in pipe.execute()) if urls else 0

    def pending(self, url: str, limit: int = 100_000) -> list[PendingCopy]:
        """Up to ``limit`` pending copies of one backend, in no particular order."""
        out = []
        for did, value in self.r.hscan_iter(keys.copies(url), count=1000):
            _, attempts, started, route = parse_copy(value)
            out.append(PendingCopy(did.decode(), Backend(route, url), attempts, started))
            if len(out) >= limit:
                break
        return out

    # -- dead letters ------------------------------------------------------------------------
    def dead_ids(self) -> list[str]:
        return [d.decode() for d in self.r.zrange(keys.DEAD, 0, -1)]

    def dead_letter(self, delivery_id: str) -> DeadLetter | None:
        """The dead letter without its request's body, or None if no such dead letter."""
        raw = self.r.hget(keys.DEAD_INFO, delivery_id)
        if raw is None:
            return None
        url, route, generation, attempts, _t0, error = json.loads(raw)
        rid = keys.request_id_of(delivery_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.zscore(keys.DEAD, delivery_id)
        pipe.hmget(keys.request(rid), "t", "m", "u")
        pipe.hstrlen(keys.request(rid), "b")
        dead_at, (t, m, u), size = pipe.execute()
        return DeadLetter(delivery_id, rid, Backend(route, url), int(attempts), error,
                          float(dead_at or 0) / 1000, float(t or 0),
                          (m or b"").decode(), (u or b"").decode("latin-1"), int(size),
                          int(generation))

    def dead_letter_info(self, delivery_id: str) -> tuple[DeadLetter, StoredRequest] | None:
        """The dead letter and its stored request, or None if no such dead letter exists."""
        letter = self.dead_letter(delivery_id)
        if letter is None:
            return None
        f = self.r.hgetall(keys.request(letter.request_id))
        if not f:
            return None
        return letter, StoredRequest.from_fields(f)

    def replay(self, delivery_id: str) -> bool:
        """Put a dead letter back in its backend's ready queue, due now, with a fresh retry
        age; False if it is not a dead letter."""
        raw = self.r.hget(keys.DEAD_INFO, delivery_id)
        if raw is None:
            return False
        url = json.loads(raw)[0]
        return bool(self.scripts["replay"](
            keys=[keys.DEAD_INFO, keys.DEAD, keys.ready(url), keys.copies(url), keys.DUE,
                  keys.OWNED, keys.BACKENDS], args=[delivery_id, url]))

    def purge(self, delivery_id: str) -> bool:
        """Delete a dead letter, and its request's body if nothing else references it."""
        rid = keys.request_id_of(delivery_id)
        return bool(self.scripts["purge"](
            keys=[keys.DEAD_INFO, keys.DEAD, keys.request(rid)], args=[delivery_id]))

    # -- figures for status ------------------------------------------------------------------
    def trace_parent(self, request_id: str) -> str:
        """The traceparent stored with a request; empty if none (tracing was off)."""
        raw = self.r.hget(keys.request(request_id), "tp")
        return "" if raw is None else str(raw.decode("latin-1"))

    def delivery_figures(self) -> dict[str, str]:
        """Every field of :data:`keys.STATS` (see :func:`keys.stat_field`), decoded."""
        return {k.decode(): v.decode() for k, v in self.r.hgetall(keys.STATS).items()}
