"""Workload shape: hardening, probes, process flags, Redis durability, secrets kept secret."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from hookfan.config import DeliverySettings

from .chart import containers, find, flag, one, render, workloads

HOOKFAN = ("hookfan-app", "hookfan-worker", "hookfan-operator")
SENSITIVE = re.compile(r"PASSWORD|SECRET|TOKEN|AUTH|CREDENTIAL", re.IGNORECASE)


def hookfan_container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (c,) = containers(one(docs, "Deployment", name))
    return c


@pytest.mark.parametrize("scenario", ["defaults", "external-redis", "builtin-redis-with-password",
                                      "external-redis-tls"])
def test_every_container_is_hardened(rendered: dict[str, list[dict[str, Any]]],
                                     scenario: str) -> None:
    names = set()
    for w in workloads(rendered[scenario]):
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert isinstance(pod["securityContext"]["runAsUser"], int)
        assert pod["securityContext"]["runAsUser"] != 0
        for c in containers(w):
            sc = c["securityContext"]
            names.add(c["name"])
            assert sc["runAsNonRoot"] is True
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert "add" not in sc["capabilities"]
    assert {"app", "worker", "operator"} <= names


def test_tmp_is_a_writable_empty_dir(defaults: list[dict[str, Any]]) -> None:
    for w in workloads(defaults):
        vols = {v["name"]: v for v in w["spec"]["template"]["spec"]["volumes"]}
        for c in containers(w):
            if c["name"] == "exporter":
                continue  # redis_exporter writes nothing
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert "emptyDir" in vols[mounts["/tmp"]], (w["metadata"]["name"], c["name"])


@pytest.mark.parametrize("name", ["hookfan-app", "hookfan-worker"])
def test_multiprocess_metrics_dir_is_an_empty_dir_wiped_at_start(
        defaults: list[dict[str, Any]], name: str) -> None:
    w = one(defaults, "Deployment", name)
    c = hookfan_container(defaults, name)
    env = {e["name"]: e.get("value") for e in c["env"]}
    path = env["PROMETHEUS_MULTIPROC_DIR"]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == path)
    vol = next(v for v in w["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert vol == {"name": mount["name"], "emptyDir": {}}
    # An emptyDir outlives a container restart, so the container itself empties it, then execs,
    # under tini as PID 1 (a command replaces the image's entrypoint, tini included).
    assert c["command"][:4] == ["/usr/bin/tini", "--", "/bin/sh", "-c"]
    script = c["command"][4]
    assert re.search(r'find "\$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete && exec hookfan "\$@"',
                     script)
    assert c["command"][5] == "hookfan"  # $0; args follow as "$@"


@pytest.mark.parametrize("name", HOOKFAN)
def test_probes_hit_the_health_port(defaults: list[dict[str, Any]], name: str) -> None:
    c = hookfan_container(defaults, name)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["health"] == 9557 and ports["metrics"] == 9556
    assert flag(c, "health-addr") == ":9557" and flag(c, "metrics-addr") == ":9556"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert c["startupProbe"]["httpGet"]["port"] == "health"


def test_app_runs_gunicorn_workers_behind_the_intake_service(
        defaults: list[dict[str, Any]]) -> None:
    c = hookfan_container(defaults, "hookfan-app")
    assert c["args"][0] == "app"
    assert flag(c, "workers") == "2" and flag(c, "http-addr") == ":8080"
    svc = one(defaults, "Service", "hookfan")
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "app"
    other = render({"app": {"workers": 9}})
    assert flag(hookfan_container(other, "hookfan-app"), "workers") == "9"


@pytest.mark.parametrize("timeout", [10, 45])
def test_worker_grace_period_outlasts_the_task_time_limit(timeout: int) -> None:
    docs = render({"delivery": {"timeoutSeconds": timeout},
                   "worker": {"concurrency": 7}})
    w = one(docs, "Deployment", "hookfan-worker")
    c = hookfan_container(docs, "hookfan-worker")
    assert flag(c, "delivery-timeout") == f"{timeout}s"
    assert flag(c, "concurrency") == "7"
    limit = DeliverySettings(delivery_timeout=timeout).task_time_limit
    assert w["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > limit


def test_operator_runs_two_replicas_with_leader_election(defaults: list[dict[str, Any]]) -> None:
    w = one(defaults, "Deployment", "hookfan-operator")
    assert w["spec"]["replicas"] == 2
    c = hookfan_container(defaults, "hookfan-operator")
    assert c["args"][0] == "operator"
    assert flag(c, "enable-leader-election") == "true"
    assert flag(c, "watch-all-namespaces") == "true"


def test_redis_is_durable_by_default(defaults: list[dict[str, Any]]) -> None:
    conf = one(defaults, "ConfigMap", "hookfan-redis")["data"]["redis.conf"]
    lines = {ln.split(None, 1)[0]: ln.split(None, 1)[1] for ln in conf.splitlines()
             if ln.strip() and not ln.startswith("#")}
    assert lines["appendonly"] == "yes"
    assert lines["appendfsync"] == "always"
    assert lines["maxmemory-policy"] == "noeviction"
    sts = one(defaults, "StatefulSet", "hookfan-redis")
    (redis_c, _) = containers(sts)
    (start,) = redis_c["args"]
    assert start == ('exec redis-server /etc/redis/redis.conf '
                     '--requirepass "$(cat /etc/hookfan/redis/password)"')
    assert {"name": "data", "mountPath": "/data"} in redis_c["volumeMounts"]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert one(defaults, "Deployment", "hookfan-worker")  # and everybody points at it:
    for name in HOOKFAN:
        env = {e["name"]: e.get("value") for e in hookfan_container(defaults, name)["env"]}
        assert env["HOOKFAN_REDIS_URL"] == "redis://hookfan-redis:6379/0"


def test_eviction_is_never_configured() -> None:
    conf = one(render({}), "ConfigMap", "hookfan-redis")["data"]["redis.conf"]
    assert "maxmemory-policy noeviction" in conf


def test_external_redis_replaces_the_builtin_one(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["external-redis"]
    assert find(docs, "StatefulSet") == [] and find(docs, "NetworkPolicy", "hookfan-redis") == []
    assert find(docs, "Secret", "hookfan-redis-auth") == []
    for name in HOOKFAN:
        c = hookfan_container(docs, name)
        env = {e["name"]: e for e in c["env"]}
        assert env["HOOKFAN_REDIS_URL"]["value"] == "rediss://redis.example.internal:6380/2"
        path = env["HOOKFAN_REDIS_PASSWORD_FILE"]["value"]
        mount = next(m for m in c["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
        vols = one(docs, "Deployment", name)["spec"]["template"]["spec"]["volumes"]
        vol = next(v for v in vols if v["name"] == mount["name"])
        assert vol["secret"]["secretName"] == "redis-creds"
        assert vol["secret"]["items"] == [{"key": "password", "path": path.rsplit("/", 1)[1]}]


def _all_env(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for w in workloads(docs) for c in containers(w) for e in c.get("env", [])]


@pytest.mark.parametrize("scenario", ["defaults", "external-redis", "builtin-redis-with-password",
                                      "flower-existing-secret", "external-redis-tls", "sentinel"])
def test_no_secret_value_in_plain_text_in_a_workload(
        rendered: dict[str, list[dict[str, Any]]], scenario: str) -> None:
    docs = rendered[scenario]
    for e in _all_env(docs):
        if SENSITIVE.search(e["name"]) and not e["name"].endswith("_FILE"):
            assert "value" not in e, e
            assert "secretKeyRef" in e["valueFrom"], e
    for w in workloads(docs):
        for c in containers(w):
            for arg in c.get("args", []) + c.get("command", []):
                assert not re.search(r"://[^/@\s]*:[^/@\s$]+@", arg), arg  # user:pass@ in a URL
                assert "requirepass" not in arg or "$(cat " in arg, arg
    # The Secrets the chart makes itself: their values appear nowhere in any workload.
    text = repr([w for w in workloads(docs)])
    for secret in find(docs, "Secret"):
        for value in secret.get("data", {}).values():
            plain = base64.b64decode(value).decode()
            assert plain not in text and plain.split(":", 1)[-1] not in text


def test_flower_is_optional_authenticated_and_cluster_internal(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert not [d for d in rendered["flower-off"] if "flower" in d["metadata"]["name"]]
    docs = rendered["flower-existing-secret"]
    assert find(docs, "Secret", "hookfan-flower-auth") == []
    (c,) = containers(one(docs, "Deployment", "hookfan-flower"))
    assert c["command"] == ["/usr/bin/tini", "--", "celery"]
    assert c["args"][:3] == ["-b", "$(REDIS_URL)", "flower"]
    env = {e["name"]: e for e in c["env"]}
    assert env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"] == {
        "name": "flower-creds", "key": "auth"}
    svc = one(docs, "Service", "hookfan-flower")
    assert svc["spec"]["type"] == "ClusterIP"
    assert not [i for i in find(docs, "Ingress") if "flower" in repr(i)]


def test_flower_builds_its_broker_url_from_the_secret(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    (c,) = containers(one(rendered["external-redis"], "Deployment", "hookfan-flower"))
    env = {e["name"]: e for e in c["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis-creds", "key": "password"}
    # Kubernetes expands $(REDIS_PASSWORD) from the earlier variable at container start. A
    # rediss:// URL always asks kombu to verify the server (it would otherwise turn checks off).
    assert env["REDIS_URL"]["value"] == \
        "rediss://:$(REDIS_PASSWORD)@redis.example.internal:6380/2?ssl_cert_reqs=required"
    names = [e["name"] for e in c["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL")


@pytest.mark.parametrize("component", ["app", "worker", "operator"])
def test_pod_disruption_budgets_cover_each_component(
        defaults: list[dict[str, Any]], component: str) -> None:
    pdb = one(defaults, "PodDisruptionBudget", f"hookfan-{component}")
    dep = one(defaults, "Deployment", f"hookfan-{component}")
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["maxUnavailable"] == 1


def test_hpa_takes_over_replicas_for_app_and_worker(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert find(rendered["defaults"], "HorizontalPodAutoscaler") == []
    docs = rendered["hpa"]
    for component in ("app", "worker"):
        hpa = one(docs, "HorizontalPodAutoscaler", f"hookfan-{component}")
        assert hpa["spec"]["scaleTargetRef"]["name"] == f"hookfan-{component}"
        assert "replicas" not in one(docs, "Deployment", f"hookfan-{component}")["spec"]


def test_ingress_routes_every_intake_host_to_the_intake_service(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert find(rendered["defaults"], "Ingress") == []
    (ing,) = find(rendered["ingress"], "Ingress")
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == "webhook-receiver.example.com"
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "hookfan", "port": {"name": "http"}}
    assert ing["spec"]["ingressClassName"] == "nginx"


def test_metrics_service_selects_only_pods_with_a_metrics_port(
        defaults: list[dict[str, Any]]) -> None:
    svc = one(defaults, "Service", "hookfan-metrics")
    selector = svc["spec"]["selector"]
    chosen = [w for w in workloads(defaults)
              if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
    assert sorted(w["metadata"]["name"] for w in chosen) == sorted(HOOKFAN)


@pytest.mark.parametrize("scenario", ["defaults", "external-redis", "namespaced",
                                      "external-redis-tls", "external-redis-tls-ca-only",
                                      "sentinel", "sentinel-tls"])
@pytest.mark.parametrize("name", HOOKFAN)
def test_the_cli_accepts_every_flag_and_variable_the_chart_passes(
        rendered: dict[str, list[dict[str, Any]]], scenario: str, name: str,
        tmp_path: Path) -> None:
    from hookfan import cli, config

    c = hookfan_container(rendered[scenario], name)
    env = {e["name"]: e["value"] for e in c["env"] if e["name"].startswith("HOOKFAN_")}
    # The mounted files exist only in the pod: recreate each under tmp_path (the CLI refuses a
    # missing file), keeping the path's shape, so the variables themselves are what is checked.
    pod_files = {}
    for var in [v for v in env if v.endswith("_FILE")]:
        local = tmp_path / env[var].lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text("x\n")
        pod_files[var], env[var] = env[var], str(local)
    try:
        settings = cli.resolve(c["args"], env).settings
    except config.SettingsError as exc:
        pytest.fail(f"hookfan rejects the chart's args for {name}: {c['args']}: {exc}")
    assert settings.health_addr == ("0.0.0.0", 9557)
    assert settings.metrics_addr == ("0.0.0.0", 9556)
    files = {"HOOKFAN_REDIS_PASSWORD_FILE": settings.redis.password_file,
             "HOOKFAN_REDIS_TLS_CA_FILE": settings.redis.tls_ca_file,
             "HOOKFAN_REDIS_TLS_CERT_FILE": settings.redis.tls_cert_file,
             "HOOKFAN_REDIS_TLS_KEY_FILE": settings.redis.tls_key_file,
             "HOOKFAN_VERIFY_KEY_FILE": settings.redis.verify_key_file}
    assert {var: path for var, path in files.items() if path} == {
        var: str(tmp_path / pod.lstrip("/")) for var, pod in pod_files.items()}
    if scenario.startswith(("external-redis-tls", "sentinel-tls")):
        assert settings.redis.tls and settings.redis.ssl_options()
    if scenario.startswith("sentinel"):
        assert settings.redis.sentinel_master == "mymaster"
        assert [h for h, _ in settings.redis.sentinel] == [
            f"redis-node-{i}.redis-headless.redis.svc" for i in range(3)]
    if scenario.startswith("sentinel") and name == "hookfan-app":
        assert settings.intake.min_replicas_ack == 1
