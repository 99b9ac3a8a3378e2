"""The ledger in Redis: requests, delivery records, the schedule, dead letters, the route table.

Every state change of a delivery is one Lua script or one MULTI/EXEC, so a crash between two
writes never leaves a copy half-scheduled. A delivery record carries a *generation*: each claim
bumps it and each task message names the generation it was published for, so a stale message
(re-delivered by Celery after a worker died, or overtaken by a re-claim) is recognised and skipped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from hookfan import keys
from hookfan.config import RedisSettings
from hookfan.envelope import StoredRequest
from hookfan.routes import Backend, RouteTable
from hookfan.taskmsg import task_message

_ACCEPT = """
if ARGV[4] == '1' then
  local first = redis.call('GET', KEYS[4])
  if first then return first end
end
local n = tonumber(ARGV[1])
local k = tonumber(ARGV[8])
local i = 9
local fields = {}
for j = 1, 2 * k do fields[j] = ARGV[i]; i = i + 1 end
redis.call('HSET', KEYS[1], 'n', n, unpack(fields))
for _ = 1, n do
  local did = ARGV[i]
  redis.call('HSET', ARGV[7] .. did, 'r', ARGV[6], 'b', ARGV[i + 1], 'route', ARGV[i + 2],
             'a', 0, 'g', 1, 's', 'p', 't0', ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[2], did)
  redis.call('LPUSH', KEYS[3], ARGV[i + 3])
  i = i + 4
end
if ARGV[4] == '1' then redis.call('SET', KEYS[4], ARGV[6] .. ':' .. n, 'PX', ARGV[5]) end
return false
"""

_BEGIN = """
local d = redis.call('HMGET', KEYS[1], 'g', 's', 'r', 'b', 'route', 't0')
if not d[1] or d[1] ~= ARGV[2] or d[2] ~= 'p' then return false end
local req = redis.call('HMGET', ARGV[4] .. d[3], 'm', 'u', 'h', 'b', 'ip', 't', 'host')
if not req[1] then return false end
local cap = tonumber(ARGV[6])
if cap > 0 then
  local bk = ARGV[7] .. d[4]
  redis.call('ZREMRANGEBYSCORE', bk, '-inf', ARGV[5])
  if not redis.call('ZSCORE', bk, ARGV[1]) and redis.call('ZCARD', bk) >= cap then
    redis.call('ZADD', KEYS[2], 'XX', ARGV[8], ARGV[1])
    return 0
  end
  redis.call('ZADD', bk, ARGV[3], ARGV[1])
  redis.call('EXPIREAT', bk, math.ceil(tonumber(ARGV[3])) + 1)
end
redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[1])
local a = redis.call('HINCRBY', KEYS[1], 'a', 1)
return {d[3], d[4], d[5], d[6], tostring(a), req[1], req[2], req[3], req[4], req[5], req[6], req[7]}
"""

_COMPLETE = """
if ARGV[3] ~= '' then
  redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
  redis.call('HSET', KEYS[4], ARGV[4], ARGV[5])
