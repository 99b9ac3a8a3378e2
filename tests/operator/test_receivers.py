"""Receivers in the API -> webhook paths in the route table, status, Events.

Runs the real operator (in a thread) against the kmock API server of tests/support/kubeapi.py
over HTTP, with a real Redis. The API server here does not validate against the CRD schema or
apply its defaults: the Go controller's manifests are validated with jsonschema separately.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis
import yaml

from hookfan.operator import kubesource
from hookfan.operator.kubesource import Operator
from hookfan.operator.receivermodel import GROUP, PLURAL, VERSION, schema
from hookfan.routes import PathRoute, RouteTable
from hookfan.store import Store
from tests.operator.conftest import OWN_NAMESPACE, K8s, eventually, settings
from tests.support.procs import wait_until

FIXTURE = Path(__file__).parent / "fixtures" / "go_receivers.yaml"
WEBHOOK_PATH = re.compile(r"/hooks/[A-Za-z0-9]{32}")


class Receivers:
    def __init__(self, k8s: K8s) -> None:
        self.k8s = k8s

    def create(self, name: str, targets: list[dict[str, Any]], ns: str = "ci",
               **spec: Any) -> None:
        self.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "Receiver",
                    "metadata": {"name": name}, "spec": {**spec, "targets": targets}}, ns)

    def apply(self, doc: dict[str, Any], ns: str) -> None:
        self.k8s.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, doc)

    def patch(self, name: str, spec: dict[str, Any], ns: str = "ci") -> None:
        self.k8s.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name,
                                                       {"spec": spec})

    def get(self, name: str, ns: str = "ci") -> dict[str, Any]:
        return dict(self.k8s.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL,
                                                                 name))

    def status(self, name: str, ns: str = "ci") -> dict[str, Any]:
        return dict(self.get(name, ns).get("status") or {})

    def ready(self, name: str, ns: str = "ci") -> dict[str, Any]:
        for c in self.status(name, ns).get("conditions") or []:
            if c["type"] == "Ready":
                return dict(c)
        return {}

    def namespace(self, name: str, **labels: str) -> None:
        self.k8s.core.create_namespace({"metadata": {"name": name, "labels": labels}})


@pytest.fixture
def rcv(k8s: K8s) -> Receivers:
    return Receivers(k8s)


@pytest.fixture
def operators(redis_url: str, kubeconfig: str) -> Iterator[list[tuple[Operator, Any]]]:
    """Operators started one by one; each can be stopped on its own (a restart)."""
    running: list[tuple[Operator, Any]] = []
    yield running
    for _, stop in running:
        stop()


def start(running: list[tuple[Operator, Any]], redis_url: str, kubeconfig: str,
          **flags: str) -> Operator:
    op = kubesource.build(settings(redis_url, **flags), Store(redis.Redis.from_url(redis_url)),
                          kubeconfig, OWN_NAMESPACE)
    stop = threading.Event()
    t = threading.Thread(target=op.run, args=(stop,), daemon=True)
    t.start()

    def halt() -> None:
        stop.set()
        t.join(10)
    running.append((op, halt))
    wait_until(op.ready, timeout=10, what="operator synced")
    return op


def served(store: Store) -> dict[str, PathRoute]:
    return dict((store.load_routes() or RouteTable()).receivers)


def urls(store: Store, path: str) -> list[str]:
    route = served(store).get(path)
    return [] if route is None else [b.url for b in route.backends]


def test_the_path_is_generated_once_and_kept_across_restarts(
        k8s: K8s, rcv: Receivers, operators: list[Any], redis_url: str, kubeconfig: str,
        store: Store) -> None:
    k8s.service("ci-hooks", ip="10.0.0.9", ns="ci")
    rcv.create("github", [{"path": "/github/events",
                           "service": {"name": "ci-hooks", "port": {"name": "http"}}}])
    start(operators, redis_url, kubeconfig)
    eventually(lambda: rcv.ready("github").get("reason") == "ServiceBackendReady", "Ready")
    status = rcv.status("github")
    path = status["webhookPath"]
    assert WEBHOOK_PATH.fullmatch(path), path
    assert status["observedGeneration"] == 1
    assert status["subResourceCatalog"] == [
        {"apiVersion": "v1", "kind": "Service", "name": "ci-hooks", "namespace": "ci"}]
    eventually(lambda: urls(store, path) == ["http://10.0.0.9:80/github/events"], "served")
    route = served(store)[path]
    assert (route.route, route.mode, route.timeout, route.suspended) == (
        "receiver:ci/github", "Async", 10.0, False)
    eventually(lambda: k8s.events("github") == [("github", "Normal", "ServiceBackendReady")],
               "one Event")

    rcv.patch("github", {"timeout": "3s", "bodySizeLimit": 1000})
    eventually(lambda: rcv.status("github").get("observedGeneration") == 2, "generation 2")
    eventually(lambda: served(store)[path].body_limit == 1000, "limit published")
    assert rcv.status("github")["webhookPath"] == path and served(store)[path].timeout == 3.0

    for _, halt in operators:
        halt()
    store.r.delete("hookfan:routes")  # the new operator has to publish it again
    start(operators, redis_url, kubeconfig)
    eventually(lambda: urls(store, path) == ["http://10.0.0.9:80/github/events"],
               "the same path served after a restart")
    assert rcv.status("github")["webhookPath"] == path
    assert list(served(store)) == [path]


def test_a_namespace_selector_fans_out_to_every_matching_namespace(
        k8s: K8s, rcv: Receivers, operators: list[Any], redis_url: str, kubeconfig: str,
        store: Store) -> None:
    rcv.namespace("ci")
    for i, ns in enumerate(["team-a", "team-b", "team-c"], 1):
        rcv.namespace(ns, team="ci")
        k8s.service("ci-hooks", ip=f"10.0.1.{i}", ns=ns)
    rcv.namespace("other", team="web")
    k8s.service("ci-hooks", ip="10.0.9.9", ns="other")
    rcv.create("fanout", [{"path": "/events", "service": {"name": "ci-hooks",
                                                          "port": {"number": 80}},
                           "namespaceSelector": {"matchLabels": {"team": "ci"}}}])
    start(operators, redis_url, kubeconfig)
    eventually(lambda: rcv.ready("fanout").get("status") == "True", "Ready")
    path = rcv.status("fanout")["webhookPath"]
    want = [f"http://10.0.1.{i}:80/events" for i in (1, 2, 3)]
    eventually(lambda: urls(store, path) == want, "three backends")
    assert [c["namespace"] for c in rcv.status("fanout")["subResourceCatalog"]] == [
        "team-a", "team-b", "team-c"]
    rcv.namespace("team-d", team="ci")  # a namespace labelled later joins
    k8s.service("ci-hooks", ip="10.0.1.4", ns="team-d")
    eventually(lambda: urls(store, path) == [*want, "http://10.0.1.4:80/events"], "a fourth")


def test_cross_namespace_selectors_are_refused_when_the_flag_is_false(
        k8s: K8s, rcv: Receivers, operators: list[Any], redis_url: str, kubeconfig: str,
        store: Store) -> None:
    rcv.namespace("ci", team="ci")
    k8s.service("ci-hooks", ip="10.0.0.1", ns="ci")
    for i, ns in enumerate(["team-a", "team-b", "team-c"], 1):
        rcv.namespace(ns, team="ci")
        k8s.service("ci-hooks", ip=f"10.0.1.{i}", ns=ns)
    rcv.create("fanout", [{"service": {"name": "ci-hooks", "port": {"name": "http"}},
                           "namespaceSelector": {"matchLabels": {"team": "ci"}}}])
    start(operators, redis_url, kubeconfig, receiver_cross_namespace="false")
    eventually(lambda: rcv.ready("fanout").get("reason") == "CrossNamespaceRefused", "refused")
    cond = rcv.ready("fanout")
    assert cond["status"] == "False"
    assert "team-a, team-b, team-c" in cond["message"]
    assert "--receiver-cross-namespace=false" in cond["message"]
    path = rcv.status("fanout")["webhookPath"]
    # Its own namespace is still served; no other namespace is.
    eventually(lambda: urls(store, path) == ["http://10.0.0.1:80/"], "own namespace only")
    eventually(lambda: k8s.events("fanout") == [("fanout", "Warning", "CrossNamespaceRefused")],
               "a Warning Event")


def test_suspend_serves_503_and_keeps_the_status(
        k8s: K8s, rcv: Receivers, operators: list[Any], redis_url: str, kubeconfig: str,
        store: Store) -> None:
    k8s.service("ci-hooks", ip="10.0.0.9", ns="ci")
    rcv.create("github", [{"service": {"name": "ci-hooks", "port": {"name": "http"}}}])
    start(operators, redis_url, kubeconfig)
    eventually(lambda: rcv.ready("github").get("status") == "True", "Ready")
    path = rcv.status("github")["webhookPath"]
    before = rcv.status("github")
    rcv.patch("github", {"suspend": True})
    eventually(lambda: served(store).get(path, PathRoute("")).suspended, "suspended")
    assert served(store)[path].backends == ()
    k8s.delete_service("ci-hooks", ns="ci")  # would make it not Ready, were it not suspended
    k8s.service("other", ns="ci")
    wait_until(lambda: served(store)[path].suspended, timeout=0.5, what="settled")
    assert rcv.status("github") == before
    rcv.patch("github", {"suspend": False})
    eventually(lambda: rcv.ready("github").get("reason") == "ServiceNotFound", "reconciled")
    assert rcv.status("github")["webhookPath"] == path
    assert not served(store)[path].suspended


def test_the_go_controllers_example_manifests_apply_unchanged(
        k8s: K8s, rcv: Receivers, operators: list[Any], redis_url: str, kubeconfig: str,
        store: Store) -> None:
    docs = [d for d in yaml.safe_load_all(FIXTURE.read_text()) if d]
    assert len(docs) == 7
    for i, doc in enumerate(docs):
        jsonschema.Draft7Validator(schema()).validate(doc)
        ns = f"example-{i}"
        rcv.namespace(ns)
        k8s.service("podinfo", ip=f"10.1.{i}.1", ns=ns)
        k8s.service("podinfo-v2", ip=f"10.1.{i}.2", port=9091, ns=ns)
        rcv.apply(doc, ns)
    start(operators, redis_url, kubeconfig)
    for i in range(len(docs)):
        eventually(lambda i=i: rcv.ready("webhook-receiver", f"example-{i}").get("status")
                   == "True", f"example {i} Ready")
    assert len(served(store)) == 7
    paths = {i: rcv.status("webhook-receiver", f"example-{i}")["webhookPath"] for i in range(7)}
    assert urls(store, paths[0]) == ["http://10.1.0.1:80/", "http://10.1.0.2:9091/"]
    assert urls(store, paths[3]) == ["http://10.1.3.1:80/new/path",
                                     "http://10.1.3.2:9091/another/path"]
    assert served(store)[paths[4]].timeout == 3.0
    # namespaceSelector: {} selects every namespace: podinfo in each of the seven.
    assert len(urls(store, paths[5])) == 7
