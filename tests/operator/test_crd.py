"""The shipped CRD: one definition in three places, a schema that takes the original's manifests,
and RBAC that grants the operator exactly what it calls. Pure file checks, no server."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COPIES = [ROOT / "hookfan" / "crd.yaml", ROOT / "helm" / "hookfan" / "crds" / "requestclone.yaml",
          ROOT / "config" / "crd" / "requestclone.yaml"]


def crd() -> dict[str, Any]:
    return dict(yaml.safe_load(COPIES[0].read_text()))


def schema() -> dict[str, Any]:
    return dict(crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def examples() -> list[dict[str, Any]]:
    return [d for p in sorted((ROOT / "examples" / "routes").glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text()) if d and d.get("kind") == "RequestClone"]


def test_the_three_crd_copies_are_identical() -> None:
    texts = {p.relative_to(ROOT).as_posix(): p.read_text() for p in COPIES}
    assert len(set(texts.values())) == 1, f"CRD copies differ: {sorted(texts)}"


def test_crd_has_status_subresource_short_name_and_printer_columns() -> None:
    doc = crd()
    version = doc["spec"]["versions"][0]
    assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
    assert version["subresources"] == {"status": {}}
    assert "rc" in doc["spec"]["names"]["shortNames"]
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert {"Ready", "Status", "Age"} <= set(columns)


def test_example_manifests_validate() -> None:
    found = examples()
    assert found, "no example RequestClones"
    for doc in found:
        jsonschema.Draft7Validator(schema()).validate(doc)


def test_original_manifest_with_a_numeric_port_validates() -> None:
    doc = copy.deepcopy(examples()[0])
    doc["spec"]["backend"]["servicePort"] = 8080
    jsonschema.Draft7Validator(schema()).validate(doc)


@pytest.mark.parametrize("drop", [("host",), ("backend",), ("backend", "serviceName")])
def test_manifest_without_host_or_backend_is_rejected(drop: tuple[str, ...]) -> None:
    doc = copy.deepcopy(examples()[0])
    parent = doc["spec"]
    for key in drop[:-1]:
        parent = parent[key]
    del parent[drop[-1]]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema()).validate(doc)


def rules() -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    for path in (ROOT / "config" / "rbac").glob("*role_*.yaml"):
        doc = yaml.safe_load(path.read_text())
        if doc["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in doc["rules"]:
            for group in rule["apiGroups"]:
                for res in rule["resources"]:
                    found |= {(group, res, verb) for verb in rule["verbs"]}
    return found


def test_rbac_grants_the_operator_least_privilege() -> None:
    want = {("proxy.infra.doodle.com", "requestclones", v) for v in ("get", "list", "watch")}
    want |= {("proxy.infra.doodle.com", "requestclones/status", "patch")}
    want |= {("webhook.infra.doodle.com", "receivers", v) for v in ("get", "list", "watch")}
    want |= {("webhook.infra.doodle.com", "receivers/status", "patch")}
    want |= {("", res, v) for res in ("services", "namespaces", "secrets")
             for v in ("get", "list", "watch")}
    want |= {(g, "events", v) for g in ("", "events.k8s.io") for v in ("create", "patch")}
    want |= {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
    assert rules() == want


def with_verify(verify: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(examples()[0])
    doc["spec"]["verify"] = verify
    return doc


REF = {"name": "gh-webhook", "key": "secret"}


@pytest.mark.parametrize("verify", [
    {"provider": "github", "secretRef": REF},
    {"provider": "stripe", "secretRef": REF, "tolerance": "10m"},
    {"provider": "slack", "secretFile": "/etc/hookfan/slack"},
    {"provider": "standard-webhooks", "secretRef": REF, "tolerance": "1m30s"},
    {"provider": "hmac-sha256", "secretRef": REF, "header": "X-Signature"},
])
def test_schema_accepts_verify(verify: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(schema()).validate(with_verify(verify))


@pytest.mark.parametrize("verify", [
    {"provider": "gitlab", "secretRef": REF},
    {"provider": "hmac-sha256", "secretRef": REF},
    {"provider": "github", "secretRef": REF, "header": "X-Signature"},
    {"provider": "github"},
    {"provider": "github", "secretRef": REF, "secretFile": "/s"},
    {"provider": "github", "secretRef": {"name": "gh-webhook"}},
    {"provider": "stripe", "secretRef": REF, "tolerance": "5 minutes"},
    {"provider": "hmac-sha256", "secretRef": REF, "header": "X Signature"},
    {"secretRef": REF},
])
def test_schema_rejects_a_bad_verify(verify: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema()).validate(with_verify(verify))


def with_delivery(delivery: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(examples()[0])
    doc["spec"]["delivery"] = delivery
    return doc


@pytest.mark.parametrize("delivery", [
    {},
    {"maxRetryAge": "6h", "minRetryDelay": "2s", "maxRetryDelay": "10m"},
    {"concurrency": 2, "rateLimit": {"perSecond": 20, "burst": 40}, "ordered": False},
    {"rateLimit": {"perSecond": 0.5}, "ordered": True},
])
def test_schema_accepts_delivery(delivery: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(schema()).validate(with_delivery(delivery))


@pytest.mark.parametrize("delivery", [
    {"rateLimit": {"perSecond": -5}},
    {"rateLimit": {"perSecond": 0}},
    {"rateLimit": {"burst": 4}},
    {"rateLimit": {"perSecond": 5, "burst": 0}},
    {"concurrency": 0},
    {"concurrency": 1.5},
    {"maxRetryAge": "six hours"},
    {"ordered": "yes"},
    {"retries": 3},
])
def test_schema_rejects_a_bad_delivery(delivery: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema()).validate(with_delivery(delivery))
