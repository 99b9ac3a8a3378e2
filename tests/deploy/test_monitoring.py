"""Dashboard, alerts and scraping agree with the metric names in docs/CONTRACTS.md.

PodMonitor and PrometheusRule have no schema in kubernetes-validate (they are Prometheus Operator
CRDs); their content is checked here instead.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .chart import one, render
from .promql import (
    DASHBOARD,
    contract_metrics,
    dashboard_exprs,
    dashboard_series,
    family,
    metric_names,
)

# Not hookfan's: these come from the redis_exporter sidecar (redis.metrics.enabled), and the
# alert using them is only rendered when that exporter (or one the user runs) is scraped.
REDIS_EXPORTER_METRICS = {"redis_memory_used_bytes", "redis_memory_max_bytes"}


def histograms() -> set[str]:
    return {n for n, t in contract_metrics().items() if t == "histogram"}


def test_extractor_finds_metrics_and_skips_everything_else() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, backend) (rate(a_seconds_bucket{x="y",'
            'z=~"5.."}[$__rate_interval]))) / ignoring(q) b_total offset 5m > 1e3 and on(p) c')
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c"}
    assert family("a_seconds_bucket", {"a_seconds"}) == "a_seconds"
    assert family("b_total", {"a_seconds"}) == "b_total"


def test_dashboard_is_valid_json_with_the_required_panels() -> None:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dash["uid"] == "hookfan"
    joined = " ".join(dashboard_exprs())
    for needed in ("hookfan_http_requests_total", "by (status)", "hookfan_delivery_attempts_total",
                   "by (outcome)", "hookfan_pending_deliveries",
                   "hookfan_oldest_pending_age_seconds", "hookfan_dead_letters",
                   "hookfan_delivery_attempt_duration_seconds_bucket"):
        assert needed in joined


def test_every_dashboard_metric_is_in_the_contract() -> None:
    contract = contract_metrics()
    assert len(contract) >= 15
    series = dashboard_series()
    assert len(series) >= 6
    unknown = {s for s in series if family(s, histograms()) not in contract}
    assert unknown == set()


def test_dashboard_configmap_carries_the_file_and_the_sidecar_label(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    cm = one(rendered["monitoring"], "ConfigMap", "hookfan-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["hookfan.json"]) == json.loads(DASHBOARD.read_text())


def _rules(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    rule = one(docs, "PrometheusRule", "hookfan")
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


def test_alerts_cover_the_failure_modes(rendered: dict[str, list[dict[str, Any]]]) -> None:
    rules = _rules(rendered["monitoring"])
    assert set(rules) == {"HookfanDeadLettersGrowing", "HookfanOldestPendingDeliveryTooOld",
                          "HookfanNoOperatorLeader", "HookfanIntake5xxRate",
                          "HookfanRedisMemoryNearLimit"}
    assert 'outcome="dead_letter"' in rules["HookfanDeadLettersGrowing"]["expr"]
    assert rules["HookfanOldestPendingDeliveryTooOld"]["expr"].endswith("> 900")
    assert 'status=~"5.."' in rules["HookfanIntake5xxRate"]["expr"]
    for r in rules.values():
        assert r["labels"]["severity"] in ("warning", "critical")
        assert r["annotations"]["summary"]
        assert 'namespace="hookfan"' in r["expr"]


def test_alert_metrics_are_contract_metrics_or_the_documented_exporter(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    contract = contract_metrics()
    for name, rule in _rules(rendered["monitoring"]).items():
        for metric in metric_names(rule["expr"]):
            assert family(metric, histograms()) in set(contract) | REDIS_EXPORTER_METRICS, \
                (name, metric)


def test_alert_thresholds_follow_values() -> None:
    docs = render({"monitoring": {"prometheusRule": {"enabled": True,
                                                     "oldestPendingSeconds": 120}}})
    assert _rules(docs)["HookfanOldestPendingDeliveryTooOld"]["expr"].endswith("> 120")


@pytest.mark.parametrize("values, expected", [
    ({}, True),
    ({"redis": {"metrics": {"enabled": False}}}, False),
    ({"redis": {"external": {"url": "redis://r:6379/0"}}}, False),
    ({"redis": {"external": {"url": "redis://r:6379/0"}},
      "monitoring": {"prometheusRule": {"externalRedisExporter": True}}}, True),
])
def test_redis_memory_alert_exists_only_when_its_metrics_are_scraped(
        values: dict[str, Any], expected: bool) -> None:
    merged = values | {"monitoring": {"prometheusRule": {
        "enabled": True, **values.get("monitoring", {}).get("prometheusRule", {})}}}
    assert ("HookfanRedisMemoryNearLimit" in _rules(render(merged))) is expected


def test_pod_monitor_scrapes_hookfan_and_the_redis_exporter(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["monitoring"]
    pm = one(docs, "PodMonitor", "hookfan")
    ports = {e["port"] for e in pm["spec"]["podMetricsEndpoints"]}
    assert ports == {"metrics", "redis-metrics"}
    # The alerts' selector labels exist only because the PodMonitor copies them onto targets.
    assert "app.kubernetes.io/instance" in pm["spec"]["podTargetLabels"]
    sts = one(docs, "StatefulSet", "hookfan-redis")
    exporter = next(c for c in sts["spec"]["template"]["spec"]["containers"]
                    if c["name"] == "exporter")
    assert exporter["ports"][0]["name"] == "redis-metrics"
