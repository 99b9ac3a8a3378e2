"""``spec.delivery``: parsed with a message naming the field, merged field by field (the
stricter wins), laid over the worker's flags, and merged for RequestClones sharing a backend
with a condition on each of them."""

from __future__ import annotations

from typing import Any

import pytest

from hookfan.config import DeliverySettings
from hookfan.deliverypolicy import DeliveryPolicy, dump, effective, load, parse_delivery, stricter
from hookfan.operator.model import InvalidSpec, parse
from hookfan.operator.resolve import POLICY_MERGED, READY, Service, ServicePort, resolve


def test_every_field_is_parsed() -> None:
    p = parse_delivery({"maxRetryAge": "6h", "minRetryDelay": "2s", "maxRetryDelay": "10m",
                        "concurrency": 2, "rateLimit": {"perSecond": 20, "burst": 40},
                        "ordered": True})
    assert p == DeliveryPolicy(21600.0, 2.0, 600.0, 2, 20.0, 40, True)
    assert p.describe() == ("maxRetryAge 6h, minRetryDelay 2s, maxRetryDelay 10m, "
                            "concurrency 2, rateLimit 20/s burst 40, ordered")


def test_an_absent_block_and_an_empty_one_mean_the_flags() -> None:
    assert parse_delivery(None).empty and parse_delivery({}).empty


def test_burst_defaults_to_the_rate_rounded_up() -> None:
    assert parse_delivery({"rateLimit": {"perSecond": 2.5}}).bucket == 3
    assert parse_delivery({"rateLimit": {"perSecond": 0.1}}).bucket == 1


@pytest.mark.parametrize(("data", "field"), [
    ({"rateLimit": {"perSecond": -5}}, "spec.delivery.rateLimit.perSecond"),
    ({"rateLimit": {}}, "spec.delivery.rateLimit"),
    ({"rateLimit": {"perSecond": 5, "burst": 0}}, "spec.delivery.rateLimit.burst"),
    ({"concurrency": 0}, "spec.delivery.concurrency"),
    ({"concurrency": True}, "spec.delivery.concurrency"),
    ({"maxRetryAge": "0"}, "spec.delivery.maxRetryAge"),
    ({"maxRetryAge": "forever"}, "spec.delivery.maxRetryAge"),
    ({"minRetryDelay": "10m", "maxRetryDelay": "1m"}, "spec.delivery.minRetryDelay"),
    ({"ordered": "true"}, "spec.delivery.ordered"),
    ({"retries": 3}, "spec.delivery.retries"),
    ([], "spec.delivery"),
])
def test_a_bad_field_is_refused_by_name(data: Any, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field.replace('.', '[.]')}: "):
        parse_delivery(data)


def test_the_stricter_value_of_each_field_wins() -> None:
    a = DeliveryPolicy(max_retry_age=3600, min_retry_delay=1, concurrency=4, rate=10, burst=20)
    b = DeliveryPolicy(max_retry_age=600, max_retry_delay=60, concurrency=8, rate=5,
                       ordered=True)
    assert stricter(a, b) == DeliveryPolicy(600, 1, 60, 4, 5, 5, True)
    assert stricter(a, DeliveryPolicy()) == a


def test_a_policy_is_laid_over_the_flags() -> None:
    flags = DeliverySettings(max_retry_age=86400, min_retry_delay=1, max_retry_delay=900,
                             backend_concurrency=4)
    s = effective(flags, DeliveryPolicy(max_retry_age=60, min_retry_delay=2000))
    assert (s.max_retry_age, s.min_retry_delay, s.max_retry_delay) == (60, 2000, 2000)
    assert s.backend_concurrency == 4
    assert effective(flags, DeliveryPolicy(concurrency=9, ordered=True)).backend_concurrency == 1


def test_policies_round_trip_through_their_published_json() -> None:
    policies = {"http://a:1": DeliveryPolicy(rate=0.5, ordered=True),
                "http://b:2": DeliveryPolicy(max_retry_age=60.0)}
    assert load(dump(policies)) == policies
    assert load(None) == {}


def clone(name: str, delivery: dict[str, Any] | None = None, host: str = "h.example.com"
          ) -> Any:
    spec: dict[str, Any] = {"host": host, "backend": {"serviceName": "svc",
                                                      "servicePort": "http"}}
    if delivery is not None:
        spec["delivery"] = delivery
    return parse({"apiVersion": "proxy.infra.doodle.com/v1beta1", "kind": "RequestClone",
                  "metadata": {"name": name, "namespace": "ns"}, "spec": spec})


SERVICES = {("ns", "svc"): Service("ns", "svc", "10.0.0.7", (ServicePort("http", 80),))}


def test_a_bad_delivery_makes_the_request_clone_invalid() -> None:
    with pytest.raises(InvalidSpec, match="spec.delivery.rateLimit.perSecond"):
        clone("a", {"rateLimit": {"perSecond": -1}})


def test_request_clones_sharing_a_backend_share_the_stricter_policy_and_are_told() -> None:
    res = resolve([clone("a", {"concurrency": 2, "maxRetryAge": "1h"}),
                   clone("b", {"concurrency": 5, "ordered": True}, host="other.example.com")],
                  SERVICES)
    assert res.table.policies == {"http://10.0.0.7:80": DeliveryPolicy(
        max_retry_age=3600, concurrency=2, ordered=True)}
    for key in ("ns/a", "ns/b"):
        cond = res.conditions[key]
        assert cond.ready and cond.reason == POLICY_MERGED
        assert "ns/a, ns/b" in cond.message and "concurrency 2" in cond.message


def test_equal_policies_on_a_shared_backend_say_nothing() -> None:
    res = resolve([clone("a", {"concurrency": 2}), clone("b", {"concurrency": 2})], SERVICES)
    assert {c.reason for c in res.conditions.values()} == {READY}
    assert res.table.policies == {"http://10.0.0.7:80": DeliveryPolicy(concurrency=2)}


def test_a_backend_without_policy_publishes_none() -> None:
    assert resolve([clone("a")], SERVICES).table.policies == {}


def test_backends_list_shows_the_route_policy_over_the_worker_flags():
    from hookfan.backends import policy_of

    worker = {"maxRetryAge": 86400.0, "minRetryDelay": 0.75, "maxRetryDelay": 900.0,
              "concurrency": 4, "deliveryTimeout": 10.0, "autoPauseAfter": 0.0}
    assert policy_of(worker) == worker
    route = DeliveryPolicy(max_retry_age=21600.0, rate=5.0, burst=10, ordered=True)
    assert policy_of(worker, route) == {
        **worker, "maxRetryAge": 21600.0, "concurrency": 1,
        "rateLimit": {"perSecond": 5.0, "burst": 10}, "ordered": True}
