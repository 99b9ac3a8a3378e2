"""Unsafe kubeconfigs are refused unless a flag accepts them; the API call rate is bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from hookfan.operator.kubeclient import KubeConfigError, RateLimit, api_client
from tests.support.kubeapi import KubeServer


def test_exec_plugin_is_refused_unless_allowed(kube: KubeServer, tmp_path: Path) -> None:
    plugin = {"command": "get-token", "apiVersion": "client.authentication.k8s.io/v1"}
    path = kube.kubeconfig(tmp_path / "kc", user={"exec": plugin})
    with pytest.raises(KubeConfigError, match="--insecure-kubeconfig-exec"):
        api_client(path)


def test_tls_verification_off_is_refused_unless_allowed(kube: KubeServer, tmp_path: Path) -> None:
    path = kube.kubeconfig(tmp_path / "kc", cluster={"insecure-skip-tls-verify": True})
    with pytest.raises(KubeConfigError, match="--insecure-kubeconfig-tls"):
        api_client(path)
    assert api_client(path, allow_insecure_tls=True) is not None


def test_no_cluster_and_no_kubeconfig_names_the_fix() -> None:
    with pytest.raises(KubeConfigError, match="--kubeconfig"):
        api_client(None)


def test_rate_limit_allows_a_burst_then_the_qps() -> None:
    now = [0.0]
    limit = RateLimit(qps=10, burst=3, clock=lambda: now[0])
    assert [limit.delay() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limit.delay() == pytest.approx(0.1)
    now[0] = 1.0
    assert limit.delay() == 0.0
