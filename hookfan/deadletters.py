"""Dead letters at the size of a real outage: select them by route, backend, reason and time,
count them, replay and purge them in chunks, expire them after a retention.

A day of 404s at 50 webhooks a second is about four million dead letters, so nothing here
holds them all: :meth:`DeadLetters.select` walks ``hookfan:dead`` (dead-lettered time order)
one page of :data:`PAGE` records per round trip (``dlpage.lua``), and every change is one Lua
script per chunk of :data:`CHUNK` ids. No body is read: a dead letter keeps its body's size
(``HSTRLEN`` answers for records written before it did). The route, backend and reason
filters are applied to each page here; the time bounds become the page's score range.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hookfan import keys, scripts
from hookfan.envelope import request_meta
from hookfan.routes import Backend

PAGE = 1000
"""Dead letters read per round trip."""
CHUNK = 500
"""Dead letters replayed, purged or expired per script call."""
LOOK = 5000
"""Most dead letters one ``dlpage.lua`` call looks at (bounds the time Redis spends in it)."""

_PERIOD = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_period(text: str) -> float:
    """Seconds for ``750ms``, ``10s``, ``15m``, ``24h`` or ``14d``; ValueError otherwise."""
    m = _PERIOD.match(text.strip())
    if not m:
        raise ValueError(f"invalid duration {text!r} (write it like 30s, 15m, 24h or 14d)")
    return float(m.group(1)) * _UNIT[m.group(2)]


def parse_when(text: str, now: float) -> float:
    """A Unix time from ``--since``/``--until``: a duration means that long before ``now``
    (``1h``, ``2d``); otherwise an ISO 8601 time (UTC unless it names an offset). ValueError
    naming both forms otherwise."""
    try:
        return now - parse_period(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"invalid time {text!r} (write a duration such as 1h or 2d, or an "
                         "ISO 8601 time such as 2026-11-30T08:00:00Z)") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True)
class Record:
    """One dead letter as ``hookfan:dl`` keeps it (no request fields)."""

    delivery_id: str
    dead_at: float
    """Unix time (Redis clock) it was dead-lettered."""
    url: str
    route: str
    generation: int
    attempts: int
    started: float
    """Unix time its retry age began."""
    reason: str
    size: int | None
    """Body bytes; None when the record does not say (then ``HSTRLEN`` tells)."""
    counted: bool
    """Whether ``hookfan:dlcount`` counts it (records written before it existed do not)."""

    @classmethod
    def parse(cls, delivery_id: str, ms: float, raw: bytes) -> Record:
        url, route, g, a, t0, reason, *rest = json.loads(raw)
        size = int(rest[0]) if rest and int(rest[0]) >= 0 else None
        return cls(delivery_id, ms / 1000, url, route, int(g), int(a), float(t0) / 1000,
                   str(reason), size, bool(rest))

    @property
    def request_id(self) -> str:
        return keys.request_id_of(self.delivery_id)

    def group(self, by: str) -> str:
        """Its ``route``, ``backend`` or ``reason`` (what ``stats --by`` groups on)."""
        return {"route": self.route, "backend": self.url, "reason": self.reason}[by]


@dataclass(frozen=True)
class Selection:
    """Which dead letters a verb acts on; every field None selects all."""

    route: str | None = None
    backend: str | None = None
    reason: str | None = None
    """A substring of the last error (``404`` matches ``HTTP 404 is not retryable``)."""
    since: float | None = None
    """Dead-lettered at or after this Unix time."""
    until: float | None = None
    """Dead-lettered at or before this Unix time."""
    limit: int | None = None
    """At most this many, oldest first."""

    @property
    def by_time_only(self) -> bool:
        return self.route is None and self.backend is None and self.reason is None


@dataclass(frozen=True)
class Group:
    """A line of ``deadletters stats``."""

    key: str
    count: int
    oldest: float
    newest: float


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter with its request's method, target and acceptance time, never its body."""

    record: Record
    accepted: float
    method: str
    uri: str
    body_size: int

    @property
    def delivery_id(self) -> str:
        return self.record.delivery_id

    @property
    def request_id(self) -> str:
        return self.record.request_id

    @property
    def backend(self) -> Backend:
        return Backend(self.record.route, self.record.url)

    @property
    def attempts(self) -> int:
        return self.record.attempts

    @property
    def last_error(self) -> str:
        return self.record.reason

    @property
    def dead_at(self) -> float:
        return self.record.dead_at

    @property
    def generation(self) -> int:
        return self.record.generation

    def summary(self) -> dict[str, Any]:
        """What ``deadletters list`` prints: no body, no header values."""
        r = self.record
        return {"id": r.delivery_id, "request": r.request_id, "route": r.route,
                "backend": r.url, "attempts": r.attempts, "last_error": r.reason,
                "dead_at": r.dead_at, "accepted": self.accepted, "method": self.method,
                "path": self.uri.split("?", 1)[0], "body_bytes": self.body_size}


