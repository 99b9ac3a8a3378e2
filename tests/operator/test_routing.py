"""RequestClones and Services in the API -> route table in Redis, Ready conditions, Events.

Runs the real operator code (in a thread) against the kmock API server of
tests/support/kubeapi.py over HTTP, with a real Redis. Not covered here: the API server's own
schema validation (the kmock server stores whatever it is sent, which is how a malformed object
reaches the operator at all; see test_crd.py for the schema), RBAC, and TLS.
"""

from __future__ import annotations

from hookfan.store import Store
from tests.operator.conftest import K8s, RunOperator, eventually, table

HOST = "webhook-receiver.example.com"


def test_two_clones_with_one_host_route_to_both_services(
        k8s: K8s, run_operator: RunOperator, store: Store) -> None:
    k8s.service("webhook-receiver-app-1", ip="10.0.0.1")
    k8s.service("webhook-receiver-app-2", ip="10.0.0.2", port=8080)
    k8s.clone("webhook-receiver-app-1", HOST, "webhook-receiver-app-1")
    k8s.clone("webhook-receiver-app-2", HOST, "webhook-receiver-app-2")
    run_operator()
    want = {HOST: [("apps/webhook-receiver-app-1", "http://10.0.0.1:80"),
                   ("apps/webhook-receiver-app-2", "http://10.0.0.2:8080")]}
    eventually(lambda: table(store) == want, "both backends routed")
    eventually(lambda: k8s.reason("webhook-receiver-app-2") == "ServiceBackendReady",
               "Ready written")
    cond = k8s.ready("webhook-receiver-app-1")
    assert cond is not None and cond["status"] == "True"
    assert cond["observedGeneration"] == cond["generation"] == 1
    assert "http://10.0.0.1:80" in cond["message"]
    eventually(lambda: sorted(k8s.events()) == [
        ("webhook-receiver-app-1", "Normal", "ServiceBackendReady"),
        ("webhook-receiver-app-2", "Normal", "ServiceBackendReady")], "one Event each")


def test_missing_service_is_reported_then_resolved_when_it_appears(
        k8s: K8s, run_operator: RunOperator, store: Store) -> None:
    k8s.clone("app", HOST, "app")
    run_operator()
    eventually(lambda: k8s.reason("app") == "ServiceNotFound", "ServiceNotFound")
    cond = k8s.ready("app")
    assert cond is not None and cond["status"] == "False" and "create it" in cond["message"]
    assert table(store) == {}
    k8s.service("app", ip="10.0.0.7")
    eventually(lambda: table(store) == {HOST: [("apps/app", "http://10.0.0.7:80")]},
               "routed once the Service exists")
    eventually(lambda: k8s.reason("app") == "ServiceBackendReady", "Ready after create")
    eventually(lambda: k8s.events("app") == [("app", "Warning", "ServiceNotFound"),
                                             ("app", "Normal", "ServiceBackendReady")],
               "one Event per transition")


def test_service_change_and_deletion_re_resolve_within_2s(
        k8s: K8s, run_operator: RunOperator, store: Store) -> None:
    k8s.service("app", ip="10.0.0.1")
    k8s.clone("app", HOST, "app")
    run_operator()
    eventually(lambda: table(store) == {HOST: [("apps/app", "http://10.0.0.1:80")]}, "routed")
    k8s.patch_service("app", {"clusterIP": "10.0.0.9", "ports": [{"name": "http", "port": 81}]})
    eventually(lambda: table(store) == {HOST: [("apps/app", "http://10.0.0.9:81")]},
               "Service change re-resolved")
    eventually(lambda: "10.0.0.9:81" in str((k8s.ready("app") or {}).get("message")),
               "message follows the Service")
    k8s.delete_service("app")
    eventually(lambda: table(store) == {}, "backend gone with its Service")
    eventually(lambda: k8s.reason("app") == "ServiceNotFound", "ServiceNotFound after delete")
    # The Event is created after the status write it reports.
    eventually(lambda: [e[2] for e in k8s.events("app")] == ["ServiceBackendReady",
                                                              "ServiceNotFound"],
               "one Event per transition")