end
local b = redis.call('HGET', KEYS[1], 'b')
if not b then return 0 end
redis.call('ZREM', ARGV[2] .. b, ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
if redis.call('HINCRBY', KEYS[3], 'n', -1) <= 0 then redis.call('DEL', KEYS[3]) end
return 1
"""

_RETRY = """
if ARGV[7] ~= '' then redis.call('HSET', KEYS[3], ARGV[7], ARGV[4]) end
if redis.call('HGET', KEYS[1], 'g') ~= ARGV[2] then return 0 end
redis.call('ZREM', ARGV[6] .. redis.call('HGET', KEYS[1], 'b'), ARGV[1])
redis.call('HSET', KEYS[1], 'e', ARGV[4], 'lt', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

_DEAD = """
if ARGV[6] ~= '' then redis.call('HSET', KEYS[4], ARGV[6], ARGV[4]) end
if redis.call('HGET', KEYS[1], 'g') ~= ARGV[2] then return 0 end
redis.call('ZREM', ARGV[5] .. redis.call('HGET', KEYS[1], 'b'), ARGV[1])
redis.call('HSET', KEYS[1], 's', 'd', 'e', ARGV[4], 'lt', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1
"""

_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local k = ARGV[4] .. id
  if redis.call('HGET', k, 's') == 'p' then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    table.insert(out, id)
    table.insert(out, redis.call('HINCRBY', k, 'g', 1))
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""

_REPLAY = """
if redis.call('HGET', KEYS[1], 's') ~= 'd' then return 0 end
redis.call('HSET', KEYS[1], 's', 'p', 'a', 0, 't0', ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

_PURGE = """
if redis.call('HGET', KEYS[1], 's') ~= 'd' then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HINCRBY', KEYS[3], 'n', -1) <= 0 then redis.call('DEL', KEYS[3]) end
return 1
"""


@dataclass(frozen=True)
class Attempt:
    """One claimed attempt, as :meth:`Store.begin` hands it to the worker."""

    delivery_id: str
    generation: int
    request_id: str
    backend: Backend
    number: int
    """1 for the first attempt; replays start again at 1."""
    started: float
    """When the copy's retry age began: acceptance, or the last replay."""
    request: StoredRequest


@dataclass(frozen=True)
class Deferred:
    """:meth:`Store.begin` found the backend at its in-flight cap: the copy was re-scored to
    ``due`` instead of taking a worker slot, and the message that asked for it is spent."""

    delivery_id: str
    due: float


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

    def summary(self) -> dict[str, Any]:
        """What ``deadletters list`` prints: no body, no header values."""
        return {"id": self.delivery_id, "request": self.request_id, "route": self.backend.route,
                "backend": self.backend.url, "attempts": self.attempts,
                "last_error": self.last_error, "dead_at": self.dead_at,
                "accepted": self.accepted, "method": self.method,
                "path": self.uri.split("?", 1)[0], "body_bytes": self.body_size}


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


class Store:
    def __init__(self, client: redis.Redis, lease: float = 30.0) -> None:
        # redis-py's stubs type replies as bytes | str; this client always returns bytes.
        self.r: Any = client
        self.lease = lease
        self._accept = client.register_script(_ACCEPT)
        self._begin = client.register_script(_BEGIN)
        self._complete = client.register_script(_COMPLETE)
        self._retry = client.register_script(_RETRY)
        self._dead = client.register_script(_DEAD)
        self._claim = client.register_script(_CLAIM)
        self._replay = client.register_script(_REPLAY)
        self._purge = client.register_script(_PURGE)

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
        """Store the request once, one delivery record per backend, their schedule entries and
        first task messages, in one Lua script (atomic, one round trip, one reply to parse).
        Raises redis errors; nothing is half-written."""
        keys_, args, ids = self._accept_call(request_id, req, backends)
        self._accept(keys=keys_, args=args)
        return ids

    def accept_batch(self, entries: Sequence[tuple[str, StoredRequest, Sequence[Backend]]]
                     ) -> None:
        """:meth:`accept` for many requests in one pipeline (bulk loads: benchmarks, the
        backlog test). Each request is written atomically; the batch as a whole is not."""
        pipe = self.r.pipeline(transaction=False)
        for request_id, req, backends in entries:
            keys_, args, _ = self._accept_call(request_id, req, backends)
            self._accept(keys=keys_, args=args, client=pipe)
        pipe.execute()

    def accept_once(self, request_id: str, req: StoredRequest, backends: Sequence[Backend],
                    dedupe_key: str, window: float) -> Accepted:
        """As :meth:`accept`, unless ``dedupe_key`` already names a request accepted within
        ``window`` seconds: then nothing is written and that request is returned. The check and
        the write are one Lua script, so two identical requests racing each other store one set
        of deliveries. Raises redis errors; nothing is half-written."""
        keys_, args, ids = self._accept_call(request_id, req, backends, dedupe_key, window)
        first = self._accept(keys=keys_, args=args)
        if first:
            rid, _, n = first.decode().partition(":")
            return Accepted(rid, int(n or 0), True)
        return Accepted(request_id, len(ids), False)

    def _accept_call(self, request_id: str, req: StoredRequest, backends: Sequence[Backend],
                     dedupe_key: str | None = None, window: float = 0.0
                     ) -> tuple[list[str], list[Any], list[str]]:
        ids = keys.delivery_ids(request_id, len(backends))
        fields = [x for pair in req.to_fields().items() for x in pair]
        args: list[Any] = [len(ids), req.accepted + self.lease, repr(req.accepted),
                           "1" if dedupe_key else "0", max(1, int(window * 1000)), request_id,
                           keys.DELIVERY, len(fields) // 2, *fields]
        for did, backend in zip(ids, backends, strict=True):
            args += [did, backend.url, backend.route, task_message(keys.QUEUE, did, 1)]
        keys_ = [keys.request(request_id), keys.SCHEDULE, keys.QUEUE, dedupe_key or keys.SCHEDULE]
        return keys_, args, ids

    # -- worker ------------------------------------------------------------------------------
    def begin(self, delivery_id: str, generation: int, hold: float, cap: int = 0,
              busy_delay: float = 1.0) -> Attempt | Deferred | None:
        """Start an attempt: holds the delivery for ``hold`` seconds and returns its data.
        None if the message is stale (another generation owns it, or the copy already ended).

        With ``cap`` > 0, at most ``cap`` attempts run against one backend URL across all
        workers (counted in ``hookfan:busy:<url>``, each entry expiring with its hold so a
        killed worker frees its slot). Over the cap the copy is re-scored ``busy_delay`` seconds
        ahead and :class:`Deferred` is returned, so a slow backend cannot occupy every slot."""
        now = time.time()
        res = self._begin(keys=[keys.delivery(delivery_id), keys.SCHEDULE],
                          args=[delivery_id, generation, now + hold, keys.REQUEST, now, cap,
                                keys.BUSY, now + busy_delay])
        if res is None:
            return None
        if res == 0:
            return Deferred(delivery_id, now + busy_delay)
        rid, url, route, t0, num, m, u, h, b, ip, t, host = res
        req = StoredRequest.from_fields({b"m": m, b"u": u, b"h": h, b"b": b, b"ip": ip, b"t": t,
                                         b"host": host})
        return Attempt(delivery_id, generation, rid.decode(), Backend(route.decode(), url.decode()),
                       int(num), float(t0), req)

    # complete, retry and dead_letter also keep the per-backend figures of ``backend`` (when
    # given) in :data:`keys.STATS` for the operator's RequestClone status, in the same script:
    # delivered count and last delivery time, or the last error.

    def complete(self, delivery_id: str, backend: Backend | None = None) -> bool:
        """The copy was delivered: remove it, and the body once no other copy needs it."""
        rid = keys.request_id_of(delivery_id)
        return bool(self._complete(
            keys=[keys.delivery(delivery_id), keys.SCHEDULE, keys.request(rid), keys.STATS],
            args=[delivery_id, keys.BUSY, *_stat_fields(backend, "delivered", "last_delivered"),
                  repr(time.time())]))

    def retry(self, delivery_id: str, generation: int, due: float, error: str,
              backend: Backend | None = None) -> bool:
        return bool(self._retry(keys=[keys.delivery(delivery_id), keys.SCHEDULE, keys.STATS],
                                args=[delivery_id, generation, due, error, time.time(),
                                      keys.BUSY, *_stat_fields(backend, "last_error")]))

    def dead_letter(self, delivery_id: str, generation: int, error: str,
                    backend: Backend | None = None) -> bool:
        return bool(self._dead(
            keys=[keys.delivery(delivery_id), keys.SCHEDULE, keys.DEAD, keys.STATS],
            args=[delivery_id, generation, time.time(), error, keys.BUSY,
                  *_stat_fields(backend, "last_error")]))

    def claim_due(self, limit: int = 500) -> list[tuple[str, int]]:
        """Deliveries due now (or whose lease ran out), each held for the lease and given a new
        generation. The caller publishes one task per pair; if it dies first, the lease expires
        and the next claim picks them up again."""
        now = time.time()
        flat = self._claim(keys=[keys.SCHEDULE], args=[now, now + self.lease, limit,
                                                         keys.DELIVERY])
        return [(flat[i].decode(), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    def publish_tasks(self, claimed: Sequence[tuple[str, int]]) -> None:
        if claimed:
            self.r.lpush(keys.QUEUE, *[task_message(keys.QUEUE, d, g) for d, g in claimed])

    def next_due(self) -> float | None:
        first = self.r.zrange(keys.SCHEDULE, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def queue_length(self) -> int:
        return int(self.r.llen(keys.QUEUE))

    # -- dead letters ------------------------------------------------------------------------
    def dead_ids(self) -> list[str]:
        return [d.decode() for d in self.r.zrange(keys.DEAD, 0, -1)]

    def dead_letter_info(self, delivery_id: str) -> tuple[DeadLetter, StoredRequest] | None:
        """The dead letter and its stored request, or None if no such dead letter exists."""
        d = self.r.hgetall(keys.delivery(delivery_id))
        if d.get(b"s") != b"d":
            return None
        rid = d[b"r"].decode()
        f = self.r.hgetall(keys.request(rid))
        if not f:
            return None
        req = StoredRequest.from_fields(f)
        letter = DeadLetter(delivery_id, rid, Backend(d[b"route"].decode(), d[b"b"].decode()),
                            int(d.get(b"a", 0)), d.get(b"e", b"").decode(),
                            float(d.get(b"lt", 0)), req.accepted, req.method, req.uri,
                            len(req.body))
        return letter, req

    def replay(self, delivery_id: str) -> bool:
        """Put a dead letter back on the schedule, due now, with a fresh retry age."""
        return bool(self._replay(keys=[keys.delivery(delivery_id), keys.SCHEDULE, keys.DEAD],
                                 args=[delivery_id, time.time()]))

    def purge(self, delivery_id: str) -> bool:
        """Delete a dead letter, and its request's body if nothing else references it."""
        rid = keys.request_id_of(delivery_id)
        return bool(self._purge(keys=[keys.delivery(delivery_id), keys.DEAD, keys.request(rid)],
                                args=[delivery_id]))

    # -- figures for status ------------------------------------------------------------------
    def trace_parent(self, request_id: str) -> str:
        """The traceparent stored with a request; empty if none (tracing was off)."""
        raw = self.r.hget(keys.request(request_id), "tp")
        return "" if raw is None else str(raw.decode("latin-1"))

    def delivery_figures(self) -> dict[str, str]:
        """Every field of :data:`keys.STATS` (see :func:`keys.stat_field`), decoded."""
        return {k.decode(): v.decode() for k, v in self.r.hgetall(keys.STATS).items()}


def _stat_fields(backend: Backend | None, *figures: str) -> list[str]:
    """The :data:`keys.STATS` fields of ``figures`` for ``backend``; empty strings (the
    scripts then keep no figures) without one."""
    return [keys.stat_field(f, backend.route, backend.url) if backend else "" for f in figures]
