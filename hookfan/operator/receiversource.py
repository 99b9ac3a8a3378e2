"""Receivers from the Kubernetes API: their watch, the Namespaces watch a selector needs, the
webhook paths, and their status. The Kubernetes operator (:mod:`.kubesource`) runs it beside
its RequestClones and publishes one table holding both.

A Receiver's path is generated once, by the replica allowed to write, and kept in its
``status.webhookPath``: that is where it is read from after a restart or by a new leader.
Until the watch shows the written status back, this process remembers what it generated
(by uid), so a second pass never draws another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from .kubeclient import Kube
from .kubestatus import StatusWriter
from .kubewatch import Watcher
from .receivermodel import PLURAL, Receiver, new_path, parse
from .receiverresolve import ReceiverResolution, resolve_receivers
from .resolve import Invalid, Service, checked


def to_receiver(obj: Mapping[str, Any]) -> Receiver | Invalid:
    return checked(obj, parse)


class ReceiverSource:
    def __init__(self, kube: Kube, on_change: Callable[[], None], resync: float,
                 min_delay: float, max_delay: float, concurrent: int,
                 allowed: Callable[[], bool], on_failure: Callable[[], None],
                 cross_namespace: bool) -> None:
        self.kube, self.cross_namespace = kube, cross_namespace
        self.receivers = Watcher(kube, PLURAL, on_change, resync, min_delay, max_delay,
                                 optional=True)
        self.namespaces = Watcher(kube, "namespaces", on_change, resync, min_delay, max_delay)
        self.status = StatusWriter(kube, concurrent, allowed, on_failure, PLURAL)
        self._made: dict[str, str] = {}
        """uid -> the path this process generated, until the object carries it."""
        self._stop: threading.Event | None = None
        self._namespaces_started = False
        self._last = ReceiverResolution({}, {})

    def start(self, stop: threading.Event) -> None:
        """Start the Receiver watch (the Namespace watch starts when a selector needs it)."""
        self._stop = stop
        threading.Thread(target=self.receivers.run, args=(stop,), daemon=True,
                         name=PLURAL).start()

    def synced(self) -> bool:
        return self.receivers.synced.is_set() and (
            not self._namespaces_started or self.namespaces.synced.is_set())

    def objects(self) -> dict[str, dict[str, Any]]:
        return {f"{ns}/{name}": o for (ns, name), o in self.receivers.snapshot().items()}

    def _watch_namespaces(self) -> None:
        # Only when a selector asks: a Namespace watch needs a ClusterRole, which an operator
        # confined to its own namespace (--watch-all-namespaces=false) does not hold.
        if self._namespaces_started or self._stop is None:
            return
        self._namespaces_started = True
        threading.Thread(target=self.namespaces.run, args=(self._stop,), daemon=True,
                         name="namespaces").start()

    def paths(self, items: list[Receiver | Invalid], may_write: bool) -> dict[str, str]:
        """``namespace/name`` -> webhook path: the one in its status, else the one this
        process generated, else (only when this replica writes, and not for a suspended
        Receiver, whose status is left alone) a new one."""
        out: dict[str, str] = {}
        live = set()
        for r in items:
            if isinstance(r, Invalid):
                continue
            live.add(r.uid)
            if r.webhook_path:
                out[r.key] = r.webhook_path
                self._made.pop(r.uid, None)
            elif r.uid in self._made:
                out[r.key] = self._made[r.uid]
            elif may_write and not r.suspended:
                out[r.key] = self._made[r.uid] = new_path()
        for gone in set(self._made) - live:
            del self._made[gone]
        return out

    def resolve(self, services: Mapping[tuple[str, str], Service], may_write: bool,
                all_namespaces: bool) -> tuple[ReceiverResolution, dict[str, dict[str, Any]]]:
        """The Receivers' routes and conditions, and the objects they belong to."""
        objs = self.objects()
        items = [to_receiver(o) for o in objs.values()]
        if all_namespaces and any(t.selector is not None for r in items
                                  if isinstance(r, Receiver) for t in r.targets):
            self._watch_namespaces()
        namespaces = None
        if self._namespaces_started:
            if not self.namespaces.synced.is_set():
                # Not listed yet (or the list fails: the Watcher logs why and retries): keep
                # serving what was served, and write no status from an empty namespace list.
                return ReceiverResolution(self._last.paths, {}), objs
            namespaces = {name: dict((o.get("metadata") or {}).get("labels") or {})
                          for (_, name), o in self.namespaces.snapshot().items()}
        self._last = resolve_receivers(items, services, namespaces,
                                       self.paths(items, may_write), self.cross_namespace)
        return self._last, objs

    def reset(self) -> None:
        self.status.reset()

    def close(self) -> None:
        self.status.close()