def test_deleting_a_clone_removes_its_backend_within_2s(
        k8s: K8s, run_operator: RunOperator, store: Store) -> None:
    k8s.service("one", ip="10.0.0.1")
    k8s.service("two", ip="10.0.0.2")
    k8s.clone("one", HOST, "one")
    k8s.clone("two", HOST, "two")
    run_operator()
    eventually(lambda: len(table(store).get(HOST, [])) == 2, "both routed")
    k8s.delete_clone("one")
    eventually(lambda: table(store) == {HOST: [("apps/two", "http://10.0.0.2:80")]},
               "deleted clone unrouted")


def test_missing_port_name_is_reported(k8s: K8s, run_operator: RunOperator,
                                       store: Store) -> None:
    k8s.service("app", port_name="web")
    k8s.clone("app", HOST, "app", port="http")
    run_operator()
    eventually(lambda: k8s.reason("app") == "ServicePortNotFound", "ServicePortNotFound")
    cond = k8s.ready("app") or {}
    assert "'http'" in cond["message"] and "web" in cond["message"]
    eventually(lambda: k8s.events("app") == [("app", "Warning", "ServicePortNotFound")],
               "the Warning Event")
    k8s.patch_clone("app", {"backend": {"serviceName": "app", "servicePort": "web"}})
    eventually(lambda: k8s.reason("app") == "ServiceBackendReady", "fixed by editing the spec")
    cond = k8s.ready("app") or {}
    assert cond["observedGeneration"] == cond["generation"] == 2
    assert table(store) == {HOST: [("apps/app", "http://10.0.0.1:80")]}


def test_headless_service_routes_to_its_dns_name(k8s: K8s, run_operator: RunOperator,
                                                 store: Store) -> None:
    k8s.service("app", ip="None", port=80, target=8080)
    k8s.clone("app", HOST, "app")
    run_operator()
    eventually(lambda: table(store) == {HOST: [("apps/app", "http://app.apps.svc:8080")]},
               "headless routed by DNS name")
    eventually(lambda: k8s.reason("app") == "ServiceBackendReady", "Ready")


def test_malformed_spec_gets_invalid_spec_and_does_not_block_others(
        k8s: K8s, run_operator: RunOperator, store: Store) -> None:
    k8s.service("good")
    k8s.clone("good", HOST, "good")
    k8s.clone("bad", "", "", spec={"backend": {"serviceName": "good"}})
    run_operator()
    eventually(lambda: k8s.reason("bad") == "InvalidSpec", "InvalidSpec")
    assert "host" in (k8s.ready("bad") or {})["message"]
    eventually(lambda: table(store) == {HOST: [("apps/good", "http://10.0.0.1:80")]},
               "valid clone still routed")
    eventually(lambda: k8s.events("bad") == [("bad", "Warning", "InvalidSpec")],
               "the Warning Event")


def test_resync_writes_no_status_and_no_event_when_nothing_changed(
        k8s: K8s, run_operator: RunOperator, store: Store) -> None:
    k8s.service("app")
    k8s.clone("app", HOST, "app")
    op = run_operator()
    eventually(lambda: k8s.reason("app") == "ServiceBackendReady", "Ready")
    eventually(lambda: bool(k8s.events("app")), "the Event")  # written after the status
    writes = len(k8s.server.api.writers)
    lists = op.clones.lists
    k8s.server.compact()  # forces a full re-list of everything
    eventually(lambda: op.clones.lists > lists, "re-listed")
    op.reconcile()
    assert len(k8s.server.api.writers) == writes
    assert k8s.events("app") == [("app", "Normal", "ServiceBackendReady")]


def test_own_namespace_only_and_label_selector(k8s: K8s, run_operator: RunOperator,
                                               store: Store) -> None:
    for ns in ("apps", "hookfan-system"):
        k8s.service("app", ns=ns)
        k8s.clone("app", f"{ns}.example.com", "app", ns=ns, labels={"team": "x"})
    k8s.clone("other", "other.example.com", "app", ns="hookfan-system", labels={"team": "y"})
    run_operator(watch_all_namespaces="false", watch_label_selector="team=x")
    eventually(lambda: list(table(store)) == ["hookfan-system.example.com"],
               "only the own namespace, only matching labels")
    assert k8s.ready("app", ns="apps") is None
    assert k8s.ready("other", ns="hookfan-system") is None
