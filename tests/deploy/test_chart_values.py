"""The overrides chart users expect: accepted by values.schema.json and applied where they belong.
(Every scenario's output is also validated strictly against Kubernetes' schemas in
test_chart_validate.py; "extras" sets all of these at once.)"""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from .chart import SCENARIOS, chart, containers, find, flag, one, render

HOOKFAN = ("app", "worker", "operator", "flower")
EXTRAS = SCENARIOS["extras"]


def pod(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    kind = "StatefulSet" if component == "redis" else "Deployment"
    template: dict[str, Any] = one(docs, kind, f"hookfan-{component}")["spec"]["template"]
    return template


def test_the_schema_accepts_every_standard_extra() -> None:
    chart().validate_schema(EXTRAS)  # raises on any key or type it does not know
    for scenario in ("hard-anti-affinity", "keda", "flower-oauth"):
        chart().validate_schema(SCENARIOS[scenario])


@pytest.mark.parametrize("values", [
    {"app": {"podLabel": {"a": "b"}}},                        # a typo
    {"worker": {"podAntiAffinityPreset": "medium"}},
    {"podLabels": {"team": 1}},                               # label values are strings
    {"operator": {"extraArgs": "--log-level=debug"}},         # a list, not a string
    {"image": {"digest": "1234"}},
    {"redis": {"persistence": {"existingClaim": 3}}},
    {"delivery": {"backendConcurrency": -1}},
    {"delivery": {"autoPauseAfter": "soon"}},
    {"delivery": {"autoPauseAfter": 600}},                     # a duration string
    {"worker": {"keda": {"enabled": True, "threshold": 5}}},
    {"flower": {"oauth": {"provider": "facebook"}}},
])
def test_the_schema_still_refuses_what_it_does_not_know(values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        chart().validate_schema(values)


@pytest.mark.parametrize("component", HOOKFAN)
def test_extras_reach_each_hookfan_pod(component: str) -> None:
    docs = render(EXTRAS)
    mine = EXTRAS[component]
    template = pod(docs, component)
    spec = template["spec"]
    assert template["metadata"]["labels"]["team"] == "payments"
    assert template["metadata"]["labels"]["tier"] == component
    assert spec["priorityClassName"] == "high"
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
    assert spec["securityContext"] == mine["podSecurityContext"]
    assert {"name": "ca", "configMap": {"name": "corp-ca"}} in spec["volumes"]
    (c,) = [c for c in containers(one(docs, "Deployment", f"hookfan-{component}"))]
    assert c["args"][-1] == "--log-level=debug"
    assert {"name": "ca", "mountPath": "/etc/corp-ca"} in c["volumeMounts"]
    assert c["envFrom"] == mine["envFrom"]
    assert c["securityContext"] == mine["securityContext"]
    assert c["image"].endswith("@sha256:" + "1" * 64)


def test_redis_takes_its_own_extras() -> None:
    template = pod(render(EXTRAS), "redis")
    assert template["metadata"]["labels"]["tier"] == "data"
    assert template["spec"]["priorityClassName"] == "critical"
    for c in template["spec"]["containers"]:
        assert c["securityContext"] == EXTRAS["redis"]["securityContext"]


@pytest.mark.parametrize("component", ["app", "worker", "operator"])
def test_replicas_prefer_different_nodes_by_default(component: str) -> None:
    affinity = pod(render(), component)["spec"]["affinity"]
    (term,) = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert selector == one(render(), "Deployment", f"hookfan-{component}")["spec"]["selector"][
        "matchLabels"]
    hard = pod(render(SCENARIOS["hard-anti-affinity"]), component)["spec"]["affinity"]
    assert hard["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    mine = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "pool", "operator": "In", "values": ["hooks"]}]}]}}}
    assert pod(render({component: {"affinity": mine}}), component)["spec"]["affinity"] == mine
    assert "affinity" not in pod(render({component: {"podAntiAffinityPreset": ""}}),
                                 component)["spec"]


def test_backend_concurrency_reaches_the_worker() -> None:
    (c,) = containers(one(render(), "Deployment", "hookfan-worker"))
    assert flag(c, "backend-concurrency") == "4"
    (c,) = containers(one(render(EXTRAS), "Deployment", "hookfan-worker"))
    assert flag(c, "backend-concurrency") == "16"


def test_auto_pause_reaches_the_worker_off_by_default() -> None:
    (c,) = containers(one(render(), "Deployment", "hookfan-worker"))
    assert flag(c, "auto-pause-after") == "0"
    (c,) = containers(one(render(EXTRAS), "Deployment", "hookfan-worker"))
    assert flag(c, "auto-pause-after") == "15m"


def test_keda_scales_workers_on_the_pending_backlog() -> None:
    assert find(render(), "ScaledObject") == []
    docs = render(SCENARIOS["keda"])
    so = one(docs, "ScaledObject", "hookfan-worker")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                            "name": "hookfan-worker"}
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (2, 10)
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    meta = trigger["metadata"]
    assert meta["serverAddress"] == "http://prometheus.monitoring:9090"
    assert meta["query"] == ('sum(hookfan_pending_deliveries{namespace="hookfan",'
                             'app_kubernetes_io_instance="hookfan"})')
    assert meta["threshold"] == "1000"
    # KEDA owns the replica count (its own HPA), so the Deployment names none.
    assert "replicas" not in one(docs, "Deployment", "hookfan-worker")["spec"]
    assert find(docs, "HorizontalPodAutoscaler") == []


@pytest.mark.parametrize(("values", "message"), [
    ({"worker": {"keda": {"enabled": True}}}, "serverAddress"),
    ({"worker": {"keda": {"enabled": True, "serverAddress": "http://p:9090"},
                 "autoscaling": {"enabled": True}}}, "enable one of them"),
])
def test_keda_refuses_what_cannot_work(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError, match=message):
        render(values)
