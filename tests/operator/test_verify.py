"""``spec.verify`` from Kubernetes: the signing secret comes from a watched Secret, is published
to Redis apart from the route table, and a rotation applies to a running app without a
restart; RequestClones of one host that disagree on verify, a missing Secret and an invalid
verify get ``Ready=False`` with a reason. The real operator against the kmock API server, a
real Redis, and the intake app (Flask's test client) on that Redis."""

from __future__ import annotations

import base64
from typing import Any

from githubkit.webhooks import sign

from hookfan import keys
from hookfan.app import create_app
from hookfan.config import Settings
from hookfan.store import Store
from tests.operator.conftest import K8s, RunOperator, eventually, table

HOST = "gh.example.com"
VERIFY = {"provider": "github", "secretRef": {"name": "gh-webhook", "key": "secret"}}
BODY = b'{"zen":"Keep it logically awesome."}'


def spec(verify: dict[str, Any] | None = VERIFY, service: str = "app") -> dict[str, Any]:
    out: dict[str, Any] = {"host": HOST, "backend": {"serviceName": service,
                                                     "servicePort": "http"}}
    if verify is not None:
        out["verify"] = verify
    return out


def put_secret(k8s: K8s, value: bytes, name: str = "gh-webhook", ns: str = "apps") -> None:
    body = {"metadata": {"name": name}, "data": {"secret": base64.b64encode(value).decode()}}
    try:
        k8s.core.read_namespaced_secret(name, ns)
    except Exception:
        k8s.core.create_namespaced_secret(ns, body)
    else:
        k8s.core.patch_namespaced_secret(name, ns, {"data": body["data"]})


def secrets_of(store: Store) -> tuple[bytes, ...] | None:
    loaded = store.load_routes()
    v = None if loaded is None else loaded.verify.get(HOST)
    return None if v is None else v.secrets


def test_secret_is_published_apart_from_the_table_and_a_rotation_applies_without_restart(
        k8s: K8s, run_operator: RunOperator, store: Store) -> None:
    k8s.service("app", ip="10.0.0.1")
    put_secret(k8s, b"first-secret\n")
    k8s.clone("app", HOST, "app", spec=spec())
    run_operator()
    eventually(lambda: secrets_of(store) == (b"first-secret",), "secret published")
    assert b"first-secret" not in store.r.get(keys.ROUTES)
    assert base64.b64encode(b"first-secret") not in store.r.get(keys.ROUTES)
    eventually(lambda: k8s.reason("app") == "ServiceBackendReady", "Ready")
    cond = k8s.ready("app")
    assert cond is not None and "verifying github signatures" in cond["message"]
    assert "first-secret" not in str(cond)

    app = create_app(Settings(), store=store)  # a running app: it polls the table
    client = app.test_client()

    def status(secret: str) -> int:
        return client.post("/", data=BODY, headers={
            "Host": HOST, "X-Hub-Signature-256": sign(secret, BODY)}).status_code

    eventually(lambda: status("first-secret") == 202, "accepted")
    assert status("wrong") == 401
    put_secret(k8s, b"second-secret")  # rotated in the Secret: watched, republished
    eventually(lambda: secrets_of(store) == (b"second-secret",), "rotation published")
    eventually(lambda: status("second-secret") == 202, "the app verifies with the new secret",
               timeout=3)
    assert status("first-secret") == 401


def test_newer_clone_with_another_verify_gets_VerifyConflict_and_the_older_keeps_serving(
        k8s: K8s, run_operator: RunOperator, store: Store) -> None:
    k8s.service("app", ip="10.0.0.1")
    k8s.service("other", ip="10.0.0.2")
    put_secret(k8s, b"s")
    k8s.clone("app", HOST, "app", spec=spec())
    k8s.clone("other", HOST, "other", spec=spec(None, "other"))  # created a second later
    run_operator()
    eventually(lambda: k8s.reason("other") == "VerifyConflict", "VerifyConflict")
    cond = k8s.ready("other")
    assert cond is not None and cond["status"] == "False" and "apps/app" in cond["message"]
    assert k8s.reason("app") == "ServiceBackendReady"
    assert table(store) == {HOST: [("apps/app", "http://10.0.0.1:80")]}
    assert secrets_of(store) == (b"s",)
    k8s.patch_clone("other", spec())  # made equal: both serve
    eventually(lambda: k8s.reason("other") == "ServiceBackendReady", "conflict resolved")
    eventually(lambda: len(table(store)[HOST]) == 2, "both routed")


def test_missing_secret_or_key_keeps_the_host_unrouted_until_it_exists(
        k8s: K8s, run_operator: RunOperator, store: Store) -> None:
    k8s.service("app", ip="10.0.0.1")
    k8s.clone("app", HOST, "app", spec=spec())
    run_operator()
    eventually(lambda: k8s.reason("app") == "SecretNotFound", "SecretNotFound")
    cond = k8s.ready("app")
    assert cond is not None and "apps/gh-webhook not found" in cond["message"]
    assert table(store) == {}  # never served unverified
    k8s.core.create_namespaced_secret("apps", {"metadata": {"name": "gh-webhook"},
                                               "data": {"other": "eA=="}})
    eventually(lambda: "no key 'secret'" in str((k8s.ready("app") or {}).get("message")),
               "key named")
    put_secret(k8s, b"now-there")
    eventually(lambda: k8s.reason("app") == "ServiceBackendReady", "Ready once it exists")
    assert secrets_of(store) == (b"now-there",)


def test_invalid_verify_is_InvalidSpec_not_a_crash(k8s: K8s, run_operator: RunOperator,
                                                   store: Store) -> None:
    k8s.service("app", ip="10.0.0.1")
    k8s.clone("hmac", "a.example.com", "app", spec={
        **spec(), "host": "a.example.com", "verify": {**VERIFY, "provider": "hmac-sha256"}})
    k8s.clone("unknown", "b.example.com", "app", spec={
        **spec(), "host": "b.example.com", "verify": {**VERIFY, "provider": "gitlab"}})
    k8s.clone("file", "c.example.com", "app", spec={
        **spec(), "host": "c.example.com",
        "verify": {"provider": "github", "secretFile": "/etc/secret"}})
    k8s.clone("fine", "d.example.com", "app")
    run_operator()
    for name, text in (("hmac", "header"), ("unknown", "gitlab"), ("file", "secretFile")):
        eventually(lambda n=name: k8s.reason(n) == "InvalidSpec", f"{name} InvalidSpec")
        assert text in str((k8s.ready(name) or {})["message"])
    eventually(lambda: list(table(store)) == ["d.example.com"], "the valid one routed")
