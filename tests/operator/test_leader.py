"""Leader election between two real ``hookfan operator`` processes over a Lease.

The processes talk to the kmock API server (tests/support/kubeapi.py, which adds the PUT with
409-on-stale-resourceVersion that Lease renewal needs) and a real Redis. Each replica's API
client sends its identity as User-Agent, so the server's write log shows who wrote what.
Durations are scaled down (lease 2 s, renew deadline 1.5 s, retry 200 ms). Not covered: clock
skew between nodes (the elector never compares clocks) and network partitions.
"""

from __future__ import annotations

import signal
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from hookfan.devstack import free_port
from hookfan.operator.leader import LeaderElector, LeaseConfig
from hookfan.store import Store
from tests.operator.conftest import OWN_NAMESPACE, K8s, table
from tests.support.kubeapi import KubeServer
from tests.support.procs import HookfanProcess, wait_until

HOST = "hooks.example.com"
LEASE, RETRY = 2.0, 0.2


def status_code(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


class Replica:
    def __init__(self, name: str, redis_url: str, kubeconfig: str, log_dir: Path) -> None:
        self.health = free_port()
        self.proc = HookfanProcess([
            "operator", "--redis-url", redis_url, "--kubeconfig", kubeconfig,
            "--health-addr", f"127.0.0.1:{self.health}", "--enable-leader-election", "true",
            "--leader-election-lease-duration", "2s", "--leader-election-renew-deadline",
            "1500ms", "--leader-election-retry-period", "200ms", "--min-retry-delay", "50ms",
            "--max-retry-delay", "500ms", "--graceful-shutdown-timeout", "3s"],
            log_dir, name, env={"POD_NAMESPACE": OWN_NAMESPACE}).start()

    def ready(self) -> bool:
        return status_code(self.health, "/readyz") == 200

    def published(self) -> int:
        return sum(1 for line in self.proc.log().splitlines()
                   if "route table published" in line)


def lease(kube: KubeServer) -> dict[str, Any]:
    found = [o for o in kube.objects("leases") if o["metadata"]["name"] == "hookfan-operator"]
    return found[0]["spec"] if found else {}


def writers(kube: KubeServer) -> set[str]:
    """The replica pids that wrote statuses or Events."""
    return {ua.split("_")[1] for ua, _, path in kube.api.writers
            if ua.startswith("hookfan-operator/") and ("/status" in path or "events" in path)}


@pytest.fixture
def replicas(redis_url: str, kubeconfig: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    made = [Replica(n, redis_url, kubeconfig, tmp_path) for n in ("op-a", "op-b")]
    yield made
    for r in made:
        r.proc.kill()


@pytest.mark.chaos
def test_only_the_leader_writes_and_a_standby_takes_over_when_it_dies(
        k8s: K8s, kube: KubeServer, replicas: list[Replica], store: Store) -> None:
    wait_until(lambda: all(r.ready() for r in replicas), timeout=20, what="both replicas ready")
    wait_until(lambda: bool(lease(kube).get("holderIdentity")), timeout=5, what="a leader")
    holder = lease(kube)["holderIdentity"]
    leader = next(r for r in replicas if f"_{r.proc.pid}_" in holder)
    standby = next(r for r in replicas if r is not leader)
    k8s.service("one")
    k8s.clone("one", HOST, "one")
    wait_until(lambda: table(store) == {HOST: [("apps/one", "http://10.0.0.1:80")]},
               timeout=5, what="leader published")
    wait_until(lambda: k8s.reason("one") == "ServiceBackendReady", timeout=3, what="status")
    wait_until(lambda: bool(k8s.events("one")), timeout=5, what="the Event for one")
    assert writers(kube) == {str(leader.proc.pid)}
    assert leader.published() >= 1 and standby.published() == 0
    assert status_code(standby.health, "/healthz") == 200

    leader.proc.kill(signal.SIGKILL)
    died = time.monotonic()
    wait_until(lambda: f"_{standby.proc.pid}_" in lease(kube).get("holderIdentity", ""),
               timeout=LEASE + 2 * RETRY + 2, what="standby took over")
    # client-go's rule: the standby counts the lease duration from when it last saw the
    # record change, so takeover comes within one lease duration plus its polling.
    assert time.monotonic() - died <= LEASE + 2 * RETRY + 1.0
    wait_until(lambda: standby.published() >= 1, timeout=5, what="new leader republished")
    k8s.service("two", ip="10.0.0.2")
    k8s.clone("two", HOST, "two")
    wait_until(lambda: table(store) == {HOST: [("apps/one", "http://10.0.0.1:80"),
                                               ("apps/two", "http://10.0.0.2:80")]},
               timeout=5, what="table correct after takeover")
    wait_until(lambda: k8s.reason("two") == "ServiceBackendReady", timeout=3, what="status")
    assert writers(kube) == {str(leader.proc.pid), str(standby.proc.pid)}
    # One Event for one's single transition: the new leader's resync wrote none.
    assert [e[2] for e in k8s.events("one")] == ["ServiceBackendReady"]

    standby.proc.stop()  # SIGTERM: shuts down in time and hands the Lease back
    assert standby.proc.proc is not None and standby.proc.proc.returncode == 0
    assert lease(kube)["holderIdentity"] == ""


def _elector(k8s: K8s) -> tuple[LeaderElector, threading.Event, Any]:
    coord = client.CoordinationV1Api(k8s.api)
    el = LeaderElector(coord, LeaseConfig(OWN_NAMESPACE, "hookfan-operator", "me", LEASE, 1.5,
                                          RETRY))
    stop = threading.Event()
    threading.Thread(target=el.run, args=(stop,), daemon=True).start()
    wait_until(el.is_leader, timeout=3, what="leader")
    return el, stop, coord


def test_leader_that_sees_another_holder_stops_writing_at_once(k8s: K8s) -> None:
    el, stop, coord = _elector(k8s)
    taken = coord.read_namespaced_lease("hookfan-operator", OWN_NAMESPACE)
    taken.spec.holder_identity = "other"
    taken.spec.renew_time = datetime.now(UTC)
    coord.replace_namespaced_lease("hookfan-operator", OWN_NAMESPACE, taken)
    started = time.monotonic()
    wait_until(lambda: not el.is_leader(), timeout=3 * RETRY, what="leadership dropped")
    assert time.monotonic() - started < 1.5  # long before the renew deadline
    stop.set()


def test_leader_that_cannot_renew_stops_by_the_renew_deadline(k8s: K8s,
                                                              kube: KubeServer) -> None:
    el, stop, _ = _elector(k8s)
    kube.stop()  # the API server is gone: renewals fail
    wait_until(lambda: not el.is_leader(), timeout=1.5 + 2 * RETRY, what="leadership dropped")
    stop.set()
