"""The built-in Redis: left alone by hookfan upgrades, always behind a password that survives
upgrades, on a patched image.

``lookup`` needs an API server: the upgrade is rendered by Helm's own Go SDK against the kmock API
server of tests/support/kubeapi.py holding the Secret the first install created, exactly as
``helm upgrade`` renders against a cluster (helm_python.Config.render; only ``lookup`` calls it).
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.support.kubeapi import KubeServer

from .chart import NAMESPACE, RELEASE, chart, containers, find, one, render

SECRET = "hookfan-redis-auth"


def redis_template(docs: list[dict[str, Any]]) -> dict[str, Any]:
    template: dict[str, Any] = one(docs, "StatefulSet", "hookfan-redis")["spec"]["template"]
    return template


def test_redis_pod_template_is_the_same_for_two_hookfan_versions() -> None:
    old = render({"image": {"tag": "1.4.0"}})
    new = render({"image": {"tag": "1.5.0", "digest": "sha256:" + "0" * 64}})
    # The hookfan pods do change (so the comparison can tell a difference) ...
    assert one(old, "Deployment", "hookfan-app")["spec"]["template"] != \
        one(new, "Deployment", "hookfan-app")["spec"]["template"]
    # ... and Redis' does not: no restart, no AOF reload, no 503s while it loads.
    assert redis_template(old) == redis_template(new)
    labels = redis_template(old)["metadata"]["labels"]
    assert labels == {"app.kubernetes.io/name": "hookfan", "app.kubernetes.io/instance": RELEASE,
                      "app.kubernetes.io/component": "redis"}


def test_redis_runs_a_patched_release() -> None:
    (c, _) = containers(one(render(), "StatefulSet", "hookfan-redis"))
    m = re.fullmatch(r"docker\.io/library/redis:(\d+)\.(\d+)\.(\d+)-alpine", c["image"])
    assert m, c["image"]
    major, minor, patch = map(int, m.groups())
    # CVE-2025-49844 (Lua use-after-free) and its siblings: fixed in 7.4.6 and 8.2.2.
    assert (major, minor, patch) >= (7, 4, 6) and (major, minor) != (8, 0)
    assert (major, minor) < (8, 0) or (major, minor, patch) >= (8, 2, 2)


def password(docs: list[dict[str, Any]], name: str = SECRET) -> str:
    secret = one(docs, "Secret", name)
    return base64.b64decode(secret["data"]["redis-password"]).decode()


def test_a_password_is_generated_by_default_and_required_by_redis() -> None:
    docs = render()
    first, second = password(docs), password(render())
    assert len(first) >= 32 and first != second  # random where nothing is there yet
    secret = one(docs, "Secret", SECRET)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    conf = one(docs, "ConfigMap", "hookfan-redis")["data"]["redis.conf"]
    assert "protected-mode yes" in conf
    sts = one(docs, "StatefulSet", "hookfan-redis")
    (redis_c, exporter) = containers(sts)
    assert '--requirepass "$(cat /etc/hookfan/redis/password)"' in redis_c["args"][0]
    vols = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert vols["redis-password"]["secret"]["secretName"] == SECRET
    exporter_env = {e["name"]: e for e in exporter["env"]}
    assert exporter_env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == SECRET
    for name in ("hookfan-app", "hookfan-worker", "hookfan-operator"):
        (c,) = containers(one(docs, "Deployment", name))
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["HOOKFAN_REDIS_PASSWORD_FILE"] == "/etc/hookfan/redis/password"
    (flower,) = containers(one(docs, "Deployment", "hookfan-flower"))
    env = {e["name"]: e for e in flower["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == SECRET


def test_existing_secret_replaces_the_generated_one() -> None:
    docs = render({"redis": {"auth": {"existingSecret": "mine", "key": "pw"}}})
    assert find(docs, "Secret", SECRET) == []
    sts = one(docs, "StatefulSet", "hookfan-redis")
    vols = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert vols["redis-password"]["secret"]["secretName"] == "mine"
    assert vols["redis-password"]["secret"]["items"] == [{"key": "pw", "path": "password"}]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeServer, str]]:
    kube = KubeServer()
    # Helm's lookup finds Secrets through discovery, which kmock serves for declared resources.
    kube.api.resources["v1/secrets"] = {"kind": "Secret", "namespaced": True,
                                        "singular": "secret", "verbs": ["get", "list", "create"]}
    kube.start()
    try:
        yield kube, kube.kubeconfig(tmp_path / "kubeconfig")
    finally:
        kube.stop()


def create(kube: KubeServer, obj: dict[str, Any]) -> None:
    url = f"{kube.url}/api/v1/namespaces/{NAMESPACE}/secrets"
    req = urllib.request.Request(url, data=json.dumps(obj).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 201


def upgrade(kubeconfig: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Render as `helm upgrade` does: against the cluster, so `lookup` sees live objects."""
    config = helm_python.Config(kubeconfig_path=kubeconfig, namespace=NAMESPACE,
                                storage_driver="memory")
    rendered = config.render(chart(), values or {}, name=RELEASE, namespace=NAMESPACE,
                             is_upgrade=True)
    return [d for path, text in sorted(rendered.items()) if not path.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d]


def test_the_password_survives_an_upgrade(cluster: tuple[KubeServer, str]) -> None:
    kube, kubeconfig = cluster
    installed = one(render(), "Secret", SECRET)  # what the first install created
    create(kube, installed)
    upgraded = upgrade(kubeconfig, {"image": {"tag": "9.9.9"}})
    assert password(upgraded) == base64.b64decode(installed["data"]["redis-password"]).decode()
    # The Flower login is kept the same way.
    flower = one(render(), "Secret", "hookfan-flower-auth")
    create(kube, flower)
    assert one(upgrade(kubeconfig), "Secret", "hookfan-flower-auth")["data"] == flower["data"]


def test_without_a_live_secret_the_upgrade_generates_one(
        cluster: tuple[KubeServer, str]) -> None:
    """The stub is not vacuous: the same render finds nothing to keep in an empty cluster."""
    _, kubeconfig = cluster
    assert password(upgrade(kubeconfig)) != password(upgrade(kubeconfig))


def test_existing_claim_replaces_the_volume_claim_template() -> None:
    docs = render({"redis": {"persistence": {"existingClaim": "restored-aof"}}})
    sts = one(docs, "StatefulSet", "hookfan-redis")
    assert "volumeClaimTemplates" not in sts["spec"]
    vols = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert vols["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": "restored-aof"}}
