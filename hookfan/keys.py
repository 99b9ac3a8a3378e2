"""Every Redis key hookfan uses, built from one prefix per concept (rq's convention)."""

from __future__ import annotations

import hashlib

PREFIX = "hookfan:"
ROUTES = PREFIX + "routes"
"""The whole route table, JSON, written with :data:`ROUTES_VERSION` in one transaction."""
ROUTES_VERSION = PREFIX + "routes:version"
REQUEST = PREFIX + "req:"
"""Hash per accepted request: method, raw URI, headers, body (stored once), remaining copies."""
DELIVERY = PREFIX + "dlv:"
"""Hash per (request, backend) copy: backend, attempts, generation, state, last error."""
SCHEDULE = PREFIX + "schedule"
"""Sorted set: delivery id -> time it is due (or its claim lease runs out)."""
DEAD = PREFIX + "dead"
"""Sorted set: dead-lettered delivery id -> time it was dead-lettered."""
BUSY = PREFIX + "busy:"
"""Sorted set per backend URL: delivery id -> when its running attempt's hold ends. Counts the
attempts in flight to one backend across all workers, for ``--backend-concurrency``."""
DEDUPE = PREFIX + "dedupe:"
"""String per (host, provider delivery id): ``<request id>:<copies>`` of the first request,
expiring after ``--dedupe-window``."""
STATS = PREFIX + "stats"
"""Hash of per-backend delivery figures the workers keep for RequestClone status: fields
``<figure>:<route> <backend url>`` with figure ``delivered`` (a count), ``last_delivered``
(a Unix time) and ``last_error`` (a status or error class, never content)."""
QUEUE = "hookfan.deliveries"
"""The Celery (kombu) queue of delivery attempts; kombu uses the queue name as the list key."""


def request(request_id: str) -> str:
    return REQUEST + request_id


def delivery(delivery_id: str) -> str:
    return DELIVERY + delivery_id


def request_id_of(delivery_id: str) -> str:
    """Delivery ids are ``<request id>-<index>``; see :func:`delivery_ids`."""
    return delivery_id.rpartition("-")[0]


def delivery_ids(request_id: str, count: int) -> list[str]:
    return [f"{request_id}-{i}" for i in range(count)]


def busy(backend_url: str) -> str:
    return BUSY + backend_url


def dedupe(host: str, header: str, value: str) -> str:
    """The key for one provider delivery id; hashed so header values never appear in keys."""
    digest = hashlib.sha256(f"{host}\n{header.lower()}\n{value}".encode("latin-1", "replace"))
    return DEDUPE + digest.hexdigest()


def stat_field(figure: str, route: str, backend_url: str) -> str:
    """A field of :data:`STATS`; routes and URLs contain no spaces."""
    return f"{figure}:{route} {backend_url}"
