"""Carry copies written by the first delivery engine into engine v2's per-backend schedule.

The first engine kept one hash per copy (``hookfan:dlv:<delivery id>``: request, backend URL,
route, attempts ``a``, generation ``g``, state ``s`` p/d, retry-age start ``t0`` and last error
``e`` in seconds) scheduled in ``hookfan:schedule``, dead letters in ``hookfan:dead`` scored in
seconds, and caps in ``hookfan:busy:<url>``. A worker upgraded over such a Redis moves each copy
once, in its own transaction: a pending one into its backend's ready queue (due now), a dead one
into ``hookfan:dl``. Requests (bodies) are shared by both engines as they are. Running it again
finds nothing to do.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from hookfan import keys

log = logging.getLogger(__name__)

SCHEDULE, RECORD, BUSY = keys.LEGACY


def needed(r: Any) -> bool:
    """Whether first-engine data is present (cheap: no scan)."""
    return bool(r.exists(SCHEDULE)) or int(r.zcard(keys.DEAD)) > int(r.hlen(keys.DEAD_INFO))


def migrate(r: Any) -> int:
    """Move every first-engine copy record; returns how many were moved. Raises redis
    errors (the records not yet moved stay, and the next worker start moves them)."""
    if not needed(r):
        return 0
    secs, micros = r.time()
    now = int(secs) * 1000 + int(micros) // 1000
    moved = 0
    for key in r.scan_iter(RECORD + "*", count=1000):
        d = r.hgetall(key)
        if d and b"b" in d:
            _move(r, key.decode()[len(RECORD):], d, now)
            moved += 1
    stale = [k for k in r.scan_iter(BUSY + "*", count=1000)]
    r.delete(SCHEDULE, *stale)
    if moved:
        log.info("first-engine copies moved to the per-backend schedule",
                 extra={"count": moved})
    return moved


def _move(r: Any, did: str, d: dict[bytes, bytes], now: int) -> None:
    url, route = d[b"b"].decode(), d.get(b"route", b"").decode()
    g, a = int(d.get(b"g", 0)), int(d.get(b"a", 0))
    t0 = int(float(d.get(b"t0", now / 1000)) * 1000)
    pipe = r.pipeline(transaction=True)
    if d.get(b"s") == b"d":
        when = r.zscore(keys.DEAD, did)
        pipe.zadd(keys.DEAD, {did: int(float(when) * 1000) if when else now})
        pipe.hset(keys.DEAD_INFO, did,
                  json.dumps([url, route, g, a, t0, d.get(b"e", b"").decode()]))
    else:
        pipe.hset(keys.copies(url), did, f"{g} {a} {t0} {route}")
        pipe.zadd(keys.ready(url), {did: now})
        pipe.sadd(keys.BACKENDS, url)
        pipe.zadd(keys.DUE, {url: now}, lt=True)
    pipe.zrem(SCHEDULE, did)
    pipe.delete(RECORD + did)
    pipe.execute()
