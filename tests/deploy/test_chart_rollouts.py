"""Rollouts neither lose nor duplicate: the intake keeps serving while it is taken out of the
endpoints, the worker's shutdown lets an attempt finish, and the ingress lets through every body
hookfan accepts."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from hookfan.config import DeliverySettings
from hookfan.worker.celeryapp import ShutdownStep

from .chart import containers, flag, one, render


def worker(values: dict[str, Any]) -> tuple[int, int]:
    """(terminationGracePeriodSeconds, --graceful-shutdown-timeout in seconds) as rendered."""
    w = one(render(values), "Deployment", "hookfan-worker")
    (c,) = containers(w)
    timeout = flag(c, "graceful-shutdown-timeout")
    assert timeout and timeout.endswith("s")
    return w["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], int(timeout[:-1])


@pytest.mark.parametrize("delivery_timeout", [1, 10, 45])
@pytest.mark.parametrize("grace", [None, "minimum", 900])
def test_worker_shutdown_is_one_formula(delivery_timeout: int, grace: Any) -> None:
    limit = DeliverySettings(delivery_timeout=delivery_timeout).task_time_limit
    if grace == "minimum":
        grace = limit + 20
    g, t = worker({"delivery": {"timeoutSeconds": delivery_timeout},
                   "worker": {"terminationGracePeriodSeconds": grace}})
    assert g == (limit + 30 if grace is None else grace)
    assert t == g - 20
    # An attempt may run for the whole task time limit: the warm shutdown waits that long ...
    assert t >= limit
    # ... and the worker's own kill backstop fires before the kubelet's SIGKILL.
    assert t + ShutdownStep.BACKSTOP_MARGIN < g


def test_a_grace_period_too_short_for_an_attempt_is_refused() -> None:
    limit = DeliverySettings(delivery_timeout=10).task_time_limit
    with pytest.raises(helm_python.HelmError, match="task time limit"):
        render({"worker": {"terminationGracePeriodSeconds": limit + 19}})


def test_the_intake_keeps_serving_until_it_is_out_of_the_endpoints() -> None:
    docs = render({"app": {"preStopSleepSeconds": 15, "gracefulShutdownSeconds": 25}})
    app = one(docs, "Deployment", "hookfan-app")
    (c,) = containers(app)
    assert c["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "15"]}}
    assert flag(c, "graceful-shutdown-timeout") == "25s"
    assert app["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 15 + 25 + 10
    (default,) = containers(one(render(), "Deployment", "hookfan-app"))
    assert default["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "10"]
    (off,) = containers(one(render({"app": {"preStopSleepSeconds": 0}}), "Deployment",
                            "hookfan-app"))
    assert "lifecycle" not in off


INGRESS = {"enabled": True, "className": "nginx", "hosts": [{"host": "hooks.example.com"}]}


def ingress_annotations(values: dict[str, Any]) -> dict[str, str]:
    ing = one(render(values), "Ingress", "hookfan")
    result: dict[str, str] = ing["metadata"]["annotations"]
    return result


def test_ingress_nginx_accepts_every_body_hookfan_accepts() -> None:
    body = "nginx.ingress.kubernetes.io/proxy-body-size"
    assert ingress_annotations({"ingress": INGRESS})[body] == "10000000"
    got = ingress_annotations({"ingress": INGRESS, "app": {"bodySizeLimit": 26214400}})
    assert got[body] == "26214400"
    (c,) = containers(one(render({"app": {"bodySizeLimit": 26214400}}), "Deployment",
                          "hookfan-app"))
    assert flag(c, "body-size-limit") == got[body]
    # A value of the user's own wins, and their other annotations stay.
    mine = ingress_annotations({"ingress": {**INGRESS, "annotations": {body: "50m", "a": "b"}}})
    assert mine == {body: "50m", "a": "b"}
