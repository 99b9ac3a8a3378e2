"""The operator loop for the file source: watch a directory, publish the table on change."""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

import redis

from hookfan.config import Settings
from hookfan.routes import Backend, PathRoute, RouteTable, build_table
from hookfan.store import Store

from . import serving
from .backlog import BacklogScanner, OperatorStats
from .files import (
    Rejected,
    backend_for,
    check_dir,
    fingerprint,
    load,
    load_receivers,
    read_secret,
    receiver_route,
    secret_files,
    secrets_fingerprint,
)
from .model import InvalidSpec, RequestClone
from .receivermodel import Receiver, derived_path
from .resolve import (
    HOST_CLAIMED,
    SecretOf,
    backend_policies,
    claimed_elsewhere,
    host_verifications,
)

log = logging.getLogger(__name__)


def file_table(clones: list[RequestClone], aliases: dict[str, str],
               host_policy: str = "namespace", secret_of: SecretOf = read_secret
               ) -> tuple[RouteTable, list[Rejected]]:
    """The route table for file-sourced clones (version 0: the store assigns one). Pure but
    for ``secret_of``, which reads ``spec.verify.secretFile``.

    Under the ``namespace`` host policy a host belongs to the namespace of its oldest clone
    (see :func:`hookfan.operator.resolve.claimed_elsewhere`); clones for it elsewhere are rejected.
    Clones whose verify conflicts or cannot be applied are rejected with the reason
    (:func:`hookfan.operator.resolve.host_verifications`).
    """
    entries: list[tuple[str, Backend]] = []
    rejected: list[Rejected] = []
    denied = claimed_elsewhere(clones, host_policy)
    verify, refused = host_verifications([c for c in clones if c.key not in denied], secret_of)
    for clone in clones:
        if clone.key in denied:
            rejected.append(Rejected("", clone.key, f"{HOST_CLAIMED}: host {clone.host} belongs "
                                     f"to namespace {denied[clone.key]}"))
            continue
        if clone.key in refused:
            reason, message = refused[clone.key]
            rejected.append(Rejected("", clone.key, f"{reason}: {message}"))
            continue
        try:
            entries.append((clone.host, backend_for(clone, aliases)))
        except InvalidSpec as exc:
            rejected.append(Rejected("", clone.key, str(exc)))
    policies, merged = backend_policies(clones, entries)
    for key, message in sorted(merged.items()):
        log.info("delivery policies merged", extra={"route": key, "detail": message})
    return build_table(entries, 0, verify=verify, policies=policies), rejected


def file_receivers(receivers: list[Receiver], aliases: dict[str, str], key: str
                   ) -> tuple[dict[str, PathRoute], list[Rejected]]:
    """Webhook path -> route for file-sourced Receivers. Pure. A Receiver's path is its
    file's ``status.webhookPath``, else :func:`~.receivermodel.derived_path` under ``key``;
    of two Receivers with one path, the first by namespace/name keeps it."""
    routes: dict[str, PathRoute] = {}
    rejected: list[Rejected] = []
    for rcv in sorted(receivers, key=lambda r: r.key):
        path = rcv.webhook_path or derived_path(rcv.namespace, rcv.name, key)
        if path in routes:
            rejected.append(Rejected("", rcv.key, f"webhook path {path} belongs to "
                                     f"{routes[path].route}"))
            continue
        try:
            routes[path] = receiver_route(rcv, aliases)
        except InvalidSpec as exc:
            rejected.append(Rejected("", rcv.key, str(exc)))
    return routes, rejected


