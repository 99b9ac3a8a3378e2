"""The key that seals spec.verify's signing secrets in Redis (--verify-key-file): generated and
kept, or an existing Secret, and mounted into the operator and app pods only."""

from __future__ import annotations

import base64
from typing import Any

from tests.deploy.chart import RELEASE, containers, find, one, render, workloads

MOUNT = "/etc/hookfan/verify"


def key_users(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Workload name -> the Secret its verify-key volume comes from (only those with one)."""
    out = {}
    for w in workloads(docs):
        spec = w["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        for c in containers(w):
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            if MOUNT in mounts:
                assert env.get("HOOKFAN_VERIFY_KEY_FILE") == f"{MOUNT}/key", w["metadata"]
                out[w["metadata"]["name"]] = vols[mounts[MOUNT]]["secret"]["secretName"]
            else:
                assert "HOOKFAN_VERIFY_KEY_FILE" not in env, w["metadata"]["name"]
    return out


def test_the_key_is_generated_kept_and_reaches_only_operator_and_app():
    docs = render()
    name = f"{RELEASE}-verify-key"
    secret = one(docs, "Secret", name)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(base64.b64decode(secret["data"]["key"])) >= 32
    users = key_users(docs)
    assert set(users.values()) == {name}
    assert sorted(n.rsplit("-", 1)[-1] for n in users) == ["app", "operator"]


def test_an_existing_secret_is_used_and_none_generated():
    docs = render({"verifyKey": {"existingSecret": "my-verify-key", "key": "k"}})
    assert not [s for s in find(docs, "Secret") if s["metadata"]["name"].endswith("verify-key")]
    users = key_users(docs)
    assert set(users.values()) == {"my-verify-key"} and len(users) == 2
