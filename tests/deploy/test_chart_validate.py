"""Every rendered manifest is valid Kubernetes for the oldest and newest version the chart claims.

kubernetes-validate bundles OpenAPI schemas for a range of Kubernetes versions; we validate in
strict mode (unknown fields are errors) against the oldest bundled version that satisfies the
chart's ``kubeVersion`` and the newest bundled version. PodMonitor and PrometheusRule are custom
resources of the Prometheus Operator, for which kubernetes-validate has no schema: those two kinds,
and only those, are skipped here (their content is checked in test_monitoring.py).
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions, major_minor

from .chart import SCENARIOS, crds, kube_version_floor

SKIPPED_KINDS = {"PodMonitor", "PrometheusRule"}


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


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rendered_manifests_validate_strict(
        rendered: dict[str, list[dict[str, Any]]], scenario: str, version: str) -> None:
    checked = 0
    for doc in rendered[scenario]:
        if doc["kind"] in SKIPPED_KINDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("version", VERSIONS)
def test_crd_validates_strict(version: str) -> None:
    (crd,) = crds()
    kubernetes_validate.validate(crd, version, strict=True)


def test_validation_is_not_vacuous() -> None:
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
              "spec": {"selector": {}, "template": {"spec": {"containers": [
                  {"name": "x", "image": "x", "securityContex": {}}]}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
