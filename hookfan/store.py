"""The ledger in Redis: requests, the per-backend schedule, dead letters, the route table.

Every state change of a copy is one Lua script (:mod:`hookfan.scripts`), so a crash between
two writes never leaves a copy half-scheduled. This module holds what the intake, the CLI and
the operator do; the worker's claim/settle calls are in :mod:`hookfan.schedule`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from hookfan import deliverypolicy, keys, scripts, signatures
from hookfan.config import RedisSettings
from hookfan.deadletters import DeadLetter, DeadLetters, Record
from hookfan.deliverypolicy import DeliveryPolicy
from hookfan.envelope import StoredRequest, request_meta
from hookfan.routes import Backend, RouteTable, normalize_host

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    """What :meth:`Store.accept_once` did: stored a new request, or found its first copy."""

    request_id: str
    deliveries: int
    duplicate: bool


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
    (:meth:`RedisSettings.client_url`, :meth:`RedisSettings.ssl_options`). With Sentinels in
    the settings, the client finds the primary through them (:func:`sentinel_client`)."""
    if isinstance(target, RedisSettings):
        url, tls = target.client_url(), target.ssl_options()
        if target.sentinel:
            return sentinel_client(target, url, tls, timeout)
    else:
        url, tls = target, {}
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                health_check_interval=10, **tls)


def sentinel_client(settings: RedisSettings, url: str, tls: dict[str, str],
                    timeout: float) -> redis.Redis:
    """A client of the primary the Sentinels name, with the database, password and TLS of
    ``url``. Each new connection asks the Sentinels first, so after a failover the next one
    reaches the new primary; a connection to the old one breaks or is answered READONLY, and
    redis-py drops it. While no Sentinel names a primary, commands raise MasterNotFoundError
    (a ConnectionError). Sentinels are asked without password or TLS, and are not retried:
    one that does not answer within ``timeout`` is skipped."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    from redis.sentinel import Sentinel

    given = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
    options: dict[str, Any] = {k: given[k] for k in ("db", "username", "password") if k in given}
    if settings.tls:
        options.update(ssl=True, **tls)
    quick = {"socket_connect_timeout": timeout, "socket_timeout": timeout,
             "retry": Retry(NoBackoff(), 0)}
    sentinels = Sentinel(list(settings.sentinel), sentinel_kwargs=quick)  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinels.master_for(  # type: ignore[no-untyped-call]
        settings.sentinel_master, socket_connect_timeout=timeout, socket_timeout=timeout,
        health_check_interval=10, **options)
    return client


@dataclass(frozen=True)
class Quota:
    """What one host may hold in Redis (``--max-pending-per-host``,
    ``--max-stored-bytes-per-host``); 0: no cap."""

    pending: int = 0
    """Copies: pending ones and dead letters."""
    stored_bytes: int = 0
    """Its requests' bodies and metadata as stored, each request once."""


class Replayed(Exception):
    """The accept stored nothing: this signed request was accepted before, within the time
    its signature stays acceptable."""


class OverQuota(Exception):
    """The accept stored nothing: the request would take its host past a cap."""

    def __init__(self, cap: str) -> None:
        super().__init__(cap)
        self.cap = cap
        """``pending`` or ``bytes``."""

    @property
    def flag(self) -> str:
        return "--max-pending-per-host" if self.cap == "pending" else \
            "--max-stored-bytes-per-host"


def accepted(reply: bytes | list[bytes] | None, request_id: str, copies: int) -> Accepted:
    """What the reply of an ``accept`` call says: nil, stored as ``request_id`` with
    ``copies``; ``'<request id>:<copies>'``, the first request with that provider id.
    Raises :class:`OverQuota` for a request its host's quota refused, :class:`Replayed` for
    a signed request accepted before."""
    if isinstance(reply, list):
        if reply[0] == b"replayed":
            raise Replayed()
        raise OverQuota(reply[1].decode())
    if not reply:
        return Accepted(request_id, copies, False)
    rid, _, n = reply.decode().partition(":")
    return Accepted(rid, int(n or 0), True)


def is_oom(exc: BaseException) -> bool:
    """Whether Redis refused a write for memory (``maxmemory`` with ``noeviction``): redis-py
    maps the reply to OutOfMemoryError; inside a script or a transaction, or through kombu,
    it arrives wrapped in another error that still quotes Redis's message."""
    text = str(exc)
    return (isinstance(exc, redis.exceptions.OutOfMemoryError)
            or "OOM command not allowed" in text
            or "used memory > 'maxmemory'" in text)


