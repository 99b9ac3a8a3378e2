"""The worker's side of the per-backend schedule: dispatch, and claim/settle batches.

Two calls carry every state change of a delivery (see the headers of ``dispatch.lua`` and
``settle.lua``): the dispatcher takes ownership of backends with due copies; a task records
its batch's outcomes and claims its next batch in one script. Copies are claimed with an
attempt token (their generation); an outcome with an older token is stale and changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hookfan import deliverypolicy, keys, scripts
from hookfan.config import DeliverySettings
from hookfan.deliverypolicy import DeliveryPolicy, effective
from hookfan.envelope import StoredRequest

Kind = Literal["d", "r", "x", "u"]
"""Delivered, retry after a delay, dead letter, not sent (no attempt was made)."""


@dataclass(frozen=True)
class Claimed:
    """One copy claimed for one attempt."""

    delivery_id: str
    generation: int
    """The attempt token: the outcome must carry it to count."""
    attempt: int
    """1 for the first attempt; replays start again at 1."""
    started: float
    """Unix time (Redis clock) the retry age began: acceptance, or the last replay."""
    route: str

    @property
    def request_id(self) -> str:
        return keys.request_id_of(self.delivery_id)


@dataclass(frozen=True)
class Result:
    """A claimed copy's outcome, as :meth:`Schedule.settle` records it."""

    copy: Claimed
    kind: Kind
    delay: float = 0.0
    """Seconds until the next attempt (kind ``r``)."""
    reason: str = ""
    """``HTTP 503``, ``Timeout``...; never content."""
    size: int = -1
    """Body bytes of the copy's request (-1: unknown), kept with a dead letter."""


@dataclass(frozen=True)
class Batch:
    """What :meth:`Schedule.settle` answered."""

    copies: list[Claimed]
    senders: int
    """Sender slots granted: at most this many attempts of the batch run at once."""
    more: int
    """Copies of the backend still due after this claim."""
    stale: int
    """Outcomes given that no longer counted (their copy was re-claimed or ended)."""
    queued: int
    """Task messages waiting in the Celery queue (other backends wanting a process)."""
    ended: bool
    """The task no longer owns the backend and must stop."""
    dead: list[str] = field(default_factory=list)
    """Delivery ids dead-lettered by this call (outcomes, expired leases, retry age)."""
    autopaused: bool = False
    """This call paused the backend (``--auto-pause-after``): no delivery for that long while
    its copies failed."""


def _ms(seconds: float) -> int:
    return max(0, int(seconds * 1000))


_NO_LIMITS = (0, 0, "0")


def _limits(p: DeliveryPolicy | None) -> tuple[float, int, str]:
    """settle.lua's rate, bucket and ordered arguments."""
    if p is None:
        return _NO_LIMITS
    return (p.rate or 0, p.bucket, "1" if p.ordered else "0")


class Schedule:
    """The worker's Redis calls; ``client`` is a redis-py client returning bytes."""

    def __init__(self, client: Any, settings: DeliverySettings) -> None:
        self.r = client
        self.s = settings
        self.scripts = scripts.register(client)

    def dispatch(self, limit: int = 64) -> tuple[list[tuple[str, int]], float | None]:
        """Take ownership of up to ``limit`` backends whose copies are due (by Redis's clock).
        Returns ((url, due copies) per backend now owned, seconds until the next backend
        is due or an ownership lapses, or None if nothing is scheduled)."""
        candidates = [u.decode() for u in self.r.zrange(keys.DUE, 0, limit - 1)]
        out = self.scripts["dispatch"](
            keys=[keys.DUE, keys.OWNED, *[keys.ready(u) for u in candidates], keys.PAUSED],
            args=[_ms(self.s.hold), *candidates])
        owned = [(out[i].decode(), int(out[i + 1])) for i in range(2, len(out), 2)]
        wait = int(out[1])
        return owned, (None if wait < 0 else wait / 1000)

    def settle(self, url: str, token: str, held: int, results: Sequence[Result],
               want: int, linger: bool = False, policy: DeliveryPolicy | None = None
               ) -> Batch:
        """Record ``results`` (releasing the ``held`` sender slots of ``token``), turn expired
        leases into failed attempts, then claim up to ``want`` due copies with up to
        ``--backend-concurrency`` senders, or, with ``want`` 0 or nothing due, end the
        task's ownership of ``url`` (unless ``linger``: then an empty batch keeps it, and
        the call writes nothing when nothing changed). ``policy`` (the backend's
        ``spec.delivery``) is laid over the settings; its rate limit and ordering are kept
        in the script. One script, one round trip. Raises redis errors."""
        s = self.s if policy is None else effective(self.s, policy)
        delivered = [keys.request(r.copy.request_id) for r in results if r.kind == "d"]
        flat: list[Any] = []
        for r in results:
            flat += [r.copy.delivery_id, r.copy.generation, r.kind, _ms(r.delay), r.reason,
                     r.size]
        share = s.backend_concurrency or s.batch
        out = self.scripts["settle"](
            keys=[*keys.backend_keys(url), keys.DUE, keys.OWNED, keys.STATS, keys.DEAD,
                  keys.DEAD_INFO, keys.QUEUE, keys.DEAD_COUNT, keys.QUOTA, keys.throttle(url),
                  *delivered, keys.PAUSED, keys.FAILING, keys.PAUSE_EVENTS],
            args=[url, token, held, want, share, s.backend_concurrency, _ms(s.lease),
                  _ms(s.hold), _ms(s.max_retry_age), _ms(s.min_retry_delay),
                  _ms(s.max_retry_delay), random.getrandbits(31), "1" if linger else "0",
                  *_limits(policy), len(results), *flat, _ms(s.auto_pause_after)])
        copies = [Claimed(out[i].decode(), int(out[i + 1]), int(out[i + 2]),
                          int(out[i + 3]) / 1000, out[i + 4].decode())
                  for i in range(7, len(out), 5)]
        return Batch(copies, int(out[0]), int(out[1]), int(out[2]), int(out[3]),
                     bool(int(out[4])), [d.decode() for d in out[5]], bool(int(out[6])))

    def paused(self, url: str) -> bool:
        """Is ``url`` paused now (``hookfan backends pause``)? Raises redis errors."""
        return bool(self.r.hexists(keys.PAUSED, url))

    def policies(self) -> dict[str, DeliveryPolicy]:
        """Every backend's published delivery policy (:data:`keys.POLICY`); none when absent.
        Raises redis errors."""
        return deliverypolicy.load(self.r.get(keys.POLICY))

    def requests(self, request_ids: Iterable[str]) -> dict[str, StoredRequest]:
        """The stored requests of ``request_ids`` (one pipelined read); a missing one (its
        request was purged) is left out."""
        ids = list(dict.fromkeys(request_ids))
        pipe = self.r.pipeline(transaction=False)
        for rid in ids:
            pipe.hgetall(keys.request(rid))
        return {rid: StoredRequest.from_fields(f)
                for rid, f in zip(ids, pipe.execute(), strict=True) if f}

    def record_answer(self, request_id: str, record: bytes, keep_ms: int) -> None:
        """Push one target's first answer for the intake thread waiting on ``request_id``
        (:data:`hookfan.keys.ANSWER`), kept ``keep_ms`` (one round trip). Only for requests
        stored with ``await_ms``: no other copy costs this. Raises redis errors."""
        key = keys.answer(request_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(key, record)
        pipe.pexpire(key, max(1000, keep_ms))
        pipe.execute()
