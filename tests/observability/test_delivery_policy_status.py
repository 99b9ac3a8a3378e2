"""``spec.delivery`` as the operator shows it (Kubernetes source on the kmock API server, the
app and a worker as processes, Redis, HTTP backends): RequestClones sharing a backend with
different policies are both told which policy applies; an ordered backend held back by a
failing copy shows it in status (``blockedBy``, ``blockedSince``) and in the operator's
``hookfan_ordered_blocked_seconds`` until the copy is delivered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hookfan import deliverypolicy, keys
from hookfan.deliverypolicy import DeliveryPolicy
from hookfan.operator.backlog import Backlog, backlog_families
from tests.operator.conftest import GROUP, PLURAL, VERSION, K8s, RunOperator, eventually
from tests.stackfixtures import send
from tests.support.backends import RecordingBackend
from tests.support.procs import Stack, wait_until

HOST = "policy.example.com"


def spec(service: str, **delivery: Any) -> dict[str, Any]:
    return {"host": HOST, "backend": {"serviceName": service, "servicePort": "http"},
            **({"delivery": delivery} if delivery else {})}


def status(k8s: K8s, name: str) -> dict[str, Any]:
    obj = k8s.custom.get_namespaced_custom_object(GROUP, VERSION, "apps", PLURAL, name)
    return dict(obj.get("status") or {})


def test_request_clones_sharing_a_backend_get_the_stricter_policy_and_say_so(
        k8s: K8s, run_operator: RunOperator, store: Any) -> None:
    k8s.service("app", ip="10.0.0.9")
    k8s.clone("a", HOST, "app", spec=spec("app", concurrency=2, maxRetryAge="1h"))
    k8s.clone("b", HOST, "app", spec=spec("app", concurrency=5, ordered=True))
    run_operator()
    eventually(lambda: k8s.reason("a") == k8s.reason("b") == "DeliveryPolicyMerged",
               "both told")
    for name in ("a", "b"):
        ready = k8s.ready(name) or {}
        assert ready["status"] == "True"
        assert "apps/a, apps/b" in ready["message"]
        assert "maxRetryAge 1h, concurrency 2, ordered" in ready["message"]
    assert deliverypolicy.load(store.r.get(keys.POLICY)) == {
        "http://10.0.0.9:80": DeliveryPolicy(max_retry_age=3600, concurrency=2, ordered=True)}
    k8s.patch_clone("b", {"delivery": {"concurrency": 2, "maxRetryAge": "1h", "ordered": None}})
    eventually(lambda: k8s.reason("a") == k8s.reason("b") == "ServiceBackendReady",
               "both ready, nothing merged")
    assert deliverypolicy.load(store.r.get(keys.POLICY)) == {
        "http://10.0.0.9:80": DeliveryPolicy(max_retry_age=3600, concurrency=2)}


def test_a_blocked_ordered_backend_shows_in_status_until_its_head_is_delivered(
        k8s: K8s, run_operator: RunOperator, stack: Stack,
        make_backend: Callable[..., RecordingBackend]) -> None:
    fixed: list[bool] = []
    backend = make_backend(respond=lambda _req, _n: (200 if fixed else 503, {}))
    k8s.service("app", ip="127.0.0.1", port=backend.port)
    k8s.clone("ordered", HOST, "app", spec=spec("app", ordered=True, minRetryDelay="200ms",
                                                 maxRetryDelay="200ms"))
    op = run_operator(status_interval="200ms")
    stack.start_app()
    stack.start_worker()
    ids = [send(stack, HOST, b"%d" % i).json()["id"] for i in range(3)]
    wait_until(lambda: status(k8s, "ordered").get("delivery", {}).get("blockedBy")
               == f"{ids[0]}-0", timeout=20, what="blockedBy in status")
    assert status(k8s, "ordered")["delivery"]["blockedSince"].endswith("Z")
    wait_until(lambda: blocked_seconds(op) > 0, timeout=10, what="the blocked gauge")
    assert backend.distinct() == {f"{ids[0]}-0"}  # the copies behind it wait
    fixed.append(True)
    got = backend.wait_for(0, timeout=20, pred=lambda g: len({r.delivery_id for r in g}) == 3)
    wait_until(lambda: "blockedBy" not in status(k8s, "ordered").get("delivery", {}),
               timeout=20, what="blockedBy gone")
    assert [r.delivery_id for r in got[-3:]] == [f"{i}-0" for i in ids]


def blocked_seconds(op: Any) -> float:
    backlog = op.stats.backlog
    if backlog is None:
        return 0.0
    for family in backlog_families(backlog):
        if family.name == "hookfan_ordered_blocked_seconds":
            return max((s.value for s in family.samples), default=0.0)
    return 0.0


def test_the_blocked_gauge_counts_from_when_the_head_first_failed() -> None:
    b = Backlog(blocked={("ns/o", "http://o:1"): 100.0}, at=130.0)
    (family,) = [f for f in backlog_families(b) if f.name == "hookfan_ordered_blocked_seconds"]
    assert [(s.labels, s.value) for s in family.samples] == [
        ({"route": "ns/o", "backend": "http://o:1"}, 30.0)]
