"""The operator loop for the Kubernetes source: watches feed the pure core, the leader publishes.

:class:`~hookfan.operator.kubewatch.Watcher` threads keep caches of RequestClones, Services,
Secrets (for ``spec.verify``; names and data only) and Receivers (and Namespaces, once a
Receiver's namespaceSelector needs them; see :mod:`~hookfan.operator.receiversource`). On any
change the reconciler takes a snapshot, runs :func:`~hookfan.operator.resolve.resolve`, and,
when this replica may write (no leader election, or it holds the Lease), publishes the whole
table in one atomic write and queues status writes.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import redis

from hookfan.config import Settings
from hookfan.store import Store

from . import serving
from .backlog import BacklogScanner, OperatorStats
from .deliverystatus import DeliveryStatus
from .filesource import Publisher
from .kubeclient import Kube, RateLimit, Scope, api_client
from .kubestatus import StatusWriter
from .kubewatch import Obj, Watcher
from .leader import LeaderElector, LeaseConfig
from .model import RequestClone, parse
from .receiversource import ReceiverSource
from .resolve import (
    INVALID_SECRET,
    INVALID_SPEC,
    SECRET_NOT_FOUND,
    Invalid,
    SecretOf,
    Service,
    ServicePort,
    Unverifiable,
    checked,
    resolve,
)

log = logging.getLogger(__name__)

DEBOUNCE = 0.05
"""Changes arriving this close together are resolved once."""
ROUTES_CHECK = 2.0
"""How often the leader looks whether Redis still holds the table it published; if not (a
failover to a replica it never reached), it publishes again at once."""


def to_clone(obj: Mapping[str, Any]) -> RequestClone | Invalid:
    return checked(obj, parse)


def to_service(obj: Mapping[str, Any]) -> Service:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    ports = tuple(ServicePort(str(p.get("name") or ""), int(p.get("port") or 0),
                              p.get("targetPort")) for p in spec.get("ports") or [])
    return Service(str(meta.get("namespace") or ""), str(meta.get("name") or ""),
                   str(spec.get("clusterIP") or ""), ports)


SECRET_VALUE_MAX = 16384
"""Largest Secret value (base64) the cache keeps: a signing secret is a few dozen bytes; TLS
bundles, kubeconfigs and other large values in the watched namespaces are dropped, so the
operator's memory does not grow with them."""


def secret_data(obj: Obj) -> Obj:
    """What the cache keeps of a Secret: its name and its small values (not its annotations,
    where ``kubectl apply`` leaves a second copy of the data; see :data:`SECRET_VALUE_MAX`)."""
    meta = obj.get("metadata") or {}
    data = {k: (v if isinstance(v, str) and len(v) <= SECRET_VALUE_MAX else None)
            for k, v in (obj.get("data") or {}).items()}
    return {"metadata": {"namespace": meta.get("namespace"), "name": meta.get("name")},
            "data": data}


def secret_reader(secrets: Mapping[tuple[str, str], Obj] | None) -> SecretOf:
    """Reads a RequestClone's verify secret from the Secrets cache (None: Secrets could not be
    listed). The messages name the Secret and key, never a value."""
    def secret_of(clone: RequestClone) -> bytes:
        ref = clone.verify
        assert ref is not None
        if ref.secret_file:
            raise Unverifiable(INVALID_SPEC, "spec.verify.secretFile works only with the file "
                               "source (--routes-dir): use secretRef")
        where = f"Secret {clone.namespace}/{ref.secret_name}"
        if secrets is None:
            raise Unverifiable(SECRET_NOT_FOUND, "Secrets cannot be listed: allow the operator "
                               "get, list and watch on secrets")
        found = secrets.get((clone.namespace, ref.secret_name))
        if found is None:
            raise Unverifiable(SECRET_NOT_FOUND, f"{where} not found: create it, or fix "
                               "spec.verify.secretRef.name")
        data = found.get("data") or {}
        value = data.get(ref.secret_key)
        if value is None and ref.secret_key in data:
            raise Unverifiable(INVALID_SECRET, f"{where} key {ref.secret_key!r} is over "
                               f"{SECRET_VALUE_MAX} bytes (base64): not a signing secret")
        if value is None:
            raise Unverifiable(SECRET_NOT_FOUND, f"{where} has no key {ref.secret_key!r}: "
                               "fix spec.verify.secretRef.key")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise Unverifiable(INVALID_SECRET, f"{where} key {ref.secret_key!r} is not "
                               "base64") from None
    return secret_of


