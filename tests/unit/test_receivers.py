"""Receivers' pure parts: parsing with the CRD's defaults, selectors, resolution, the route
table's JSON, a copy's request target, and the optional Receiver watch."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from hookfan.operator.kubewatch import Watcher
from hookfan.operator.model import InvalidSpec
from hookfan.operator.receivermodel import Selector, is_webhook_path, new_path, parse
from hookfan.operator.receiverresolve import resolve_receivers
from hookfan.operator.resolve import Service, ServicePort
from hookfan.routes import Backend, PathRoute, RouteTable
from hookfan.worker.tasks import copy_target


def doc(**spec: Any) -> dict[str, Any]:
    spec.setdefault("targets", [{"service": {"name": "hooks", "port": {"name": "http"}}}])
    return {"apiVersion": "webhook.infra.doodle.com/v1beta1", "kind": "Receiver",
            "metadata": {"name": "r", "namespace": "ci"}, "spec": spec}


def test_defaults_are_the_crds() -> None:
    r = parse(doc())
    assert (r.mode, r.timeout, r.body_limit, r.suspended, r.webhook_path) == (
        "Async", 10.0, 0, False, "")
    assert r.targets[0].path == "/" and r.targets[0].port == "http"


@pytest.mark.parametrize("spec, where", [
    ({"targets": None}, "targets"),
    ({"responseType": "Sync"}, "responseType"),
    ({"timeout": "ten"}, "timeout"),
    ({"targets": [{"service": {"name": "x", "port": {"name": "a", "number": 1}}}]}, "port"),
    ({"targets": [{"service": {"name": "x"}, "namespaceSelector": {"matchExpressions": [
        {"key": "a", "operator": "In"}]}}]}, "namespaceSelector"),
])
def test_invalid_specs_name_the_field(spec: dict[str, Any], where: str) -> None:
    body = doc(**spec)
    if spec.get("targets", 1) is None:
        del body["spec"]["targets"]
    with pytest.raises(InvalidSpec, match=where):
        parse(body)


def test_selectors_match_labels_and_expressions() -> None:
    sel = Selector((("team", "ci"),), (("env", "In", ("a", "b")), ("old", "DoesNotExist", ())))
    assert sel.matches({"team": "ci", "env": "a"})
    assert not sel.matches({"team": "ci", "env": "c"})
    assert not sel.matches({"team": "ci", "env": "a", "old": "1"})
    assert Selector().matches({})


def test_generated_paths_are_32_letters_and_digits_and_differ() -> None:
    paths = {new_path() for _ in range(100)}
    assert len(paths) == 100 and all(is_webhook_path(p) for p in paths)


def services(*nss: str) -> dict[tuple[str, str], Service]:
    return {(ns, "hooks"): Service(ns, "hooks", f"10.0.0.{i}", (ServicePort("http", 80),))
            for i, ns in enumerate(nss, 1)}


def test_a_selector_target_reaches_matching_namespaces_unless_refused() -> None:
    r = parse(doc(targets=[{"path": "/x", "service": {"name": "hooks"},
                            "namespaceSelector": {"matchLabels": {"t": "1"}}}]))
    nss = {"ci": {"t": "1"}, "a": {"t": "1"}, "b": {}}
    got = resolve_receivers([r], services("ci", "a", "b"), nss, {r.key: "/hooks/p"})
    assert [b.url for b in got.paths["/hooks/p"].backends] == [
        "http://10.0.0.1:80/x", "http://10.0.0.2:80/x"]
    assert got.conditions[r.key].ready
    refused = resolve_receivers([r], services("ci", "a", "b"), nss, {r.key: "/hooks/p"},
                                cross_namespace=False)
    assert [b.url for b in refused.paths["/hooks/p"].backends] == ["http://10.0.0.1:80/x"]
    assert refused.conditions[r.key].reason == "CrossNamespaceRefused"
    unwatched = resolve_receivers([r], services("ci"), None, {r.key: "/hooks/p"})
    assert unwatched.conditions[r.key].reason == "NamespacesNotWatched"


def test_a_suspended_receiver_gets_no_condition_and_a_suspended_route() -> None:
    r = parse(doc(suspend=True))
    got = resolve_receivers([r], services("ci"), None, {r.key: "/hooks/p"})
    assert got.conditions == {} and got.paths["/hooks/p"].suspended


def test_the_table_round_trips_receivers_and_reads_tables_without_them() -> None:
    route = PathRoute("receiver:ci/r", (Backend("receiver:ci/r", "http://h:1/x"),),
                      "AwaitAllReport", 3.0, 1000, True)
    table = RouteTable(7, {"h": (Backend("ci/c", "http://h:2"),)}, {"/hooks/p": route})
    assert RouteTable.from_json(table.to_json()) == table
    assert RouteTable.from_json('{"version": 1, "routes": {}}').receivers == {}


@pytest.mark.parametrize("url, uri, want", [
    ("http://h:1", "/hooks/p?a=1", "/hooks/p?a=1"),        # a RequestClone's copy: unchanged
    ("http://h:1/", "/hooks/p?a=1&b=%20", "/?a=1&b=%20"),  # a Receiver target's: its path
    ("http://h:1/in/x", "/hooks/p", "/in/x"),
    ("http://h:1/in", "http://sender/hooks/p?q", "/in?q"),
])
def test_a_copy_goes_to_its_backends_path_with_the_query(url: str, uri: str, want: str) -> None:
    assert copy_target(url, uri) == want


class NoCrd:
    def list(self, kind: str, timeout: float) -> Any:
        raise ApiException(status=404, reason="Not Found")


def test_a_missing_receiver_crd_reads_as_no_receivers() -> None:
    changed = threading.Event()
    w = Watcher(NoCrd(), "receivers", changed.set, 30, 0.01, 0.05, optional=True)  # type: ignore[arg-type]
    stop = threading.Event()
    t = threading.Thread(target=w.run, args=(stop,), daemon=True)
    t.start()
    assert w.synced.wait(2) and changed.is_set() and w.snapshot() == {}
    stop.set()
    t.join(2)
