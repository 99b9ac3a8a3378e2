"""docs/install.md, "High availability: Redis with Sentinel", checked against what it describes:
the Redis configuration it gives runs in a real redis-server with the settings hookfan demands,
hookfan's values render with Sentinel in every process and name the Redis chart's Sentinels,
and the failover recipe names services and the master of compose.ha.yaml."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from hookfan.devstack import free_port, redis_server_binary
from hookfan.durability import unsafe_settings
from tests.support.procs import wait_until

from .chart import ROOT, chart, containers, find, one, render
from .test_compose_ha import model, monitored
from .test_install_docs import section, shell_blocks

TITLE = "High availability: Redis with Sentinel"


def yaml_blocks() -> list[dict[str, Any]]:
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section(TITLE), re.S)]


def redis_values() -> dict[str, Any]:
    (values,) = [b for b in yaml_blocks() if "commonConfiguration" in b]
    return values


def hookfan_values() -> dict[str, Any]:
    (values,) = [b for b in yaml_blocks() if "redis" in b]
    return values


def redis_conf() -> dict[str, str]:
    lines = [ln.split(None, 1) for ln in redis_values()["commonConfiguration"].splitlines()
             if ln.strip() and not ln.startswith("#")]
    return {k: v.strip('"') for k, v in lines}


@pytest.fixture
def documented_redis(tmp_path: Path) -> Iterator[redis.Redis]:
    """A redis-server started with the documented configuration (port and directory added)."""
    port = free_port()
    conf = tmp_path / "redis.conf"
    conf.write_text(redis_values()["commonConfiguration"]
                    + f"\nport {port}\nbind 127.0.0.1\ndir {tmp_path}\n")
    proc = subprocess.Popen([redis_server_binary(), str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, decode_responses=True, socket_timeout=2)

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
    try:
        wait_until(up, timeout=10, what="redis-server with the documented configuration")
        yield client
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_the_documented_configuration_runs_with_every_setting_hookfan_needs(
        documented_redis: redis.Redis) -> None:
    live = documented_redis.config_get("*")
    assert unsafe_settings(live) == []
    assert live["min-replicas-to-write"] == "1"
    assert int(live["maxmemory"]) > 0
    # Every line of the documented configuration took effect as written.
    for name, value in redis_conf().items():
        if name != "maxmemory":
            assert live[name] == value, name


def test_the_redis_chart_values_name_what_hookfan_needs() -> None:
    values = redis_values()
    assert values["architecture"] == "replication"
    assert values["sentinel"]["enabled"] is True
    assert values["auth"]["enabled"] is True
    assert values["auth"]["sentinel"] is False  # hookfan asks the Sentinels without a password
    assert values["sentinel"]["quorum"] == values["replica"]["replicaCount"] // 2 + 1
    assert values["replica"]["replicaCount"] >= 3  # a primary and two replicas


def test_hookfans_values_render_with_sentinel_in_every_process() -> None:
    values = hookfan_values()
    chart().validate_schema(values)
    docs = render(values)
    assert find(docs, "StatefulSet") == []
    for name in ("hookfan-app", "hookfan-worker", "hookfan-operator", "hookfan-flower"):
        (c,) = containers(one(docs, "Deployment", name))
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["HOOKFAN_REDIS_SENTINEL"] == ",".join(values["redis"]["sentinel"]["hosts"])
    (app,) = containers(one(docs, "Deployment", "hookfan-app"))
    assert {e["name"]: e.get("value") for e in app["env"]}["HOOKFAN_MIN_REPLICAS_ACK"] == "1"


def test_hookfans_values_point_at_the_redis_charts_sentinels() -> None:
    """Release `redis` in namespace `redis` (the documented install): its node pods are
    redis-node-N behind the headless Service redis-headless, Sentinel on 26379."""
    redis_chart, mine = redis_values(), hookfan_values()["redis"]
    install = re.search(r"helm install (\S+) \S+ \\\n#\s+-n (\S+)", section(TITLE))
    assert install, "the documented helm install of the Redis chart is gone"
    release, namespace = install.groups()
    nodes = redis_chart["replica"]["replicaCount"]
    assert mine["sentinel"]["hosts"] == [
        f"{release}-node-{i}.{release}-headless.{namespace}.svc.cluster.local:26379"
        for i in range(nodes)]
    assert mine["sentinel"]["masterName"] == redis_chart["sentinel"]["masterSet"]
    assert mine["auth"]["existingSecret"] == redis_chart["auth"]["existingSecret"]
    assert mine["auth"]["key"] == redis_chart["auth"]["existingSecretPasswordKey"]


def test_the_failover_recipe_names_compose_ha_services_and_master() -> None:
    recipe = "\n".join(shell_blocks(section(TITLE)))
    (files,) = re.findall(r"export COMPOSE_FILE=(\S+)", recipe)
    assert files.split(":") == ["compose.yaml", "compose.ha.yaml"]
    assert all((ROOT / f).is_file() for f in files.split(":"))
    services = set(model()["services"])
    used = []
    for line in recipe.splitlines():
        words = shlex.split(line) if line.startswith("docker compose ") else []
        if len(words) > 3 and words[2] in ("exec", "kill", "start", "logs"):
            used.append(words[3])
            if "get-master-addr-by-name" in words:
                assert words[-1] == monitored()[0]
    assert {"redis-primary", "sentinel-1", "app"} <= set(used)
    assert set(used) <= services
