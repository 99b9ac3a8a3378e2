"""The operator loop for the file source: watch a directory, publish the table on change."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import redis

from hookfan.config import Settings
from hookfan.routes import Backend, RouteTable, build_table
from hookfan.store import Store

from . import serving
from .backlog import BacklogScanner, OperatorStats
from .files import Rejected, backend_for, fingerprint, load
from .model import InvalidSpec, RequestClone
from .resolve import HOST_CLAIMED, claimed_elsewhere

log = logging.getLogger(__name__)


def file_table(clones: list[RequestClone], aliases: dict[str, str],
               host_policy: str = "namespace") -> tuple[RouteTable, list[Rejected]]:
    """The route table for file-sourced clones (version 0: the store assigns one). Pure.

    Under the ``namespace`` host policy a host belongs to the namespace of its oldest clone
    (see :func:`hookfan.operator.resolve.claimed_elsewhere`); clones for it elsewhere are rejected.
    """
    entries: list[tuple[str, Backend]] = []
    rejected: list[Rejected] = []
    denied = claimed_elsewhere(clones, host_policy)
    for clone in clones:
        if clone.key in denied:
            rejected.append(Rejected("", clone.key, f"{HOST_CLAIMED}: host {clone.host} belongs "
                                     f"to namespace {denied[clone.key]}"))
            continue
        try:
            entries.append((clone.host, backend_for(clone, aliases)))
        except InvalidSpec as exc:
            rejected.append(Rejected("", clone.key, str(exc)))
    return build_table(entries, 0), rejected


class Publisher:
    """Publishes a table when its content changed, or when Redis lost it (a flushed or
    non-durable Redis): the app must never be left without routes the operator knows."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._content: object = None
        self._version: int | None = None

    def sync(self, table: RouteTable) -> bool:
        if table.routes == self._content and self.store.routes_version() == self._version:
            return False
        self._version = self.store.publish_routes(table)
        self._content = table.routes
        log.info("route table published", extra={"version": self._version,
                                                 "hosts": len(table.routes)})
        return True


def run(settings: Settings, store: Store, stop: threading.Event) -> None:
    """Poll ``--routes-dir`` until ``stop`` is set; republish within one poll of a change.
    Serves metrics and health while it runs; it is the only writer, so it always leads."""
    stats = OperatorStats(lambda: True)
    synced = threading.Event()
    stop_serving = serving.start(settings, stats, synced.is_set)
    scanner = BacklogScanner(store, stats, serving.backlog_interval(settings))
    threading.Thread(target=scanner.run, args=(stop,), daemon=True, name="backlog").start()
    try:
        _poll(settings, store, stop, stats, synced)
    finally:
        stop_serving()


def _poll(settings: Settings, store: Store, stop: threading.Event, stats: OperatorStats,
          synced: threading.Event) -> None:
    root = Path(settings.operator.routes_dir or ".")
    aliases = dict(settings.operator.service_aliases)
    publisher = Publisher(store)
    seen = None
    table = RouteTable()
    while True:
        current = fingerprint(root)
        if current != seen:
            clones, rejected = load(root)
            table, unresolved = file_table(clones, aliases, settings.operator.host_policy)
            for r in rejected + unresolved:
                log.error("RequestClone skipped", extra={"file": r.file, "requestclone": r.name,
                                                         "reason": r.reason})
            seen = current
        try:
            if publisher.sync(table) or not synced.is_set():
                stats.synced(len(table.routes), sum(len(bs) for bs in table.routes.values()))
            synced.set()
        except redis.RedisError as exc:
            stats.errors += 1
            log.warning("route table not published, Redis unavailable: %s", type(exc).__name__)
        if stop.wait(settings.operator.poll_interval):
            return
