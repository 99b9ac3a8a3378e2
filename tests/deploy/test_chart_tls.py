"""TLS to an external Redis (redis.external.tls): every process that talks to Redis (app, worker
with its Celery broker, operator, Flower) gets the CA and client certificate from one Secret.

Lint (strict) and kubernetes-validate cover the TLS scenarios through SCENARIOS in chart.py, and
test_chart_workloads.py's CLI check runs the TLS variables through hookfan's own parser.
"""

from __future__ import annotations

import ssl
from typing import Any

import helm_python
import pytest
from kombu import Connection
from kombu.utils.url import parse_url

from .chart import chart, containers, one, render, workloads

HOOKFAN = ("hookfan-app", "hookfan-worker", "hookfan-operator")
TLS_DIR = "/etc/hookfan/redis-tls"
TLS_ENV = ("HOOKFAN_REDIS_TLS_CA_FILE", "HOOKFAN_REDIS_TLS_CERT_FILE",
           "HOOKFAN_REDIS_TLS_KEY_FILE")
URL = "rediss://redis.example.internal:6380/2"


def _container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (c,) = containers(one(docs, "Deployment", name))
    return c


def _tls_volume(docs: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The volume mounted at TLS_DIR in the Deployment's container (read-only), None if none."""
    c = _container(docs, name)
    mounts = [m for m in c.get("volumeMounts", []) if m["mountPath"] == TLS_DIR]
    if not mounts:
        return None
    (mount,) = mounts
    assert mount.get("readOnly") is True, (name, mount)
    vols = one(docs, "Deployment", name)["spec"]["template"]["spec"]["volumes"]
    (vol,) = [v for v in vols if v["name"] == mount["name"]]
    return vol


def _env(c: dict[str, Any]) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def _flower_ssl(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The TLS options kombu reads from Flower's broker URL, as `celery -b` hands it over."""
    env = _env(_container(docs, "hookfan-flower"))
    url = str(env["REDIS_URL"]).replace("$(REDIS_PASSWORD)", "pw")
    conn = Connection(url)
    assert conn.transport_cls == "rediss"
    assert parse_url(url)["ssl"] == conn.ssl
    return dict(conn.ssl)


@pytest.mark.parametrize("name", HOOKFAN + ("hookfan-flower",))
def test_tls_mounts_the_secret_read_only_in_every_process(
        rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    vol = _tls_volume(rendered["external-redis-tls"], name)
    assert vol is not None, f"{name} does not mount the Redis TLS Secret"
    assert vol["secret"]["secretName"] == "redis-tls"
    assert vol["secret"]["defaultMode"] == 0o440
    assert vol["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"},
                                      {"key": "tls.crt", "path": "tls.crt"},
                                      {"key": "tls.key", "path": "tls.key"}]


@pytest.mark.parametrize("name", HOOKFAN)
def test_tls_points_app_worker_and_operator_at_the_mounted_files(
        rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    env = _env(_container(rendered["external-redis-tls"], name))
    assert env["HOOKFAN_REDIS_URL"] == URL
    assert env["HOOKFAN_REDIS_PASSWORD_FILE"] == "/etc/hookfan/redis/password"
    assert {k: env.get(k) for k in TLS_ENV} == {
        "HOOKFAN_REDIS_TLS_CA_FILE": f"{TLS_DIR}/ca.crt",
        "HOOKFAN_REDIS_TLS_CERT_FILE": f"{TLS_DIR}/tls.crt",
        "HOOKFAN_REDIS_TLS_KEY_FILE": f"{TLS_DIR}/tls.key"}


def test_flower_broker_url_carries_kombus_tls_options(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["external-redis-tls"]
    c = _container(docs, "hookfan-flower")
    assert c["args"][:2] == ["-b", "$(REDIS_URL)"]
    names = [e["name"] for e in c["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL")
    assert _flower_ssl(docs) == {"ssl_cert_reqs": ssl.CERT_REQUIRED,
                                 "ssl_ca_certs": f"{TLS_DIR}/ca.crt",
                                 "ssl_certfile": f"{TLS_DIR}/tls.crt",
                                 "ssl_keyfile": f"{TLS_DIR}/tls.key"}
    # The same files the hookfan processes use, so Flower and the worker trust the same CA.
    app = _env(_container(docs, "hookfan-app"))
    assert {app[k] for k in TLS_ENV} == {v for k, v in _flower_ssl(docs).items()
                                         if k != "ssl_cert_reqs"}


def test_flower_verifies_a_rediss_server_even_without_tls_values(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    # Without TLS options kombu connects to rediss:// with CERT_NONE; the chart never lets it.
    docs = rendered["external-redis"]
    assert _flower_ssl(docs) == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert _tls_volume(docs, "hookfan-flower") is None


def test_ca_only_mounts_just_the_ca_under_its_fixed_name(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["external-redis-tls-ca-only"]
    for name in HOOKFAN + ("hookfan-flower",):
        vol = _tls_volume(docs, name)
        assert vol is not None, name
        assert vol["secret"]["secretName"] == "redis-ca"
        assert vol["secret"]["items"] == [{"key": "bundle.pem", "path": "ca.crt"}]
    for name in HOOKFAN:
        env = _env(_container(docs, name))
        assert env["HOOKFAN_REDIS_TLS_CA_FILE"] == f"{TLS_DIR}/ca.crt"
        assert "HOOKFAN_REDIS_TLS_CERT_FILE" not in env
        assert "HOOKFAN_REDIS_TLS_KEY_FILE" not in env
        assert "HOOKFAN_REDIS_PASSWORD_FILE" not in env
    assert _flower_ssl(docs) == {"ssl_cert_reqs": ssl.CERT_REQUIRED,
                                 "ssl_ca_certs": f"{TLS_DIR}/ca.crt"}


def test_custom_key_names_map_to_the_fixed_file_names() -> None:
    docs = render({"redis": {"external": {"url": URL, "tls": {
        "enabled": True, "existingSecret": "mtls", "caKey": "root.pem",
        "certKey": "client.pem", "keyKey": "client-key.pem"}}}})
    vol = _tls_volume(docs, "hookfan-worker")
    assert vol is not None
    assert vol["secret"]["items"] == [{"key": "root.pem", "path": "ca.crt"},
                                      {"key": "client.pem", "path": "tls.crt"},
                                      {"key": "client-key.pem", "path": "tls.key"}]


@pytest.mark.parametrize("scenario", ["defaults", "external-redis", "builtin-redis-with-password"])
def test_without_tls_nothing_is_mounted_or_set(
        rendered: dict[str, list[dict[str, Any]]], scenario: str) -> None:
    docs = rendered[scenario]
    for w in workloads(docs):
        for c in containers(w):
            assert not set(_env(c)) & set(TLS_ENV), (w["metadata"]["name"], c["name"])
            assert all(m["mountPath"] != TLS_DIR for m in c.get("volumeMounts", []))


@pytest.mark.parametrize("external, message", [
    ({"url": "redis://redis.example.internal:6379/0",
      "tls": {"enabled": True, "existingSecret": "redis-tls"}},
     "needs a rediss:// redis.external.url"),
    ({"tls": {"enabled": True, "existingSecret": "redis-tls"}},
     "set redis.external.url to its rediss:// URL"),
    ({"url": URL, "tls": {"enabled": True}}, "needs redis.external.tls.existingSecret"),
    ({"url": URL, "tls": {"enabled": True, "existingSecret": "s", "keyKey": ""}},
     "certKey and redis.external.tls.keyKey go together"),
    ({"url": URL, "tls": {"enabled": True, "existingSecret": "s", "caKey": "", "certKey": "",
                          "keyKey": ""}},
     "set redis.external.tls.caKey"),
], ids=["plain-url", "builtin-redis", "no-secret", "half-a-pair", "nothing-used"])
def test_inconsistent_tls_values_fail_with_a_message_naming_the_fix(
        external: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=message):
        render({"redis": {"external": external}})


@pytest.mark.parametrize("tls", [
    {"enabled": "yes"},
    {"caKey": "ca crt"},
    {"certKey": "../tls.crt"},
    {"existingSecretName": "x"},
], ids=["enabled-not-bool", "key-with-space", "key-with-slash", "unknown-key"])
def test_schema_rejects_bad_tls_values(tls: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        chart().validate_schema({"redis": {"external": {"url": URL, "tls": tls}}})
