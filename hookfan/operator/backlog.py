"""The backlog (pending and dead-lettered copies per backend) and the operator's own metrics.

**How the backlog is computed: a periodic, bounded scan, in the leader only.** Every pending
copy has an entry in its backend's copy hash (``hookfan:c:<url>``: route, attempts, retry-age
start) and every dead letter one in ``hookfan:dl``; each scan reads those hashes (HSCAN, at
most ``limit`` entries) and, pipelined, the size of each stored request. Chosen over per-backend
counters kept by the store's Lua scripts because it adds nothing to the intake's and the
workers' hot path (their scripts stay as they are, one less thing to get wrong under a crash),
it is exact after a replay, a purge, an upgrade or a hand-edited Redis (counters drift and
would need their own repair scan), and its cost is paid by one process only: about one
HSCAN per backend plus one pipelined read per request per interval. Past ``limit`` the
figures cover the first ``limit`` copies found (in no particular order) and
``hookfan_backlog_truncated`` is 1.

Dead letters are the exception: an outage can leave millions, past any bound a scan could
keep, so their number per backend comes from ``hookfan:dlcount``, which the dead-letter
scripts keep (a worker counts records older than that counter at start); the scan only reads
their ids for the stored bytes.

Scrapes never touch Redis: they read the last scan.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from hookfan import keys
from hookfan.envelope import request_meta
from hookfan.store import Store

log = logging.getLogger(__name__)

SCAN_LIMIT = 100_000
CHUNK = 1000
Pair = tuple[str, str]
"""(route, backend URL)."""


@dataclass(frozen=True)
class Backlog:
    pending: dict[Pair, int] = field(default_factory=dict)
    oldest: dict[Pair, float] = field(default_factory=dict)
    """Acceptance time (Unix) of the oldest pending copy per backend."""
    dead: dict[Pair, int] = field(default_factory=dict)
    stored_bytes: int = 0
    truncated: bool = False
    at: float = 0.0
    blocked: dict[Pair, float] = field(default_factory=dict)
    """Ordered backends held back by a failing copy: since when (Unix), from the workers'
    ``blocked:`` figures in :data:`keys.STATS`."""


def summarize(rows: Sequence[tuple[str, Pair, float]], stored_bytes: int, truncated: bool,
              at: float) -> Backlog:
    """A backlog from (state ``p``/``d``, (route, backend), accepted time) rows. Pure."""
    pending: Counter[Pair] = Counter()
    dead: Counter[Pair] = Counter()
    oldest: dict[Pair, float] = {}
    for state, pair, accepted in rows:
        if state == "p":
            pending[pair] += 1
            oldest[pair] = min(oldest.get(pair, accepted), accepted)
        elif state == "d":
            dead[pair] += 1
    return Backlog(dict(pending), oldest, dict(dead), stored_bytes, truncated, at)


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i:i + CHUNK]


def scan(store: Store, limit: int = SCAN_LIMIT) -> Backlog:
    """Read the backlog from Redis (see the module docstring). Raises redis errors."""
    r: Any = store.r
    rows: list[tuple[str, Pair, float]] = []
    ids: list[str] = []
    truncated = False
    for url in store.backend_urls():
        copies = store.pending(url, limit - len(ids))
        rows += [("p", (c.backend.route, url), c.started) for c in copies]
        ids += [c.delivery_id for c in copies]
        if len(ids) >= limit:
            truncated = True
            break
    for n, (did, _) in enumerate(r.hscan_iter(keys.DEAD_INFO, count=1000)):
        if n >= limit:
            truncated = True
            break
        ids.append(did.decode())  # their bodies count in the stored bytes
    stored = 0
    for chunk in _chunks(sorted({keys.request_id_of(d) for d in ids})):
        pipe = r.pipeline(transaction=False)
        for rid in chunk:
            pipe.hget(keys.request(rid), "r")
            pipe.hstrlen(keys.request(rid), "b")
            pipe.hstrlen(keys.request(rid), "h")
        replies = iter(pipe.execute())
        for r, body, headers in zip(replies, replies, replies, strict=True):
            meta = request_meta(r)  # None: gone, or stored in the layout before ``r``
            stored += meta.size + len(r) if meta is not None else int(body) + int(headers)
    # Dead letters are counted by the scripts that bury, replay, purge and expire them
    # (hookfan:dlcount): exact at any number, without reading them.
    return replace(summarize(rows, stored, truncated, time.time()), dead=store.dead.counts(),
                   blocked=blocked_since(store.delivery_figures()))


def blocked_since(figures: Mapping[str, str]) -> dict[Pair, float]:
    """(route, backend) -> when its ordered queue became blocked, from
    :meth:`Store.delivery_figures` (``blocked:<route> <url>`` = ``<delivery id> <since>``).
    Pure."""
    out: dict[Pair, float] = {}
    for name, value in figures.items():
        figure, _, pair = name.partition(":")
        if figure == "blocked":
            route, _, url = pair.partition(" ")
            out[(route, url)] = float(value.rpartition(" ")[2])
    return out


class OperatorStats:
    """What the operator did, read by :class:`OperatorCollector` at scrape time."""

    def __init__(self, leader: Callable[[], bool],
                 restarts: Callable[[], dict[str, int]] = dict) -> None:
        self.leader = leader
        self.restarts = restarts
        self.syncs = 0
        self.errors = 0
        self.routes = 0
        self.backends = 0
        self.backlog: Backlog | None = None
        """The last scan, while this process leads; None otherwise."""

    def synced(self, hosts: int, backends: int) -> None:
        self.syncs += 1
        self.routes, self.backends = hosts, backends


class OperatorCollector(Collector):
    """The operator's metrics (docs/metrics.md); backlog gauges only while leading."""

    def __init__(self, stats: OperatorStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        s = self.stats
        yield CounterMetricFamily("hookfan_operator_syncs", "Route table syncs.", s.syncs)
        yield CounterMetricFamily("hookfan_operator_errors", "Failed syncs and writes.",
                                  s.errors)
        yield GaugeMetricFamily("hookfan_operator_routes", "Hosts in the route table.",
                                s.routes)
        yield GaugeMetricFamily("hookfan_operator_backends", "(host, backend) entries in the "
                                "route table.", s.backends)
        yield GaugeMetricFamily("hookfan_operator_leader", "1 while this replica leads.",
                                1 if s.leader() else 0)
        restarts = CounterMetricFamily("hookfan_operator_watch_restarts", "Watch streams "
                                       "restarted after an error.", labels=["resource"])
        for resource, n in sorted(s.restarts().items()):
            restarts.add_metric([resource], n)
        yield restarts
        backlog = s.backlog if s.leader() else None
        if backlog is not None:
            yield from backlog_families(backlog)


def backlog_families(b: Backlog) -> Iterator[GaugeMetricFamily]:
    by = ["route", "backend"]
    pending = GaugeMetricFamily("hookfan_pending_deliveries", "Copies not yet delivered.",
                                labels=by)
    oldest = GaugeMetricFamily("hookfan_oldest_pending_age_seconds", "Age of the oldest "
                               "pending copy.", labels=by)
    dead = GaugeMetricFamily("hookfan_dead_letters", "Copies in the dead-letter store.",
                             labels=by)
    for pair in sorted(set(b.pending) | set(b.dead)):
        pending.add_metric(list(pair), b.pending.get(pair, 0))
        dead.add_metric(list(pair), b.dead.get(pair, 0))
        if pair in b.oldest:
            oldest.add_metric(list(pair), max(0.0, b.at - b.oldest[pair]))
    blocked = GaugeMetricFamily("hookfan_ordered_blocked_seconds", "How long an ordered "
                                "backend's failing copy has held back the copies behind it.",
                                labels=by)
    for pair, since in sorted(b.blocked.items()):
        blocked.add_metric(list(pair), max(0.0, b.at - since))
    yield pending
    yield oldest
    yield dead
    yield blocked
    yield GaugeMetricFamily("hookfan_stored_bytes", "Bytes of stored request bodies and "
                            "headers.", b.stored_bytes)
    yield GaugeMetricFamily("hookfan_backlog_truncated", "1 if the last backlog scan hit its "
                            "bound.", 1 if b.truncated else 0)


class BacklogScanner:
    """Rescans every ``interval`` seconds while this replica leads; calls ``on_scan`` with
    each fresh backlog (the status writer uses it). Never raises."""

    def __init__(self, store: Store, stats: OperatorStats, interval: float,
                 on_scan: Callable[[Backlog], object] = lambda _: None) -> None:
        self.store, self.stats, self.interval, self.on_scan = store, stats, interval, on_scan

    def step(self) -> None:
        if not self.stats.leader():
            self.stats.backlog = None
            return
        try:
            backlog = scan(self.store)
        except redis.RedisError as exc:
            self.stats.errors += 1
            log.warning("backlog not scanned, Redis unavailable: %s", type(exc).__name__)
            return
        self.stats.backlog = backlog
        self.on_scan(backlog)

    def run(self, stop: threading.Event) -> None:
        while True:
            try:
                self.step()
            except Exception:
                self.stats.errors += 1
                log.exception("backlog scan failed")
            if stop.wait(self.interval):
                return
