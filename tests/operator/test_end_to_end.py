"""A RequestClone and a Service created through the API route a webhook to a real backend.

Real processes: ``hookfan operator`` (Kubernetes source, against the kmock API server of
tests/support/kubeapi.py), the app under gunicorn and a Celery worker, on a real Redis. The
Service's clusterIP is 127.0.0.1 so the backend is reachable without a cluster network; that
stands in for kube-proxy, which cannot run here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests

from hookfan.devstack import free_port
from tests.operator.conftest import OWN_NAMESPACE, K8s
from tests.operator.test_leader import status_code
from tests.support.backends import RecordingBackend
from tests.support.procs import HookfanProcess, Stack, wait_until

HOST = "e2e.example.com"


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(redis_url, tmp_path / "routes", tmp_path / "logs")
    yield s
    s.stop()


def test_webhook_reaches_the_backend_named_by_a_requestclone(
        k8s: K8s, kubeconfig: str, stack: Stack, redis_url: str,
        make_backend: Callable[..., RecordingBackend]) -> None:
    backend = make_backend()
    health = free_port()
    op = HookfanProcess(["operator", "--redis-url", redis_url, "--kubeconfig", kubeconfig,
                         "--health-addr", f"127.0.0.1:{health}"], stack.log_dir, "operator",
                        env={"POD_NAMESPACE": OWN_NAMESPACE}).start()
    stack.procs["operator"] = op
    wait_until(lambda: status_code(health, "/readyz") == 200, timeout=20, what="operator ready")
    k8s.service("receiver", ip="127.0.0.1", port=backend.port)
    k8s.clone("receiver", HOST, "receiver")
    r = redis.Redis.from_url(redis_url)
    wait_until(lambda: HOST.encode() in (r.get("hookfan:routes") or b""), timeout=5,
               what="route published")
    stack.start_app()
    stack.start_worker()
    resp = requests.post(f"{stack.url}/hook?x=1", data=b'{"event": "push"}',
                         headers={"Host": HOST, "Content-Type": "application/json"}, timeout=5)
    assert resp.status_code == 202
    got = backend.wait_for(1, timeout=30)
    assert (got[0].method, got[0].path, got[0].body) == ("POST", "/hook?x=1",
                                                         b'{"event": "push"}')
    assert k8s.reason("receiver") == "ServiceBackendReady"