class Operator:
    def __init__(self, settings: Settings, store: Store, kube: Kube,
                 elector_cfg: LeaseConfig | None = None) -> None:
        o = settings.operator
        self.settings, self.store, self.kube = settings, store, kube
        self.dirty = threading.Event()
        d = settings.delivery
        self.clones = Watcher(kube, "requestclones", self.dirty.set, o.resync_period,
                              d.min_retry_delay, d.max_retry_delay)
        self.services = Watcher(kube, "services", self.dirty.set, o.resync_period,
                                d.min_retry_delay, d.max_retry_delay)
        self.secrets = Watcher(kube, "secrets", self.dirty.set, o.resync_period,
                               d.min_retry_delay, d.max_retry_delay, secret_data)
        self.elector = None if elector_cfg is None else LeaderElector(
            kube.coordination, elector_cfg, self._leadership, kube.limit.acquire)
        self.publisher = Publisher(store)
        self.status = StatusWriter(kube, o.concurrent, self.may_write, self._retry_later)
        self.receivers = ReceiverSource(kube, self.dirty.set, o.resync_period,
                                        d.min_retry_delay, d.max_retry_delay, o.concurrent,
                                        self.may_write, self._retry_later,
                                        o.receiver_cross_namespace)
        self.synced = threading.Event()
        self.stats = OperatorStats(self.may_write, self._restarts)
        self.delivery = DeliveryStatus(kube, store, self.may_write, self._objects,
                                       o.status_interval)
        self.scanner = BacklogScanner(store, self.stats, serving.backlog_interval(settings),
                                      self.delivery.update)

    def _objects(self) -> dict[str, dict[str, Any]]:
        return {f"{ns}/{name}": o for (ns, name), o in self.clones.snapshot().items()}

    def _restarts(self) -> dict[str, int]:
        return {w.kind: w.restarts for w in (self.clones, self.services, self.secrets,
                                             self.receivers.receivers,
                                             self.receivers.namespaces)}

    def may_write(self) -> bool:
        return self.elector is None or self.elector.is_leader()

    def ready(self) -> bool:
        return self.synced.is_set()

    def _leadership(self, leader: bool) -> None:
        self.publisher = Publisher(self.store)  # a new term republishes, whatever Redis holds
        self.status.reset()
        self.receivers.reset()
        self.delivery.reset()
        self.dirty.set()

    def _retry_later(self) -> None:
        t = threading.Timer(self.settings.delivery.min_retry_delay, self.dirty.set)
        t.daemon = True
        t.start()

    def reconcile(self) -> None:
        """One pass: snapshot, resolve, and (if allowed) publish and write statuses."""
        if not (self.clones.synced.is_set() and self.services.synced.is_set()
                and self.receivers.synced()):
            return
        objs = {f"{ns}/{name}": o for (ns, name), o in self.clones.snapshot().items()}
        services = {k: to_service(o) for k, o in self.services.snapshot().items()}
        clones = [to_clone(o) for o in objs.values()]
        secrets = self.secrets.snapshot() if self.secrets.synced.is_set() else None
        if secrets is None and self.secrets.restarts == 0 and any(
                isinstance(c, RequestClone) and c.verify is not None for c in clones):
            return  # Secrets not listed yet: no flap to SecretNotFound (its list calls again)
        result = resolve(clones, services, self.settings.operator.host_policy,
                         secret_reader(secrets))
        writes = self.may_write()
        received, receiver_objs = self.receivers.resolve(
            services, writes, self.kube.scope.namespace is None)
        table = dataclasses.replace(result.table, receivers=received.paths)
        self.stats.synced(len(table.routes), sum(len(bs) for bs in table.routes.values()))
        self.synced.set()
        if not writes:
            return
        try:
            self.publisher.sync(table)
        except redis.RedisError as exc:
            log.warning("route table not published, Redis unavailable: %s", type(exc).__name__)
            self.stats.errors += 1
            self._retry_later()
        self.status.sync(objs, result.conditions)
        self.receivers.status.sync(receiver_objs, received.conditions)

    def _table_lost(self) -> bool:
        """Whether this replica may write and Redis lost the table it published; False while
        Redis does not answer (publishing would fail as well)."""
        try:
            return self.may_write() and self.publisher.lost()
        except redis.RedisError:
            return False

    def _reconcile_loop(self, stop: threading.Event) -> None:
        resync = self.settings.operator.resync_period
        due = time.monotonic() + resync
        while not stop.is_set():
            self.dirty.wait(max(0.0, min(ROUTES_CHECK, due - time.monotonic())))
            if not (self.dirty.is_set() or time.monotonic() >= due or self._table_lost()):
                continue
            if stop.wait(DEBOUNCE):
                return
            self.dirty.clear()
            due = time.monotonic() + resync
            try:
                self.reconcile()
            except Exception:
                self.stats.errors += 1
                log.exception("reconcile failed")
                self._retry_later()

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set; then stop within ``--graceful-shutdown-timeout``,
        releasing the Lease if configured."""
        threads = [threading.Thread(target=w.run, args=(stop,), daemon=True, name=w.kind)
                   for w in (self.clones, self.services, self.secrets)]
        threads.append(threading.Thread(target=self._reconcile_loop, args=(stop,),
                                        daemon=True, name="reconcile"))
        threads.append(threading.Thread(target=self.scanner.run, args=(stop,), daemon=True,
                                        name="backlog"))
        lead = None
        if self.elector is not None:
            lead = threading.Thread(target=self.elector.run, args=(stop,), daemon=True,
                                    name="leader")
            threads.append(lead)
        self.receivers.start(stop)
        for t in threads:
            t.start()
        stop.wait()
        self.dirty.set()
        if lead is not None:
            lead.join(self.settings.operator.graceful_shutdown_timeout)
        self.status.close()
        self.receivers.close()


def own_namespace(environ: Mapping[str, str], sa_file: str) -> str:
    """``POD_NAMESPACE``, else the service account's namespace file, else ``default``."""
    if environ.get("POD_NAMESPACE"):
        return environ["POD_NAMESPACE"]
    try:
        with open(sa_file, encoding="utf-8") as fh:
            return fh.read().strip() or "default"
    except OSError:
        return "default"


