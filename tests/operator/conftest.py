"""Fixtures for the Kubernetes operator: a kmock API server, a client, an operator in a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kubernetes import client, config

from hookfan import config as hconfig
from hookfan.config import COMMON, DELIVERY, OPERATOR, SERVING, Settings
from hookfan.operator import kubesource
from hookfan.operator.kubesource import Operator
from hookfan.routes import RouteTable
from hookfan.store import Store
from tests.support.kubeapi import KubeServer
from tests.support.procs import wait_until

GROUP, VERSION, PLURAL = "proxy.infra.doodle.com", "v1beta1", "requestclones"
OWN_NAMESPACE = "hookfan-system"
FAST = {"min-retry-delay": "50ms", "max-retry-delay": "500ms", "resync-period": "30s",
        "kube-api-qps": "500", "kube-api-burst": "500"}


@pytest.fixture
def kube() -> Iterator[KubeServer]:
    srv = KubeServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def kubeconfig(kube: KubeServer, tmp_path: Path) -> str:
    return kube.kubeconfig(tmp_path / "kubeconfig")


class K8s:
    """What a user does with kubectl, through the real client and the API server."""

    def __init__(self, kubeconfig: str, server: KubeServer) -> None:
        self.api = config.new_client_from_config(config_file=kubeconfig, persist_config=False)
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.server = server

    def clone(self, name: str, host: str, service: str, port: int | str = "http",
              ns: str = "apps", labels: dict[str, str] | None = None,
              spec: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RequestClone",
                "metadata": {"name": name, "labels": labels or {}},
                "spec": spec if spec is not None else {
                    "host": host, "backend": {"serviceName": service, "servicePort": port}}}
        return dict(self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL,
                                                                body))

    def delete_clone(self, name: str, ns: str = "apps") -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)

    def patch_clone(self, name: str, spec: dict[str, Any], ns: str = "apps") -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name,
                                                   {"spec": spec})

    def service(self, name: str, ip: str = "10.0.0.1", port: int = 80, port_name: str = "http",
                ns: str = "apps", target: int | None = None) -> None:
        p: dict[str, Any] = {"name": port_name, "port": port}
        if target is not None:
            p["targetPort"] = target
        self.core.create_namespaced_service(ns, {"metadata": {"name": name},
                                                 "spec": {"clusterIP": ip, "ports": [p]}})

    def patch_service(self, name: str, spec: dict[str, Any], ns: str = "apps") -> None:
        self.core.patch_namespaced_service(name, ns, {"spec": spec})

    def delete_service(self, name: str, ns: str = "apps") -> None:
        self.core.delete_namespaced_service(name, ns)

    def ready(self, name: str, ns: str = "apps") -> dict[str, Any] | None:
        """The RequestClone's Ready condition as stored by the API server, or None."""
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        for c in (obj.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready":
                return dict(c, generation=obj["metadata"]["generation"])
        return None

    def reason(self, name: str, ns: str = "apps") -> str | None:
        cond = self.ready(name, ns)
        return None if cond is None else str(cond["reason"])

    def events(self, name: str | None = None) -> list[tuple[str, str, str]]:
        """(involved object name, type, reason) of every Event, in creation order."""
        return [(e["involvedObject"]["name"], e["type"], e["reason"])
                for e in self.server.objects("events")
                if name is None or e["involvedObject"]["name"] == name]


@pytest.fixture
def k8s(kubeconfig: str, kube: KubeServer) -> K8s:
    return K8s(kubeconfig, kube)


def settings(redis_url: str, **flags: str) -> Settings:
    given = {"redis-url": redis_url, **FAST, **{k.replace("_", "-"): v for k, v in flags.items()}}
    return hconfig.build(COMMON + OPERATOR + DELIVERY + SERVING, given, environ={})


RunOperator = Callable[..., Operator]


@pytest.fixture
def run_operator(redis_url: str, kubeconfig: str) -> Iterator[RunOperator]:
    """Start the real operator (in a thread of this process) against the kmock server."""
    stops: list[tuple[threading.Event, threading.Thread]] = []

    def start(**flags: str) -> Operator:
        s = settings(redis_url, **flags)
        op = kubesource.build(s, Store(redis.Redis.from_url(redis_url)), kubeconfig,
                              OWN_NAMESPACE)
        stop = threading.Event()
        t = threading.Thread(target=op.run, args=(stop,), daemon=True)
        t.start()
        stops.append((stop, t))
        wait_until(op.ready, timeout=10, what="operator synced")
        return op

    yield start
    for stop, t in stops:
        stop.set()
        t.join(10)


def table(store: Store) -> dict[str, list[tuple[str, str]]]:
    loaded = store.load_routes() or RouteTable()
    return {h: [(b.route, b.url) for b in bs] for h, bs in loaded.routes.items()}


def eventually(check: Callable[[], bool], what: str, timeout: float = 2.0) -> None:
    """The operator's promise is 2 s from a change to the table and status."""
    wait_until(check, timeout=timeout, what=what)
