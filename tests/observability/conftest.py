"""An observed stack: operator (file source), app and worker as real processes on a real Redis,
each serving ``/metrics`` and ``/healthz``/``/readyz`` on ports of their own, logging JSON."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from hookfan.devstack import free_port
from tests.operator.conftest import k8s, kube, kubeconfig, run_operator  # noqa: F401
from tests.support.procs import HookfanProcess, Stack, port_open, wait_until

PROCESSES = ("operator", "app", "worker")


class ObservedStack(Stack):
    """:class:`Stack` whose processes serve metrics and health, and whose operator writes
    figures every 200 ms."""

    def __init__(self, redis_url: str, routes_dir: Path, log_dir: Path,
                 env: dict[str, str] | None = None) -> None:
        super().__init__(redis_url, routes_dir, log_dir, env=env)
        self.metrics_port = {p: free_port() for p in PROCESSES}
        self.health_port = {p: free_port() for p in PROCESSES}
        self.app_args = ["--log-level", "debug"]
        self.worker_args = ["--log-level", "debug"]

    def _spawn(self, name: str, args: list[str]) -> HookfanProcess:
        kind = name if name in PROCESSES else "worker"
        extra = ["--metrics-addr", f"127.0.0.1:{self.metrics_port[kind]}",
                 "--health-addr", f"127.0.0.1:{self.health_port[kind]}"]
        if kind == "operator":
            extra += ["--status-interval", "200ms", "--log-level", "debug"]
        return super()._spawn(name, [*args, *extra])

    def start(self) -> ObservedStack:
        super().start()
        for p in PROCESSES:
            wait_until(lambda p=p: port_open(self.metrics_port[p]), what=f"{p} metrics")
        return self

    def scrape(self, process: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        """``{sample name: {sorted labels: value}}`` from one process's ``/metrics``."""
        text = requests.get(f"http://127.0.0.1:{self.metrics_port[process]}/metrics",
                            timeout=5).text
        out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        return out

    def health(self, process: str, path: str) -> int:
        try:
            return requests.get(f"http://127.0.0.1:{self.health_port[process]}{path}",
                                timeout=3).status_code
        except requests.RequestException:
            return 0


def value(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str,
          **labels: str) -> float:
    """The sample's value, 0 when absent (a counter that never moved)."""
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    """A plain stack, not started: the test starts the processes it needs."""
    s = Stack(redis_url, tmp_path / "routes", tmp_path / "logs")
    yield s
    s.stop()


@pytest.fixture
def observed(redis_url: str, tmp_path: Path) -> Iterator[ObservedStack]:
    s = ObservedStack(redis_url, tmp_path / "routes", tmp_path / "logs")
    s.routes_dir.mkdir()
    yield s
    s.stop()
