"""Delivery figures in RequestClone status (``status.delivery``) and Warning Events on dead
letters and auto-paused backends, written by the leader.

Figures come from the last backlog scan (pending, dead-lettered) and the per-backend figures the
workers keep in Redis (delivered, last delivery time, last error). A RequestClone's status is
patched at most every ``--status-interval``, and only when its figures changed; a dead-letter
count that grew raises one Warning Event, at most one per RequestClone per ``event_every``.
``paused`` is true while any backend of the RequestClone is paused (``hookfan backends
pause``, or a worker's ``--auto-pause-after``); each auto-pause a worker recorded
(:data:`keys.PAUSE_EVENTS`) becomes one Warning Event ``BackendPaused`` on every RequestClone
of that backend. The counters are read just after the scan, so a copy delivered in between
can show in one status as both pending and delivered; the next scan corrects it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import redis

from hookfan.backends import Backends
from hookfan.routes import RouteTable
from hookfan.store import Store

from .backlog import Backlog
from .kubeclient import Kube

log = logging.getLogger(__name__)

EVENT_EVERY = 300.0
DEAD_LETTERED = "DeadLettered"
BACKEND_PAUSED = "BackendPaused"
CLEARED = ("blockedBy", "blockedSince")
"""Figures that leave the status when they no longer hold (the others only change)."""


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def route_urls(table: RouteTable | None, backlog: Backlog,
               kept: Mapping[str, str]) -> dict[str, set[str]]:
    """Route -> its backend URLs: routed now, or with copies or figures kept. Pure."""
    out: dict[str, set[str]] = {}
    pairs = [*backlog.pending, *backlog.dead]
    for key in kept:
        route, _, url = key.partition(":")[2].rpartition(" ")
        pairs.append((route, url))
    if table is not None:
        pairs += [(b.route, b.url) for bs in table.routes.values() for b in bs]
    for route, url in pairs:
        out.setdefault(route, set()).add(url)
    return out


def figures(route: str, backlog: Backlog, kept: Mapping[str, str],
            paused: bool = False) -> dict[str, Any]:
    """``status.delivery`` of the RequestClone ``route`` (``namespace/name``), summed over
    its backends. Pure. ``kept`` is :meth:`Store.delivery_figures`; ``lastError`` is a status
    or an error class, never content; ``paused``: one of its backends is paused."""
    def mine(figure: str) -> list[str]:
        prefix = f"{figure}:{route} "
        return [v for k, v in sorted(kept.items()) if k.startswith(prefix)]

    out: dict[str, Any] = {
        "pending": sum(n for (r, _), n in backlog.pending.items() if r == route),
        "delivered": sum(int(v) for v in mine("delivered")),
        "deadLettered": sum(n for (r, _), n in backlog.dead.items() if r == route),
        "paused": paused,
    }
    last = [float(v) for v in mine("last_delivered")]
    if last:
        out["lastDeliveredTime"] = _rfc3339(max(last))
    errors = mine("last_error")
    if errors:
        out["lastError"] = errors[-1]
    blocked = mine("blocked")
    if blocked:  # an ordered backend whose failing copy holds back those behind it
        did, _, since = blocked[-1].partition(" ")
        out["blockedBy"] = did
        out["blockedSince"] = _rfc3339(float(since))
    return out


class DeliveryStatus:
    """Call :meth:`update` with each backlog scan; it writes what changed when due."""

    def __init__(self, kube: Kube, store: Store, allowed: Callable[[], bool],
                 objects: Callable[[], Mapping[str, Mapping[str, Any]]], interval: float,
                 event_every: float = EVENT_EVERY) -> None:
        self.kube, self.store, self.allowed, self.objects = kube, store, allowed, objects
        self.pausing = Backends(store.r)
        self.interval, self.event_every = interval, event_every
        self._last_run = -interval
        self._written: dict[str, dict[str, Any]] = {}
        self._evented: dict[str, float] = {}
        self.rounds = 0
        """Completed rounds (each compared every RequestClone's figures)."""

    def reset(self) -> None:
        """Forget what was written (a new term starts from what the objects carry)."""
        self._written.clear()

    def update(self, backlog: Backlog) -> int:
        """Patch every RequestClone whose figures changed, if ``interval`` has passed since
        the last round; returns how many were patched. API failures are logged and retried
        next round; Redis failures skip the round."""
        if time.monotonic() - self._last_run < self.interval or not self.allowed():
            return 0
        self._last_run = time.monotonic()
        try:
            kept = self.store.delivery_figures()
            paused = set(self.pausing.paused())
            urls = route_urls(self.store.load_routes(), backlog, kept) if paused else {}
            events = self.pausing.pop_events()
        except redis.RedisError as exc:
            log.warning("delivery status skipped, Redis unavailable: %s", type(exc).__name__)
            return 0
        written = 0
        objects = self.objects()
        for key, obj in objects.items():
            written += self._one(key, obj, figures(key, backlog, kept,
                                                   bool(urls.get(key, set()) & paused)))
        for event in events:
            self._paused(event, objects)
        self.rounds += 1
        return written

    def _paused(self, event: Mapping[str, Any],
                objects: Mapping[str, Mapping[str, Any]]) -> None:
        """One ``BackendPaused`` Warning Event per RequestClone of an auto-paused backend."""
        url = str(event.get("url"))
        message = (f"backend {url} paused: {event.get('reason', '')}; its copies wait without "
                   f"ageing: `hookfan backends resume {url}` once it is fixed")
        for route in event.get("routes") or []:
            obj = objects.get(str(route))
            if obj is None or not self.allowed():
                continue
            try:
                self.kube.event(dict(obj), "Warning", BACKEND_PAUSED, message[:1000])
            except Exception as exc:
                log.warning("pause event not written", extra={"route": route,
                                                              "error": type(exc).__name__})

    def _one(self, key: str, obj: Mapping[str, Any], want: dict[str, Any]) -> int:
        have = (obj.get("status") or {}).get("delivery") or {}
        before = self._written.get(key, have)
        if want in (before, have) or not self.allowed():
            return 0
        meta = obj["metadata"]
        try:
            # a merge patch keeps what it does not name: a cleared block is written as null
            gone = {k: None for k in CLEARED if (k in have or k in before) and k not in want}
            self.kube.patch_status(meta["namespace"], meta["name"],
                                   {"delivery": {**want, **gone}})
        except Exception as exc:
            log.warning("delivery status not written", extra={"route": key,
                                                              "error": type(exc).__name__})
            return 0
        self._written[key] = want
        if want["deadLettered"] > int(before.get("deadLettered") or 0):
            self._warn(key, obj, want)
        return 1

    def _warn(self, key: str, obj: Mapping[str, Any], want: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self._evented.get(key, -self.event_every) < self.event_every:
            return
        self._evented[key] = now
        message = (f"{want['deadLettered']} copies dead-lettered; last error: "
                   f"{want.get('lastError', 'unknown')}; see `hookfan deadletters list`")
        try:
            self.kube.event(dict(obj), "Warning", DEAD_LETTERED, message)
        except Exception as exc:
            log.warning("dead-letter event not written", extra={"route": key,
                                                                "error": type(exc).__name__})
