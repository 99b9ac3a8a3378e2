"""Every Lua script runs on a Redis Cluster of three real primaries when hookfan's keys carry
one hash tag (``HOOKFAN_KEY_PREFIX={hookfan}:``): each goes through its own code path (accept,
resolve, dispatch, settle, the dead-letter verbs) and none crosses slots. With the default
prefix the same run is refused (CROSSSLOT), which is why the tag is needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hookfan.devstack import free_port, redis_server_binary

ROOT = Path(__file__).resolve().parents[2]
SLOTS = 16384


def start_node(d: Path) -> tuple[int, subprocess.Popen[bytes]]:
    """A cluster-enabled redis-server answering on a free port (another port if the one picked
    was taken meanwhile: the server then exits at once)."""
    for _ in range(5):
        port = free_port()
        log = open(d / f"redis-{port}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", str(d / f"nodes-{port}.conf"),
             "--dir", str(d), "--save", "", "--appendonly", "no"],
            stdout=log, stderr=subprocess.STDOUT)
        node = redis.Redis(port=port)
        wait(lambda p=proc, n=node: p.poll() is not None or ping(n),
             "node answering or exiting")
        if proc.poll() is None:
            return port, proc
    raise AssertionError(f"no cluster node would start; see {d}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    d = tmp_path_factory.mktemp("cluster")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = []
        for _ in range(3):
            port, proc = start_node(d)
            ports.append(port)
            procs.append(proc)
        nodes = [redis.Redis(port=p) for p in ports]
        # What `redis-cli --cluster create` does for three primaries: a third of the slots
        # each, then every node meets the first.
        step = SLOTS // 3
        for i, n in enumerate(nodes):
            last = SLOTS - 1 if i == 2 else (i + 1) * step - 1
            n.execute_command("CLUSTER", "ADDSLOTSRANGE", i * step, last)
        for p in ports[1:]:
            nodes[0].execute_command("CLUSTER", "MEET", "127.0.0.1", p)
        for n in nodes:
            wait(lambda n=n: b"cluster_state:ok" in n.execute_command("CLUSTER", "INFO")
                 and n.execute_command("CLUSTER", "INFO").count(b"cluster_known_nodes:3"),
                 "cluster state ok on every node")
        yield ports
    finally:
        for p in procs:
            p.kill()
            p.wait()


def ping(node: redis.Redis) -> bool:
    try:
        return bool(node.ping())
    except redis.ConnectionError:
        return False


def wait(check, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def run_scripts(port: int, prefix: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HOOKFAN_KEY_PREFIX"}
    if prefix is not None:
        env["HOOKFAN_KEY_PREFIX"] = prefix
    out = subprocess.run([sys.executable, "-m", "tests.support.cluster_scripts", str(port)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result: dict[str, str] = json.loads(out.stdout)
    return result


SCRIPTS = ("accept", "resolve", "dispatch", "settle", "settle (outcome: dead letter)",
           "dlpage", "dlcount", "replay", "settle (replayed copy)",
           "settle (outcome: dead letter again)", "purge", "pause", "resume")


def test_every_script_runs_on_a_three_primary_cluster_with_the_hash_tag(cluster):
    got = run_scripts(cluster[0], "{hookfan}:")
    assert {s: got[s] for s in SCRIPTS} == {s: "ok" for s in SCRIPTS}
    # The copy for A was claimed, dead-lettered, listed, replayed, claimed again and purged.
    assert got["copies dead-lettered, replayed, purged"] == "(1, 1, 1)"
    slot = redis.Redis(port=cluster[0]).execute_command("CLUSTER", "KEYSLOT", "{hookfan}:x")
    assert got["slots"] == f"[{slot}]"  # every key hookfan wrote is in the tag's one slot


def test_without_the_tag_the_scripts_cross_slots(cluster):
    got = run_scripts(cluster[1], None)
    # redis-py's cluster client refuses it before sending (Redis would answer CROSSSLOT).
    assert "same key slot" in got["accept"], got["accept"]