def chunks(records: Iterable[Record], size: int = CHUNK) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for rec in records:
        chunk.append(rec)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _ms(t: float | None, default: str) -> str:
    return default if t is None else str(max(0, int(t * 1000)))


class DeadLetters:
    """The dead-letter store's Redis calls; ``client`` is a redis-py client returning bytes.
    Every method raises redis errors; what a chunk script did before an error stays done."""

    def __init__(self, client: Any) -> None:
        self.r = client
        self.scripts = scripts.register(client)

    def now(self) -> float:
        return scripts.redis_time(self.r)

    def select(self, sel: Selection, page: int = PAGE) -> Iterator[Record]:
        """The dead letters ``sel`` selects, oldest first, at most ``page`` per round trip
        (filtered in Redis by ``dlpage.lua``, which looks at no more than :data:`LOOK` per
        call), so memory stays flat. Dead letters replayed or purged while it runs are
        skipped, not repeated; ones dead-lettered meanwhile are taken if ``sel`` allows."""
        cursor, last, left = _ms(sel.since, "0"), "", sel.limit
        while left is None or left > 0:
            want = page if left is None else min(page, left)
            out = self.scripts["dlpage"](
                keys=[keys.DEAD, keys.DEAD_INFO],
                args=[cursor, last, _ms(sel.until, "+inf"), want, LOOK, sel.route or "",
                      sel.backend or "", sel.reason or ""])
            exhausted, cursor, last = int(out[1]), out[2], out[3]
            for i in range(4, len(out), 3):
                yield Record.parse(out[i].decode(), float(out[i + 1]), out[i + 2])
            if left is not None:
                left -= (len(out) - 4) // 3
            if exhausted:
                return

    def count(self, sel: Selection) -> int:
        """How many ``sel`` selects: one ZCOUNT when it filters by time only, else a pass."""
        if sel.by_time_only:
            n = int(self.r.zcount(keys.DEAD, _ms(sel.since, "-inf"), _ms(sel.until, "+inf")))
            return n if sel.limit is None else min(n, sel.limit)
        return sum(1 for _ in self.select(sel))

    def stats(self, sel: Selection, by: str) -> list[Group]:
        """Count, oldest and newest per ``by`` (``route``, ``backend`` or ``reason``), largest
        group first."""
        groups: dict[str, list[float]] = {}
        for rec in self.select(sel):
            g = groups.setdefault(rec.group(by), [0, rec.dead_at, rec.dead_at])
            g[0] += 1
            g[1], g[2] = min(g[1], rec.dead_at), max(g[2], rec.dead_at)
        return sorted((Group(k, int(n), lo, hi) for k, (n, lo, hi) in groups.items()),
                      key=lambda g: (-g.count, g.key))

    def letters(self, records: list[Record]) -> list[DeadLetter]:
        """The records with their requests' method, target and acceptance time, in one
        pipelined read; ``HSTRLEN`` only for records that do not carry their size (and whose
        request is in the layout before ``r``)."""
        pipe = self.r.pipeline(transaction=False)
        for rec in records:
            pipe.hmget(keys.request(rec.request_id), "r", "t", "m", "u")
            if rec.size is None:
                pipe.hstrlen(keys.request(rec.request_id), "b")
        replies = iter(pipe.execute())
        out = []
        for rec in records:
            r, t, m, u = next(replies)
            size = rec.size if rec.size is not None else int(next(replies))
            meta = request_meta(r)
            if meta is not None:
                out.append(DeadLetter(rec, meta.accepted, meta.method, meta.uri,
                                      rec.size if rec.size is not None else meta.size))
                continue
            out.append(DeadLetter(rec, float(t or 0), (m or b"").decode(),
                                  (u or b"").decode("latin-1"), size))
        return out

    def replay(self, chunk: list[Record], gap: float = 0.0, after: int = 0) -> tuple[int, int]:
        """Put ``chunk`` back in their ready queues (one script): the k-th replayed becomes
        due ``k * gap`` seconds after now, or after ``after`` (ms, Redis clock) if that is
        later. Returns (how many were still dead letters, the ms the next copy of a paced
        replay should become due)."""
        urls = list(dict.fromkeys(rec.url for rec in chunk))
        index = {u: i + 1 for i, u in enumerate(urls)}
        keys_ = [keys.DEAD_INFO, keys.DEAD, keys.DUE, keys.OWNED, keys.BACKENDS, keys.DEAD_COUNT]
        for url in urls:
            keys_ += [keys.ready(url), keys.copies(url)]
        args: list[Any] = [f"{gap * 1000:.6f}", after, len(urls), *urls]
        for rec in chunk:
            args += [rec.delivery_id, index[rec.url]]
        done, following = self.scripts["replay"](keys=keys_, args=args)
        return int(done), int(following)

    def purge(self, chunk: list[Record], before: float | None = None
              ) -> dict[tuple[str, str], int]:
        """Delete ``chunk`` (one script), and each request no copy references any more; with
        ``before`` only those dead-lettered at or before it. Returns purged per (route, url)."""
        out = self.scripts["purge"](
            keys=[keys.DEAD_INFO, keys.DEAD, keys.DEAD_COUNT, keys.QUOTA,
                  *[keys.request(rec.request_id) for rec in chunk]],
            args=[_ms(before, "+inf"), *[rec.delivery_id for rec in chunk]])
        return {(out[i].decode(), out[i + 1].decode()): int(out[i + 2])
                for i in range(0, len(out), 3)}

    def expire(self, retention: float, most: int | None = None) -> dict[str, int]:
        """Purge the dead letters older than ``retention`` seconds (Redis clock), oldest first,
        at most ``most`` of them, in chunks; returns how many per route."""
        cutoff = self.now() - retention
        expired: dict[str, int] = {}
        for chunk in chunks(self.select(Selection(until=cutoff, limit=most))):
            for (route, _), n in self.purge(chunk, before=cutoff).items():
                expired[route] = expired.get(route, 0) + n
        return expired

    def counts(self) -> dict[tuple[str, str], int]:
        """Dead letters per (route, backend url), from ``hookfan:dlcount``: no scan."""
        out = {}
        for field, n in self.r.hgetall(keys.DEAD_COUNT).items():
            route, _, url = field.decode().partition(" ")
            if int(n) > 0:
                out[(route, url)] = int(n)
        return out

    def uncounted(self) -> bool:
        """Whether some dead letter is missing from ``hookfan:dlcount`` (cheap: no scan)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.zcard(keys.DEAD)
        pipe.hvals(keys.DEAD_COUNT)
        total, counts = pipe.execute()
        return int(total) > sum(int(n) for n in counts)

    def backfill(self) -> int:
        """Count, and give a size to, every dead letter written before records kept their
        body size; returns how many. Idempotent, safe beside running workers."""
        if not self.uncounted():
            return 0
        old = (rec for rec in self.select(Selection()) if not rec.counted)
        return sum(self.count_in(chunk) for chunk in chunks(old))

    def count_in(self, chunk: list[Record]) -> int:
        """Count ``chunk``'s records not counted yet (one script); returns how many. A
        record another worker counted meanwhile is left alone."""
        return int(self.scripts["dlcount"](
            keys=[keys.DEAD_INFO, keys.DEAD_COUNT,
                  *[keys.request(rec.request_id) for rec in chunk]],
            args=[rec.delivery_id for rec in chunk]))
