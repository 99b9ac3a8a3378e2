"""Redis through an existing Sentinel deployment (redis.sentinel) and replica-acknowledged 202s
(app.minReplicasAck): every process finds the primary through the Sentinels, the built-in Redis
is gone, and the schema refuses what cannot work.

Strict lint and kubernetes-validate cover the "sentinel" scenarios through SCENARIOS in
chart.py; test_chart_workloads.py runs their variables through hookfan's own CLI. Flower is
plain `celery flower`: the last test runs it, as the chart starts it, against real Sentinels.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import redis
from kombu import Connection

from hookfan import config
from hookfan.devstack import free_port
from tests.support.procs import wait_until
from tests.support.sentinel import MASTER, SentinelRig

from .chart import CHART, SCENARIOS, SENTINEL, chart, containers, find, one, render, render_raw

HOOKFAN = ("hookfan-app", "hookfan-worker", "hookfan-operator", "hookfan-flower")
HOSTS = ",".join(SENTINEL["hosts"])


def env(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (c,) = containers(one(docs, "Deployment", name))
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


@pytest.mark.parametrize("name", HOOKFAN)
def test_every_process_finds_the_primary_through_the_sentinels(
        rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    e = env(rendered["sentinel"], name)
    assert e["HOOKFAN_REDIS_SENTINEL"] == HOSTS
    assert e["HOOKFAN_REDIS_SENTINEL_MASTER"] == "mymaster"
    assert "HOOKFAN_REDIS_SENTINEL" not in env(rendered["defaults"], name)


@pytest.mark.parametrize("scenario", ["sentinel", "sentinel-tls"])
def test_with_sentinel_no_redis_is_deployed(
        rendered: dict[str, list[dict[str, Any]]], scenario: str) -> None:
    docs = rendered[scenario]
    assert find(docs, "StatefulSet") == []
    assert find(docs, "Secret", "hookfan-redis-auth") == []
    assert find(docs, "NetworkPolicy", "hookfan-redis") == []
    assert find(docs, "ConfigMap", "hookfan-redis") == []
    assert [d for d in docs if d["kind"] == "Service" and "redis" in d["metadata"]["name"]] == []
    # The password is the existing Secret's, as for an external Redis; none is generated.
    assert env(docs, "hookfan-app")["HOOKFAN_REDIS_PASSWORD_FILE"] == \
        "/etc/hookfan/redis/password"
    assert env(docs, "hookfan-flower")["REDIS_PASSWORD"]["secretKeyRef"]["name"] == "redis-creds"
    monitored = render({**SCENARIOS[scenario],
                        "monitoring": {"podMonitor": {"enabled": True},
                                       "prometheusRule": {"enabled": True}}})
    (pm,) = find(monitored, "PodMonitor")
    assert [e["port"] for e in pm["spec"]["podMetricsEndpoints"]] == ["metrics"]
    notes = render_raw(SCENARIOS[scenario])["hookfan/templates/NOTES.txt"]
    assert f"through Sentinel {HOSTS}, primary mymaster" in notes
    assert "Back up its AOF" not in notes


def test_the_redis_url_gives_only_database_and_tls(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    # Without redis.external.url: database 0, no TLS; the host (the master name) is not used.
    assert env(rendered["sentinel"], "hookfan-worker")["HOOKFAN_REDIS_URL"] == \
        "redis://mymaster/0"
    tls = env(rendered["sentinel-tls"], "hookfan-worker")
    assert tls["HOOKFAN_REDIS_URL"] == "rediss://ignored.example.internal:6380/2"
    assert tls["HOOKFAN_REDIS_TLS_CA_FILE"] == "/etc/hookfan/redis-tls/ca.crt"


def test_replica_acks_reach_the_app_only(rendered: dict[str, list[dict[str, Any]]]) -> None:
    e = env(rendered["sentinel"], "hookfan-app")
    assert (e["HOOKFAN_MIN_REPLICAS_ACK"], e["HOOKFAN_REPLICA_ACK_TIMEOUT"]) == ("1", "750ms")
    default = env(rendered["defaults"], "hookfan-app")
    assert (default["HOOKFAN_MIN_REPLICAS_ACK"], default["HOOKFAN_REPLICA_ACK_TIMEOUT"]) == \
        ("0", "1s")
    for name in HOOKFAN[1:]:
        assert "HOOKFAN_MIN_REPLICAS_ACK" not in env(rendered["sentinel"], name)


@pytest.mark.parametrize("values", [
    {"app": {"minReplicasAck": 1}},
    {"app": {"minReplicasAck": 2}, "redis": {"sentinel": {"enabled": False,
                                                          "hosts": ["s:26379"],
                                                          "masterName": "m"}}},
], ids=["built-in-redis", "sentinel-off"])
def test_replica_acks_without_replicas_are_refused(values: dict[str, Any]) -> None:
    # The built-in Redis has no replica: every request would be answered 503.
    with pytest.raises(helm_python.HelmValuesError, match="redis/sentinel/enabled"):
        chart().validate_schema(values)
    with pytest.raises(helm_python.HelmValuesError):
        render(values)


@pytest.mark.parametrize("values", [
    SCENARIOS["sentinel"],
    {"app": {"minReplicasAck": 1}, "redis": {"external": {"url": "redis://primary:6379/0"}}},
    {"app": {"minReplicasAck": 0}},
], ids=["sentinel", "external-redis", "off"])
def test_replica_acks_are_accepted_where_replicas_may_be(values: dict[str, Any]) -> None:
    chart().validate_schema(values)
    render(values)


@pytest.mark.parametrize("sentinel", [
    {"enabled": True, "masterName": "mymaster"},
    {"enabled": True, "hosts": ["s0:26379"]},
    {"enabled": True, "hosts": [], "masterName": "mymaster"},
    {"enabled": True, "hosts": ["s0"], "masterName": "mymaster"},
    {"enabled": True, "hosts": ["s0:26379,s1:26379"], "masterName": "mymaster"},
    {"enabled": True, "hosts": ["redis://s0:26379"], "masterName": "mymaster"},
    {"enabled": True, "hosts": ["s0:26379"], "masterName": "my master"},
    {"enabled": "true", "hosts": ["s0:26379"], "masterName": "mymaster"},
    {"enabled": True, "hosts": ["s0:26379"], "masterName": "m", "port": 26379},
], ids=["no-hosts", "no-master", "empty-hosts", "no-port", "comma-list", "url", "space",
        "string-bool", "unknown-key"])
def test_schema_refuses_sentinel_values_that_cannot_work(sentinel: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        chart().validate_schema({"redis": {"sentinel": sentinel}})


def test_every_host_the_schema_accepts_is_one_hookfan_parses() -> None:
    hosts = ["s0:26379", "10.0.0.7:26379", "[fd00::1]:26379",
             "redis-node-0.redis-headless.redis.svc.cluster.local:26379"]
    chart().validate_schema({"redis": {"sentinel": {**SENTINEL, "hosts": hosts}}})
    assert len(config.parse_sentinels(",".join(hosts))) == len(hosts)


DURATIONS = ["1s", "1.5s", "1.50s", "0.5s", ".25s", "1.49s", "250ms", "1500ms", "1ms",
             "1.6s", "1.51s", "2s", "1501ms", "0s", "0ms", "1m", "soon", "1"]


@pytest.mark.parametrize("timeout", DURATIONS)
def test_schema_takes_exactly_the_replica_ack_timeouts_hookfan_takes(timeout: str) -> None:
    try:
        hookfan_takes = 0 < config.parse_duration(timeout) <= config.MAX_REPLICA_ACK_TIMEOUT
    except ValueError:
        hookfan_takes = False
    values = {"app": {"replicaAckTimeout": timeout}}
    if hookfan_takes:
        chart().validate_schema(values)
    else:
        with pytest.raises(helm_python.HelmValuesError):
            chart().validate_schema(values)


def flower(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = containers(one(docs, "Deployment", "hookfan-flower"))
    return c


def test_flower_reads_the_master_name_from_the_mounted_celery_config(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["sentinel"]
    c = flower(docs)
    assert c["args"][:5] == ["-b", "$(REDIS_URL)", "--workdir=/etc/hookfan/flower",
                             "--config=flower_sentinel", "flower"]
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/etc/hookfan/flower"]
    assert mount["readOnly"] is True
    volumes = one(docs, "Deployment", "hookfan-flower")["spec"]["template"]["spec"]["volumes"]
    (vol,) = [v for v in volumes if v["name"] == mount["name"]]
    cm = one(docs, "ConfigMap", vol["configMap"]["name"])
    assert cm["data"]["flower_sentinel.py"] == \
        (CHART / "files" / "flower_sentinel.py").read_text()
    # Without Sentinel Flower is started as before and no ConfigMap is made.
    assert flower(rendered["defaults"])["args"][:3] == ["-b", "$(REDIS_URL)", "flower"]
    assert find(rendered["defaults"], "ConfigMap", "hookfan-flower-sentinel") == []


def broker_url(docs: list[dict[str, Any]], password: str = "pw") -> str:
    url = env(docs, "hookfan-flower")["REDIS_URL"]
    return str(url).replace("$(REDIS_PASSWORD)", password)


def celery_config(url: str, master: str) -> dict[str, Any]:
    """The settings flower_sentinel.py gives Celery, in the environment `celery -b URL` makes."""
    code = (CHART / "files" / "flower_sentinel.py").read_text()
    namespace: dict[str, Any] = {}
    saved = dict(os.environ)
    os.environ.update(CELERY_BROKER_URL=url, HOOKFAN_REDIS_SENTINEL_MASTER=master)
    try:
        exec(compile(code, "flower_sentinel.py", "exec"), namespace)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {k: v for k, v in namespace.items() if k.startswith("broker_")}


@pytest.mark.parametrize("scenario, ssl_options", [
    ("sentinel", {}),
    ("sentinel-tls", {"ssl_cert_reqs": ssl.CERT_REQUIRED,
                      "ssl_ca_certs": "/etc/hookfan/redis-tls/ca.crt",
                      "ssl_certfile": "/etc/hookfan/redis-tls/tls.crt",
                      "ssl_keyfile": "/etc/hookfan/redis-tls/tls.key"}),
])
def test_flowers_broker_is_every_sentinel_with_password_database_and_tls(
        rendered: dict[str, list[dict[str, Any]]], scenario: str,
        ssl_options: dict[str, Any]) -> None:
    url = broker_url(rendered[scenario])
    conn = Connection(url)
    assert conn.transport_cls == "sentinel"
    # kombu re-reads password, database and TLS from the URL of the Sentinel it switches to
    # when one is down: each carries them.
    assert [u.split("@", 1)[1].split("/", 1)[0] for u in conn.alt] == SENTINEL["hosts"]
    db = "2" if scenario == "sentinel-tls" else "0"
    for alternate in conn.alt:
        conn.switch(alternate)
        assert (conn.password, conn.virtual_host, dict(conn.ssl or {})) == ("pw", db, ssl_options)
    settings = celery_config(url, "mymaster")
    assert settings["broker_transport_options"] == {"master_name": "mymaster"}
    assert settings.get("broker_use_ssl", {}) == ssl_options


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[SentinelRig]:
    r = SentinelRig(tmp_path / "rig", replicas=1, password="s3cret").start()
    yield r
    r.stop()


def test_flower_as_the_chart_starts_it_follows_the_primary_through_sentinel(
        rig: SentinelRig, tmp_path: Path) -> None:
    """`celery ... flower` with the chart's arguments, URL and mounted file, against a primary,
    a replica and three Sentinels: its queue view and its event consumer reach the primary,
    and after a failover the new one."""
    values = {**SCENARIOS["sentinel"], "redis": {**SCENARIOS["sentinel"]["redis"], "sentinel": {
        "enabled": True, "masterName": MASTER,
        "hosts": [f"127.0.0.1:{s.port}" for s in rig.sentinels]}}}
    docs = render(values)
    c = flower(docs)
    workdir = tmp_path / "flower"
    workdir.mkdir()
    cm = one(docs, "ConfigMap", "hookfan-flower-sentinel")
    (workdir / "flower_sentinel.py").write_text(cm["data"]["flower_sentinel.py"])
    args = [a.replace("/etc/hookfan/flower", str(workdir)) for a in c["args"]]
    args = [a.replace("$(REDIS_URL)", broker_url(docs, "s3cret")) for a in args]
    port = free_port()
    args += [f"--port={port}", "--address=127.0.0.1"]
    proc_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                "FLOWER_BASIC_AUTH": "admin:test-only",
                "HOOKFAN_REDIS_SENTINEL_MASTER": env(docs, "hookfan-flower")[
                    "HOOKFAN_REDIS_SENTINEL_MASTER"]}
    celery = Path(sys.executable).with_name("celery")
    proc = subprocess.Popen([str(celery), *args], env=proc_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for messages in (3, 5):
            primary = redis.Redis(port=rig.primary().port, password="s3cret", db=0)
            primary.delete("celery")
            primary.lpush("celery", *range(messages))
            wait_until(lambda p=primary: _flower_consumes(p), timeout=30,
                       what="Flower's event consumer on the primary", interval=0.2)
            wait_until(lambda n=messages: _queue_length(port) == n, timeout=30,
                       what="Flower to count the primary's queue", interval=0.2)
            if messages == 3:
                rig.failover()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _flower_consumes(primary: redis.Redis) -> bool:
    """Whether a client of database 0 listens to Celery's events (Flower's kombu consumer)."""
    return any(str(c.get("db")) == "0" and c.get("cmd") == "psubscribe"
               for c in primary.client_list())


def _queue_length(port: int) -> int | None:
    """The length of Celery's default queue as Flower's API reports it; None while Flower
    does not answer."""
    auth = base64.b64encode(b"admin:test-only").decode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/queues/length",
                                 headers={"Authorization": f"Basic {auth}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            (queue,) = json.load(resp)["active_queues"]
    except OSError:
        return None
    assert queue["name"] == "celery"
    return int(queue["messages"])


@pytest.mark.parametrize("scenario", ["sentinel", "sentinel-tls"])
def test_flower_watches_the_broker_the_worker_uses(
        rendered: dict[str, list[dict[str, Any]]], scenario: str, tmp_path: Path) -> None:
    """The worker builds its broker from the same variables (hookfan.worker.celeryapp):
    Flower's URL and transport options lead to the same Sentinels, master, database, password
    and TLS options."""
    from hookfan import cli
    from hookfan.worker.celeryapp import celery_config as worker_config

    docs = rendered[scenario]
    (c,) = containers(one(docs, "Deployment", "hookfan-worker"))
    variables = {k: v for k, v in env(docs, "hookfan-worker").items() if k.startswith("HOOKFAN_")}
    for var in [v for v in variables if v.endswith("_FILE")]:
        local = tmp_path / str(variables[var]).lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text("pw\n" if var == "HOOKFAN_REDIS_PASSWORD_FILE" else "x\n")
        variables[var] = str(local)
    worker = worker_config(cli.resolve(c["args"], variables).settings)
    flower_url = broker_url(docs)
    flower_settings = celery_config(flower_url, str(env(docs, "hookfan-flower")[
        "HOOKFAN_REDIS_SENTINEL_MASTER"]))
    assert flower_settings["broker_transport_options"] == worker["broker_transport_options"]

    def seen(url: str, use_ssl: dict[str, Any] | None) -> list[tuple[Any, ...]]:
        conn = Connection(url, ssl=use_ssl or False)
        out = []
        for alternate in conn.alt:
            conn.switch(alternate)
            out.append((conn.transport_cls, conn.hostname, conn.port, conn.password,
                        conn.virtual_host or "0"))
        return out

    assert seen(flower_url, None) == seen(worker["broker_url"], worker["broker_use_ssl"])
    # The same TLS options; the worker's files are under tmp_path here, in the pod both are
    # the mounted /etc/hookfan/redis-tls.
    theirs = {k: str(v).replace(str(tmp_path), "")
              for k, v in (worker["broker_use_ssl"] or {}).items()}
    assert {k: str(v) for k, v in flower_settings.get("broker_use_ssl", {}).items()} == theirs