class Publisher:
    """Publishes a table when its content changed, or when Redis lost it (a flushed or
    non-durable Redis): the app must never be left without routes the operator knows."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._content: object = None
        self._version: int | None = None

    def sync(self, table: RouteTable) -> bool:
        content = (table.routes, table.receivers, table.verify, table.policies)
        if content == self._content and not self.lost():
            return False
        self._version = self.store.publish_routes(table)
        self._content = content
        log.info("route table published", extra={"version": self._version,
                                                 "hosts": len(table.routes),
                                                 "receivers": len(table.receivers)})
        return True

    def lost(self) -> bool:
        """Whether Redis no longer holds the version this publisher last wrote (a failover
        to a replica the write never reached, a flushed Redis); False before any publish.
        Raises redis errors."""
        return self._version is not None and self.store.routes_version() != self._version


def run(settings: Settings, store: Store, stop: threading.Event) -> None:
    """Poll ``--routes-dir`` until ``stop`` is set; republish within one poll of a change.
    Serves metrics and health while it runs; it is the only writer, so it always leads.
    Raises SettingsError, before anything starts, when ``--routes-dir`` cannot be listed."""
    check_dir(Path(settings.operator.routes_dir or "."))
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
    seen: str | None = None
    table: RouteTable | None = None
    secrets: list[str] = []
    while True:
        try:
            # Secret files count as the directory's content: a rotation republishes.
            current = fingerprint(root) + secrets_fingerprint(secrets)
            if current != seen:
                table, secrets = _read(root, aliases, settings.operator.host_policy, store,
                                       settings.operator.receiver_path_key)
                seen = fingerprint(root) + secrets_fingerprint(secrets)
        except OSError as exc:
            if seen != "unreadable":
                log.error("routes directory unreadable, live route table kept",
                          extra={"path": str(root), "reason": exc.strerror or str(exc)})
            seen, table = "unreadable", None
            stats.errors += 1
        except redis.RedisError as exc:
            stats.errors += 1
            log.warning("route table not compared, Redis unavailable: %s", type(exc).__name__)
        try:
            if table is not None and (publisher.sync(table) or not synced.is_set()):
                stats.synced(len(table.routes), sum(len(bs) for bs in table.routes.values()))
                synced.set()
        except redis.RedisError as exc:
            stats.errors += 1
            log.warning("route table not published, Redis unavailable: %s", type(exc).__name__)
        if stop.wait(settings.operator.poll_interval):
            return


def _read(root: Path, aliases: dict[str, str], host_policy: str,
          store: Store, path_key: str = "") -> tuple[RouteTable | None, list[str]]:
    """The table to publish from ``root`` (None to keep the live one), and the secret files
    it read. An empty table replaces a non-empty live one only when ``root`` really holds no
    RequestClones (nothing rejected, no file unreadable), and then with a warning. Raises
    OSError when ``root`` cannot be listed, redis.RedisError when the live table cannot be
    read."""
    clones, rejected = load(root)
    return (_usable(root, clones, rejected, aliases, host_policy, store, path_key),
            secret_files(clones))


def _usable(root: Path, clones: list[RequestClone], rejected: list[Rejected],
            aliases: dict[str, str], host_policy: str, store: Store,
            path_key: str = "") -> RouteTable | None:
    table, unresolved = file_table(clones, aliases, host_policy)
    for r in rejected + unresolved:
        log.error("RequestClone skipped", extra={"file": r.file, "requestclone": r.name,
                                                 "reason": r.reason})
    receivers, refused = load_receivers(root)
    paths, unserved = file_receivers(receivers, aliases, path_key)
    for r in refused + unserved:
        log.error("Receiver skipped", extra={"file": r.file, "receiver": r.name,
                                             "reason": r.reason})
    rejected += refused
    table = dataclasses.replace(table, receivers=paths)
    if table.routes or table.receivers:
        return table
    live = store.load_routes()
    if live is None or not (live.routes or live.receivers):
        return table
    extra = {"path": str(root), "hosts": len(live.routes)}
    if clones or rejected or receivers:
        log.error("no RequestClone in the routes directory is usable, live route table kept",
                  extra=extra)
        return None
    log.warning("routes directory holds no RequestClones: emptying the live route table",
                extra=extra)
    return table