def parse_copy(value: bytes) -> tuple[int, int, float, str]:
    """(generation, attempts, t0 seconds, route) of a :data:`keys.COPIES` value."""
    g, a, t0, route = value.decode().split(" ", 3)
    return int(g), int(a), int(t0) / 1000, route


class Store:
    def __init__(self, client: redis.Redis, verify_key: bytes | None = None) -> None:
        # redis-py's stubs type replies as bytes | str; this client always returns bytes.
        self.r: Any = client
        self.verify_key = verify_key
        """Seals (operator) and opens (app) the signing secrets in :data:`keys.VERIFY`
        (``--verify-key-file``); None: they are written in clear."""
        self._warned_clear = False
        self.scripts = scripts.register(client)
        self.dead = DeadLetters(client)

    # -- route table -------------------------------------------------------------------------
    def publish_routes(self, table: RouteTable) -> int:
        """Write the whole table with a new version in one transaction; returns the version.
        Its verify map (secrets) goes to :data:`keys.VERIFY` and its delivery policies to
        :data:`keys.POLICY`, not into the table's JSON."""
        version = int(self.r.incr(keys.ROUTES_VERSION))
        published = RouteTable(version, table.routes, receivers=table.receivers)
        pipe = self.r.pipeline(transaction=True)
        pipe.set(keys.ROUTES, published.to_json())
        if table.verify:
            if self.verify_key is None and not self._warned_clear:
                self._warned_clear = True
                log.warning("spec.verify signing secrets are kept in Redis in clear (%s): give "
                            "the operator and the app --verify-key-file, so that only they can "
                            "read them", keys.VERIFY)
            pipe.set(keys.VERIFY, signatures.dump(table.verify, self.verify_key))
        else:
            pipe.delete(keys.VERIFY)
        if table.policies:
            pipe.set(keys.POLICY, deliverypolicy.dump(table.policies))
        else:
            pipe.delete(keys.POLICY)
        pipe.set(keys.ROUTES_VERSION, version)
        pipe.execute()
        self._unblock(table.policies)
        return version

    def _unblock(self, policies: Mapping[str, DeliveryPolicy]) -> None:
        """Drop the ``blocked:`` figures of backends no longer ordered: only an ordered
        backend's settle clears its own, and one that stopped being ordered never will."""
        stale = [f for f, _ in self.r.hscan_iter(keys.STATS, match="blocked:*", count=1000)
                 if not policies.get(f.decode().partition(" ")[2], DeliveryPolicy()).ordered]
        if stale:
            self.r.hdel(keys.STATS, *stale)

    def routes_version(self) -> int | None:
        raw = self.r.get(keys.ROUTES_VERSION)
        return None if raw is None else int(raw)

    def load_routes(self) -> RouteTable | None:
        """The published table with its verify map, or None if the operator has not published
        one yet. Both keys are read in one transaction: a host never shows up routed without
        the verification published with it."""
        pipe = self.r.pipeline(transaction=True)
        pipe.get(keys.ROUTES)
        pipe.get(keys.VERIFY)
        raw, verify = pipe.execute()
        if raw is None:
            return None
        table = RouteTable.from_json(raw)
        if verify is None:
            return table
        return dataclasses.replace(table, verify=signatures.load(verify, self.verify_key))

    # -- intake ------------------------------------------------------------------------------
    def accept(self, request_id: str, req: StoredRequest, backends: Sequence[Backend]) -> list[str]:
        """Store the request once and one pending copy per backend (its ready-queue entry and
        state), in one Lua script (atomic, one round trip), and wake the dispatchers.
        Raises redis errors; nothing is half-written."""
        keys_, args, ids = self.accept_call(request_id, req, backends)
        self.scripts["accept"](keys=keys_, args=args)
        return ids

    def accept_batch(self, entries: Sequence[tuple[str, StoredRequest, Sequence[Backend]]]
                     ) -> None:
        """:meth:`accept` for many requests in one pipeline (bulk loads: benchmarks, the
        backlog test). Each request is written atomically; the batch as a whole is not."""
        pipe = self.r.pipeline(transaction=False)
        for request_id, req, backends in entries:
            keys_, args, _ = self.accept_call(request_id, req, backends)
            self.scripts["accept"](keys=keys_, args=args, client=pipe)
        pipe.execute()

    def accept_once(self, request_id: str, req: StoredRequest, backends: Sequence[Backend],
                    dedupe_key: str, window: float) -> Accepted:
        """As :meth:`accept`, unless ``dedupe_key`` already names a request accepted within
        ``window`` seconds: then nothing is written and that request is returned. The check and
        the write are one Lua script, so two identical requests racing each other store one set
        of deliveries. Raises redis errors; nothing is half-written."""
        keys_, args, ids = self.accept_call(request_id, req, backends, dedupe_key, window)
        return accepted(self.scripts["accept"](keys=keys_, args=args), request_id, len(ids))

    def accept_call(self, request_id: str, req: StoredRequest, backends: Sequence[Backend],
                    dedupe_key: str | None = None, window: float = 0.0,
                    quota: Quota | None = None, seen: tuple[str, float] | None = None
                    ) -> tuple[list[str], list[Any], list[str]]:
        """(keys, arguments, delivery ids) of one call of the ``accept`` script; with
        ``quota``, the call stores nothing past the host's caps (its reply says which); with
        ``seen`` (a replay digest and seconds to keep it), nothing when that digest was
        accepted before, and the digest is remembered with the request."""
        ids = keys.delivery_ids(request_id, len(backends))
        stored = req.to_fields()
        fields = [x for pair in stored.items() for x in pair]
        req_key = keys.request(request_id)
        keys_ = [req_key, dedupe_key or req_key, keys.fence(request_id), keys.DUE, keys.OWNED,
                 keys.BACKENDS, keys.QUOTA]
        caps = quota or Quota()
        args: list[Any] = ["1" if dedupe_key else "0", max(1, int(window * 1000)), request_id,
                           len(ids), len(fields) // 2, normalize_host(req.host),
                           sum(len(v) for v in stored.values()), caps.pending, caps.stored_bytes,
                           *fields]
        for did, backend in zip(ids, backends, strict=True):
            keys_ += [keys.ready(backend.url), keys.copies(backend.url)]
            args += [did, backend.url, backend.route]
        if seen is not None:
            keys_.append(keys.seen(seen[0]))
            args.append(max(1, int(seen[1] * 1000)))
        return keys_, args, ids

    def resolve(self, request_id: str, dedupe_key: str | None) -> Accepted | None:
        """After the reply to an accept was lost: whether it committed. None when it did not;
        the request id is then fenced, so that the accept, should it still reach Redis, stores
        nothing. With a de-duplication key, the first request's when the accept found one.
        ``deliveries`` is 0 when the accept committed (the caller knows how many it sent).
        Raises redis errors: then nobody knows."""
        req_key = keys.request(request_id)
        found = self.scripts["resolve"](
            keys=[req_key, keys.fence(request_id), dedupe_key or req_key], args=[keys.FENCE_MS])
        if found is None:
            return None
        return accepted(None if found == b"stored" else found, request_id, 0)

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
    # Selecting, counting, replaying and purging many at once: hookfan.deadletters.
    def dead_ids(self) -> list[str]:
        """Every dead-lettered delivery id, oldest first (small stores and tests only)."""
        return [d.decode() for d in self.r.zrange(keys.DEAD, 0, -1)]

    def _dead_record(self, delivery_id: str) -> Record | None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(keys.DEAD_INFO, delivery_id)
        pipe.zscore(keys.DEAD, delivery_id)
        raw, ms = pipe.execute()
        return None if raw is None else Record.parse(delivery_id, float(ms or 0), raw)

    def dead_letter(self, delivery_id: str) -> DeadLetter | None:
        """The dead letter without its request's body, or None if no such dead letter."""
        rec = self._dead_record(delivery_id)
        return None if rec is None else self.dead.letters([rec])[0]

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
        rec = self._dead_record(delivery_id)
        return rec is not None and self.dead.replay([rec])[0] == 1

    def purge(self, delivery_id: str) -> bool:
        """Delete a dead letter, and its request's body if nothing else references it."""
        rec = self._dead_record(delivery_id)
        return rec is not None and bool(self.dead.purge([rec]))

    # -- figures for status ------------------------------------------------------------------
    def trace_parent(self, request_id: str) -> str:
        """The traceparent stored with a request; empty if none (tracing was off)."""
        r, tp = self.r.hmget(keys.request(request_id), "r", "tp")
        meta = request_meta(r)
        if meta is not None:
            return meta.trace
        return "" if tp is None else str(tp.decode("latin-1"))  # the layout before ``r``

    def delivery_figures(self) -> dict[str, str]:
        """Every field of :data:`keys.STATS` (see :func:`keys.stat_field`), decoded."""
        return {k.decode(): v.decode() for k, v in self.r.hgetall(keys.STATS).items()}
