"""Render the Helm chart offline (helm-python-sdk, Helm's own Go SDK) into Kubernetes objects."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "hookfan"
RELEASE = "hookfan"
NAMESPACE = "hookfan"

SENTINEL: dict[str, Any] = {
    "enabled": True, "masterName": "mymaster",
    "hosts": [f"redis-node-{i}.redis-headless.redis.svc:26379" for i in range(3)]}

# The variants the acceptance criteria name, plus the optional extras switched on.
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "external-redis": {"redis": {"external": {"url": "rediss://redis.example.internal:6380/2"},
                                 "auth": {"existingSecret": "redis-creds", "key": "password"}}},
    # TLS to an external Redis: CA and client certificate (with a password), and CA only.
    "external-redis-tls": {"redis": {"external": {"url": "rediss://redis.example.internal:6380/2",
                                                  "tls": {"enabled": True,
                                                          "existingSecret": "redis-tls"}},
                                     "auth": {"existingSecret": "redis-creds", "key": "password"}}},
    "external-redis-tls-ca-only": {"redis": {"external": {
        "url": "rediss://redis.example.internal:6380/0",
        "tls": {"enabled": True, "existingSecret": "redis-ca", "caKey": "bundle.pem",
                "certKey": "", "keyKey": ""}}}},
    "builtin-redis-with-password": {"redis": {"auth": {"existingSecret": "redis-creds"}}},
    # An existing Sentinel deployment (bitnami/redis with sentinel.enabled=true), 202 after one
    # replica acknowledges; and the same over TLS to the primary, database 2.
    "sentinel": {"redis": {"sentinel": SENTINEL, "auth": {"existingSecret": "redis-creds"}},
                 "app": {"minReplicasAck": 1, "replicaAckTimeout": "750ms"}},
    "sentinel-tls": {"redis": {"sentinel": SENTINEL,
                               "external": {"url": "rediss://ignored.example.internal:6380/2",
                                            "tls": {"enabled": True,
                                                    "existingSecret": "redis-tls"}},
                               "auth": {"existingSecret": "redis-creds"}},
                     "app": {"minReplicasAck": 1}},
    "flower-off": {"flower": {"enabled": False}},
    "flower-existing-secret": {"flower": {"basicAuth": {"existingSecret": "flower-creds"}}},
    "namespaced": {"watchAllNamespaces": False},
    "ingress": {"ingress": {"enabled": True, "className": "nginx",
                            "hosts": [{"host": "webhook-receiver.example.com"}],
                            "tls": [{"secretName": "webhooks-tls",
                                     "hosts": ["webhook-receiver.example.com"]}]}},
    "hpa": {"app": {"autoscaling": {"enabled": True}},
            "worker": {"autoscaling": {"enabled": True}}},
    "monitoring": {"monitoring": {"podMonitor": {"enabled": True},
                                  "prometheusRule": {"enabled": True},
                                  "grafanaDashboard": {"enabled": True}}},
    "no-persistence": {"redis": {"persistence": {"enabled": False},
                                 "metrics": {"enabled": False}}},
    "extras": {"podLabels": {"team": "payments"},
               "image": {"digest": "sha256:" + "1" * 64},
               "delivery": {"backendConcurrency": 16, "autoPauseAfter": "15m"},
               "redis": {"podLabels": {"tier": "data"}, "priorityClassName": "critical",
                         "persistence": {"existingClaim": "restored-aof"},
                         "securityContext": {"runAsNonRoot": True,
                                             "allowPrivilegeEscalation": False}},
               **{c: {"podLabels": {"tier": c}, "priorityClassName": "high",
                      "topologySpreadConstraints": [
                          {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                           "whenUnsatisfiable": "ScheduleAnyway"}],
                      "extraArgs": ["--log-level=debug"],
                      "extraVolumes": [{"name": "ca", "configMap": {"name": "corp-ca"}}],
                      "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/corp-ca"}],
                      "envFrom": [{"configMapRef": {"name": "hookfan-settings"}}],
                      "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": False,
                                          "allowPrivilegeEscalation": False},
                      "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 20000}}
                  for c in ("app", "worker", "operator", "flower")}},
    "hard-anti-affinity": {c: {"podAntiAffinityPreset": "hard"}
                           for c in ("app", "worker", "operator")},
    "keda": {"worker": {"keda": {"enabled": True,
                                 "serverAddress": "http://prometheus.monitoring:9090"}}},
    "flower-oauth": {"flower": {"oauth": {"provider": "github",
                                          "allowedEmails": r".*@example\.com",
                                          "redirectUri": "https://flower.example.com/login",
                                          "existingSecret": "flower-oauth"},
                                "networkPolicy": {"from": [{"namespaceSelector": {
                                    "matchLabels": {
                                        "kubernetes.io/metadata.name": "ingress-nginx"}}}]}}},
}


@cache
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART)


def render_raw(values: dict[str, Any] | None = None) -> dict[str, str]:
    return chart().render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object the chart's templates produce (NOTES.txt excluded, CRDs not included)."""
    docs = []
    for path, text in sorted(render_raw(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def crds() -> list[dict[str, Any]]:
    return [yaml.safe_load(c["data"]) for c in chart().crds]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind
            and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, got {len(found)}"
    return found[0]


def workloads(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (d for d in docs if d["kind"] in ("Deployment", "StatefulSet"))


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def flag(container: dict[str, Any], name: str) -> str | None:
    """The value of ``--name=value`` in the container's args, None if absent."""
    for arg in container.get("args", []):
        m = re.fullmatch(rf"--{re.escape(name)}=(.*)", arg)
        if m:
            return m.group(1)
    return None


def kube_version_floor() -> tuple[int, int]:
    """The minor version the chart's ``kubeVersion: >=1.N...`` constraint claims as oldest."""
    constraint = chart().metadata["kubeVersion"]
    m = re.fullmatch(r">=\s*v?(\d+)\.(\d+)(?:\.\d+)?(?:-0)?", constraint.strip())
    assert m, f"tests understand only '>=X.Y.Z-0' kubeVersion constraints, got {constraint!r}"
    return int(m.group(1)), int(m.group(2))
