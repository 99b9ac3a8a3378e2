"""The leader writes per-backend delivery figures into RequestClone status (``paused`` too), and
a Warning Event on dead letters and on each backend a worker auto-paused.

Real: the operator (Kubernetes source, in a thread) against the kmock API server, the app and
a worker as processes, Redis, HTTP backends. Services point at 127.0.0.1 in place of kube-proxy.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.operator.conftest import GROUP, PLURAL, VERSION, K8s, RunOperator
from tests.stackfixtures import send
from tests.support.backends import RecordingBackend, always
from tests.support.procs import Stack, wait_until

HOST = "status.example.com"
PAUSING_HOST = "pausing.example.com"
ROOT = Path(__file__).resolve().parents[2]


def delivery(k8s: K8s, name: str) -> dict[str, Any]:
    obj = k8s.custom.get_namespaced_custom_object(GROUP, VERSION, "apps", PLURAL, name)
    return dict((obj.get("status") or {}).get("delivery") or {})


def test_status_shows_delivered_pending_and_dead_lettered_figures(
        k8s: K8s, run_operator: RunOperator, stack: Stack,
        make_backend: Callable[..., RecordingBackend]) -> None:
    ok, broken, down = make_backend(), make_backend(respond=always(400)), make_backend()
    down.stop()
    for name, b in (("ok", ok), ("broken", broken), ("down", down)):
        k8s.service(name, ip="127.0.0.1", port=b.port)
        k8s.clone(name, HOST, name)
    run_operator(status_interval="200ms")
    stack.start_app()
    stack.start_worker()
    for _ in range(2):
        assert send(stack, HOST, b'{"secret": "body"}').status_code == 202
    ok.wait_for(2)
    broken.wait_for(2)
    # One status may count a copy delivered between its scan and its read of the counters as
    # both pending and delivered; the next scan corrects it. Wait for the settled figures.
    wait_until(lambda: delivery(k8s, "ok").get("delivered") == 2
               and delivery(k8s, "ok").get("pending") == 0
               and delivery(k8s, "broken").get("deadLettered") == 2
               and delivery(k8s, "broken").get("pending") == 0
               and delivery(k8s, "down").get("pending") == 2, timeout=15,
               what="delivery figures in status")
    good = delivery(k8s, "ok")
    assert (good["pending"], good["deadLettered"]) == (0, 0)
    assert good["lastDeliveredTime"].endswith("Z") and "lastError" not in good
    bad = delivery(k8s, "broken")
    assert (bad["delivered"], bad["pending"]) == (0, 0)
    assert bad["lastError"] == "HTTP 400 is not retryable"
    assert delivery(k8s, "down")["lastError"] in ("ConnectionRefused", "ConnectTimeout")
    warnings = [e for e in k8s.events("broken") if e[1:] == ("Warning", "DeadLettered")]
    assert len(warnings) == 1  # rate-limited: one per RequestClone per 5 minutes
    assert not [e for e in k8s.events("ok") if e[2] == "DeadLettered"]
    assert "body" not in str(bad) + str(k8s.server.objects("events"))


def test_status_is_patched_only_when_figures_change(
        k8s: K8s, kube: Any, run_operator: RunOperator, stack: Stack,
        make_backend: Callable[..., RecordingBackend]) -> None:
    ok = make_backend()
    k8s.service("ok", ip="127.0.0.1", port=ok.port)
    k8s.clone("ok", HOST, "ok")
    op = run_operator(status_interval="200ms")
    stack.start_app()
    stack.start_worker()
    assert send(stack, HOST).status_code == 202
    # Settled figures (a status may count a copy delivered between its scan and its counter
    # read as pending too; the next round's write corrects it): from then on, no writes.
    wait_until(lambda: delivery(k8s, "ok").get("delivered") == 1
               and delivery(k8s, "ok").get("pending") == 0, what="figures written")

    def writes() -> int:
        return len([w for w in kube.api.writers if w[2].endswith("/ok/status")])

    before, rounds = writes(), op.delivery.rounds
    wait_until(lambda: op.delivery.rounds >= rounds + 3, what="three more status rounds")
    assert writes() == before


def test_printer_columns_show_pending_failed_and_paused() -> None:
    for path in ("hookfan/crd.yaml", "helm/hookfan/crds/requestclone.yaml",
                 "config/crd/requestclone.yaml"):
        crd = yaml.safe_load((ROOT / path).read_text())
        cols = {c["name"].upper(): c["jsonPath"]
                for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
        assert cols["PENDING"] == ".status.delivery.pending"
        assert cols["FAILED"] == ".status.delivery.deadLettered"
        assert cols["PAUSED"] == ".status.delivery.paused"


def test_auto_pause_writes_an_event_and_status_shows_paused_until_resumed(
        k8s: K8s, run_operator: RunOperator, stack: Stack,
        make_backend: Callable[..., RecordingBackend]) -> None:
    ok, failing = make_backend(), make_backend(respond=always(503))
    for name, b in (("ok", ok), ("failing", failing)):
        k8s.service(name, ip="127.0.0.1", port=b.port)
        k8s.clone(name, PAUSING_HOST, name)
    run_operator(status_interval="200ms")
    stack.start_app()
    stack.worker_args = ["--auto-pause-after", "1s", "--min-retry-delay", "100ms",
                         "--max-retry-delay", "300ms"]
    stack.start_worker()
    wait_until(lambda: send(stack, PAUSING_HOST, b"x").status_code == 202, 30, "the route live")
    ok.wait_for(1)
    wait_until(lambda: any(e[1:] == ("Warning", "BackendPaused")
                           for e in k8s.events("failing")), 30, "a BackendPaused Event")
    (event,) = [e for e in k8s.server.objects("events") if e["reason"] == "BackendPaused"]
    assert failing.url in event["message"] and "HTTP 503" in event["message"]
    assert f"hookfan backends resume {failing.url}" in event["message"]
    wait_until(lambda: delivery(k8s, "failing").get("paused") is True, 15, "Paused in status")
    assert delivery(k8s, "ok").get("paused") is False
    assert not [e for e in k8s.events("ok") if e[2] == "BackendPaused"]

    resumed = subprocess.run([sys.executable, "-m", "hookfan.cli", "backends", "resume",
                              "--route", "apps/failing", "--redis-url", stack.redis_url],
                             capture_output=True, text=True, timeout=30)
    assert resumed.returncode == 0, resumed.stderr
    wait_until(lambda: delivery(k8s, "failing").get("paused") is False, 15,
               "Paused cleared in status")

