"""compose.ha.yaml: compose.yaml's stack on a primary, a replica and three Sentinels, every
hookfan process finding the primary through them, 202 only once the replica has the request.

Checked like compose.yaml (test_compose.py): the Compose binary parses, interpolates and
validates the two files; no Docker engine runs here. The Redis and Sentinel command lines the
file gives its containers are then run as real redis-server processes (service names replaced
by localhost, ports by free ones), and their failover is watched.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection

from hookfan import cli
from hookfan.devstack import free_port, redis_server_binary
from tests.support.procs import wait_until

from .chart import CHART, ROOT
from .test_compose import COMPOSE_FILE, run_compose_files

HA_FILE = ROOT / "compose.ha.yaml"
NODES = ("redis-primary", "redis-replica")
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
HOOKFAN = ("operator", "app", "worker")


@cache
def model() -> dict[str, Any]:
    done = run_compose_files([COMPOSE_FILE, HA_FILE], "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def services() -> dict[str, Any]:
    found: dict[str, Any] = model()["services"]
    return found


def sentinel_config(name: str) -> list[str]:
    """The sentinel.conf lines the Sentinel's start script writes (its first start)."""
    script = services()[name]["command"][2].replace("$$", "$")
    out = subprocess.run(["sh", "-c", script.split(" > /data/sentinel.conf")[0].split(" || ")[1]],
                         capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", **services()[name]["environment"]})
    return out.stdout.splitlines()


def monitored() -> tuple[str, str, int, int]:
    """(master name, host, port, quorum) of `sentinel monitor` (the same in every Sentinel)."""
    lines = {tuple(ln for ln in sentinel_config(s) if ln.startswith("sentinel monitor "))
             for s in SENTINELS}
    ((line,),) = lines
    _, _, name, host, port, quorum = line.split()
    return name, host, int(port), int(quorum)


def test_config_quiet_accepts_the_files_and_still_wants_a_flower_login() -> None:
    done = run_compose_files([COMPOSE_FILE, HA_FILE], "config", "--quiet")
    assert done.returncode == 0, done.stderr
    refused = run_compose_files([COMPOSE_FILE, HA_FILE], "config", "--quiet",
                                env={"FLOWER_BASIC_AUTH": ""})
    assert refused.returncode != 0 and "FLOWER_BASIC_AUTH" in refused.stderr


def test_a_primary_a_replica_and_three_sentinels_replace_the_bundled_redis() -> None:
    assert set(services()) == {*NODES, *SENTINELS, *HOOKFAN, "flower",
                               "webhook-receiver-app-1", "webhook-receiver-app-2"}
    for name, svc in services().items():
        assert "redis" not in (svc.get("depends_on") or {}), name
        assert svc.get("healthcheck", {}).get("test"), name
        assert svc.get("restart") == "unless-stopped", name
    cmd = services()["redis-replica"]["command"]
    assert cmd[cmd.index("--replicaof") + 1:cmd.index("--replicaof") + 3] == \
        ["redis-primary", "6379"]
    name, host, port, quorum = monitored()
    assert (host, port) == ("redis-primary", 6379)
    assert quorum == len(SENTINELS) // 2 + 1  # a majority: one Sentinel alone cannot fail over


def test_published_ports_are_still_the_apps_and_flowers_on_loopback() -> None:
    published = [(name, p) for name, svc in services().items() for p in svc.get("ports", [])]
    assert {name for name, _ in published} == {"app", "flower"}
    assert all(p.get("host_ip") == "127.0.0.1" for _, p in published)


@pytest.mark.parametrize("node", NODES)
def test_every_redis_node_is_as_durable_as_the_bundled_one(node: str) -> None:
    # Either node may become the primary, so both need what the primary needs.
    cmd = services()[node]["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--appendfsync") + 1] == "always"
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"
    assert cmd[cmd.index("--maxmemory") + 1] == "512mb"
    # It announces its service name, which stays valid when its address changes.
    assert cmd[cmd.index("--replica-announce-ip") + 1] == node
    (vol,) = services()[node]["volumes"]
    assert vol["type"] == "volume" and vol["target"] == "/data"


def test_each_sentinel_announces_itself_and_keeps_its_state() -> None:
    sources = set()
    for name in SENTINELS:
        conf = sentinel_config(name)
        assert f"sentinel announce-ip {name}" in conf
        assert "sentinel resolve-hostnames yes" in conf
        assert conf.index("sentinel resolve-hostnames yes") < \
            next(i for i, ln in enumerate(conf) if ln.startswith("sentinel monitor"))
        (vol,) = services()[name]["volumes"]
        assert vol["type"] == "volume" and vol["target"] == "/data"
        sources.add(vol["source"])
        # Created only if missing: a restarted Sentinel keeps the primary it learnt.
        assert services()[name]["command"][2].startswith("test -f /data/sentinel.conf || ")
    assert len(sources) == len(SENTINELS)


