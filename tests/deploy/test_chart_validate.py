"""Every rendered manifest is valid Kubernetes for the oldest and newest version the chart claims.

kubernetes-validate bundles OpenAPI schemas for a range of Kubernetes versions; we validate in
strict mode (unknown fields are errors) against the oldest bundled version that satisfies the
chart's ``kubeVersion`` and the newest bundled version. PodMonitor and PrometheusRule are custom
resources of the Prometheus Operator, and ScaledObject one of KEDA, for which kubernetes-validate
has no schema: those kinds, and only those, are skipped here (their content is checked in
test_monitoring.py and test_chart_values.py).
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions, major_minor

from .chart import crds, kube_version_floor

SKIPPED_KINDS = {"PodMonitor", "PrometheusRule", "ScaledObject"}


def _claimed_versions() -> list[str]:
    floor = kube_version_floor()
    bundled = sorted({major_minor(v) for v in all_versions()},
                     key=lambda v: tuple(int(p) for p in v.split(".")))
    claimed = [v for v in bundled if tuple(int(p) for p in v.split(".")) >= floor]
    assert claimed, f"kubernetes-validate bundles no version >= {floor}"
    return [claimed[0], claimed[-1]]


VERSIONS = _claimed_versions()


def test_oldest_claimed_version_is_the_charts_floor() -> None:
    assert VERSIONS[0] == "{}.{}".format(*kube_version_floor())


def _unique_docs(rendered: dict[str, list[dict[str, Any]]]) -> dict[str, tuple[str, Any]]:
    """Each distinct manifest once (most are shared by every scenario), with a scenario naming it,
    which keeps validation to a few seconds."""
    unique: dict[str, tuple[str, Any]] = {}
    for scenario in sorted(rendered):
        for doc in rendered[scenario]:
            key = json.dumps(doc, sort_keys=True)
            unique.setdefault(key, (scenario, doc))
    return unique


@pytest.mark.parametrize("version", VERSIONS)
def test_rendered_manifests_validate_strict(
        rendered: dict[str, list[dict[str, Any]]], version: str) -> None:
    kinds: set[str] = set()
    for scenario, doc in _unique_docs(rendered).values():
        if doc["kind"] in SKIPPED_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            pytest.fail(f"{name} (scenario {scenario}) invalid for {version}: {exc}")
        kinds.add(doc["kind"])
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap", "ClusterRole", "Role",
            "RoleBinding", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Ingress",
            "NetworkPolicy", "Secret", "ServiceAccount"} <= kinds


@pytest.mark.parametrize("version", VERSIONS)
def test_crd_validates_strict(version: str) -> None:
    found = crds()
    assert len(found) == 2  # RequestClone and Receiver
    for crd in found:
        kubernetes_validate.validate(crd, version, strict=True)


def test_validation_is_not_vacuous() -> None:
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
              "spec": {"selector": {}, "template": {"spec": {"containers": [
                  {"name": "x", "image": "x", "securityContex": {}}]}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