def build(settings: Settings, store: Store, kubeconfig: str | None, namespace: str) -> Operator:
    """Wire an operator from settings. Raises KubeConfigError for a refused kubeconfig."""
    o = settings.operator
    api = api_client(kubeconfig, o.insecure_kubeconfig_exec, o.insecure_kubeconfig_tls)
    scope = Scope(None if o.watch_all_namespaces else namespace, o.watch_label_selector)
    kube = Kube(api, RateLimit(o.kube_api_qps, o.kube_api_burst), scope)
    lease = None
    if o.enable_leader_election:
        identity = f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        api.user_agent = f"hookfan-operator/{identity}"  # audit logs show which replica wrote
        lease = LeaseConfig(namespace, o.leader_election_id, identity,
                            o.leader_election_lease_duration, o.leader_election_renew_deadline,
                            o.leader_election_retry_period, o.leader_election_release_on_cancel)
    return Operator(settings, store, kube, lease)


def run(settings: Settings, store: Store, stop: threading.Event, kubeconfig: str | None,
        namespace: str) -> None:
    """The ``hookfan operator`` process without ``--routes-dir``: serve health, run until
    ``stop``."""
    op = build(settings, store, kubeconfig, namespace)
    stop_serving = serving.start(settings, op.stats, op.ready, serving.DEFAULT_HEALTH)
    log.info("operator started", extra={"namespace": op.kube.scope.namespace or "*",
                                        "leader_election": op.elector is not None})
    try:
        op.run(stop)
    finally:
        stop_serving()