@pytest.mark.parametrize("service", HOOKFAN)
def test_hookfan_processes_find_the_primary_through_every_sentinel(service: str) -> None:
    svc = services()[service]
    env = {k: v for k, v in svc["environment"].items() if k.startswith("HOOKFAN_")}
    settings = cli.resolve(svc["command"], env).settings
    master, _, _, _ = monitored()
    assert settings.redis.sentinel_master == master
    port = int(sentinel_config("sentinel-1")[0].split()[1])
    assert settings.redis.sentinel == tuple((s, port) for s in SENTINELS)
    assert settings.intake.min_replicas_ack == (1 if service == "app" else 0)
    assert set(svc["depends_on"]) >= set(SENTINELS)
    assert all(d["condition"] == "service_healthy" for d in svc["depends_on"].values())


def test_flower_reaches_the_primary_through_the_sentinels() -> None:
    flower = services()["flower"]
    cmd = flower["command"]
    assert cmd[0] == "-b" and cmd[2:5] == ["--workdir=/etc/hookfan/flower",
                                           "--config=flower_sentinel", "flower"]
    conn = Connection(cmd[1])
    assert conn.transport_cls == "sentinel"
    port = int(sentinel_config("sentinel-1")[0].split()[1])
    assert [u.removeprefix("sentinel://").split("/")[0] for u in conn.alt] == \
        [f"{s}:{port}" for s in SENTINELS]
    assert flower["environment"]["HOOKFAN_REDIS_SENTINEL_MASTER"] == monitored()[0]
    (mount,) = flower["volumes"]
    assert Path(mount["source"]) == CHART / "files" / "flower_sentinel.py"
    assert mount["target"] == "/etc/hookfan/flower/flower_sentinel.py" and mount["read_only"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "admin:test-only"  # compose.yaml's rule


class Stack:
    """compose.ha.yaml's Redis nodes and Sentinels as local processes: each service's command,
    its service names replaced by localhost and its ports by free ones."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.ports = {name: free_port() for name in (*NODES, *SENTINELS)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _local(self, text: str, name: str) -> str:
        for other in (*NODES, *SENTINELS):
            text = text.replace(other, "localhost")
        return text.replace("6379", str(self.ports["redis-primary"]))

    def start_node(self, name: str) -> None:
        cmd = [self._local(a, name) for a in services()[name]["command"]]
        (self.base / name).mkdir(parents=True)
        cmd[0] = redis_server_binary()
        cmd += ["--port", str(self.ports[name]), "--dir", str(self.base / name),
                "--bind", "127.0.0.1"]
        self.procs[name] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)

    def start_sentinel(self, name: str) -> None:
        conf = [self._local(ln, name) for ln in sentinel_config(name)]
        conf[0] = f"port {self.ports[name]}"
        directory = self.base / name
        directory.mkdir(parents=True)
        (directory / "sentinel.conf").write_text("\n".join([*conf, f"dir {directory}", ""]))
        self.procs[name] = subprocess.Popen(
            [redis_server_binary(), str(directory / "sentinel.conf"), "--sentinel"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def client(self, name: str) -> redis.Redis:
        return redis.Redis(port=self.ports[name], socket_timeout=1, socket_connect_timeout=1)

    def primary_port(self, sentinel: str) -> int | None:
        try:
            addr = self.client(sentinel).sentinel_get_master_addr_by_name(monitored()[0])
        except redis.RedisError:
            return None
        return int(addr[1]) if addr else None

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    yield s
    s.stop()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_its_sentinels_promote_the_replica_when_the_primary_is_killed(stack: Stack) -> None:
    for node in NODES:
        stack.start_node(node)
        wait_until(lambda n=node: _answers(stack.client(n)), timeout=10, what=node)
    replica = stack.client("redis-replica")
    wait_until(lambda: replica.info("replication")["master_link_status"] == "up", timeout=20,
               what="the replica in sync")
    for s in SENTINELS:
        stack.start_sentinel(s)
    # Every Sentinel knows the replica and the two others before the primary dies.
    def ready() -> bool:
        try:
            states = [stack.client(s).sentinel_master(monitored()[0]) for s in SENTINELS]
        except redis.RedisError:
            return False
        return all(int(st["num-slaves"]) == 1 and int(st["num-other-sentinels"]) == 2
                   for st in states)
    wait_until(ready, timeout=30, what="Sentinels that know each other", interval=0.2)
    assert {stack.primary_port(s) for s in SENTINELS} == {stack.ports["redis-primary"]}
    stack.procs["redis-primary"].kill()
    # down-after-milliseconds (5 s) plus the election.
    wait_until(lambda: {stack.primary_port(s) for s in SENTINELS}
               == {stack.ports["redis-replica"]}, timeout=60,
               what="the replica promoted", interval=0.2)
    wait_until(lambda: replica.info("replication")["role"] == "master", timeout=10,
               what="the replica to say it is the primary")
    assert replica.set("written-after-failover", 1)  # AOF always, noeviction: it takes writes
    assert replica.config_get("appendfsync") == {"appendfsync": "always"}
