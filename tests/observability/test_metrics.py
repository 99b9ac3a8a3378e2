"""After a scripted scenario, each process's ``/metrics`` shows exactly what happened.

Scenario: host ``fan.example.com`` fans out to three backends — ``ok`` (always 200), ``flaky``
(503 twice, then 200) and ``broken`` (400: not retryable, dead-lettered at once); host
``down.example.com`` goes to a closed port (retried for ever, so its copies stay pending).
"""

from __future__ import annotations

from collections.abc import Callable

import requests

from hookfan.store import Store
from tests.conftest import route_file
from tests.deploy.promql import contract_metrics, dashboard_series, family
from tests.observability.conftest import ObservedStack, value
from tests.stackfixtures import raw_send
from tests.support.backends import RecordingBackend, always, sequence
from tests.support.procs import wait_until

FAN, DOWN = "fan.example.com", "down.example.com"
SENT = 3


def until_accepted(stack: ObservedStack, host: str) -> int:
    """Send one webhook, resending on 503 (route not live yet); returns the 503s seen."""
    refused = 0
    while (resp := raw_send(stack.url, host, b'{"n": 1}')).status_code == 503:
        refused += 1
        assert refused < 500, "route never became live"
    assert resp.status_code == 202, resp.status_code
    return refused


def routes_of(store: Store, host: str) -> dict[str, str]:
    """backend URL -> route (``namespace/name``) from the published table."""
    table = store.load_routes()
    assert table is not None
    return {b.url: b.route for b in table.routes[host]}


def run_scenario(observed: ObservedStack, make_backend: Callable[..., RecordingBackend],
                 store: Store) -> dict[str, object]:
    ok = make_backend()
    flaky = make_backend(respond=sequence(503, 503, 200))
    broken = make_backend(respond=always(400))
    down = make_backend()
    down.stop()  # a closed port: every attempt is refused
    route_file(observed.routes_dir, FAN, [ok, flaky, broken], name="fan")
    route_file(observed.routes_dir, DOWN, [down], name="down")
    observed.start()
    refused = sum(until_accepted(observed, FAN) for _ in range(SENT))
    refused += sum(until_accepted(observed, DOWN) for _ in range(2))
    assert raw_send(observed.url, "nobody.example.com").status_code == 503
    ok.wait_for(SENT)
    flaky.wait_for(SENT + 2)
    broken.wait_for(SENT)
    wait_until(lambda: len(store.dead_ids()) == SENT, what="dead letters")
    routes = {**routes_of(store, FAN), **routes_of(store, DOWN)}
    return {"ok": ok, "flaky": flaky, "broken": broken, "down": down, "routes": routes,
            "refused": refused + 1}


def test_counters_and_backlog_after_a_scenario(
        observed: ObservedStack, make_backend: Callable[..., RecordingBackend],
        store: Store) -> None:
    sc = run_scenario(observed, make_backend, store)
    routes: dict[str, str] = sc["routes"]  # type: ignore[assignment]
    ok, flaky, broken, down = (sc[k] for k in ("ok", "flaky", "broken", "down"))
    assert isinstance(ok, RecordingBackend) and isinstance(flaky, RecordingBackend)
    assert isinstance(broken, RecordingBackend) and isinstance(down, RecordingBackend)
    fan_label = ",".join(sorted(routes[b.url] for b in (ok, flaky, broken)))

    def attempts(outcome: str, b: RecordingBackend) -> float:
        return value(observed.scrape("worker"), "hookfan_delivery_attempts_total",
                     outcome=outcome, route=routes[b.url], backend=b.url)

    wait_until(lambda: attempts("delivered", flaky) == SENT, what="flaky delivered")
    assert attempts("delivered", ok) == SENT and attempts("retry", ok) == 0
    assert attempts("retry", flaky) == 2
    assert attempts("dead_letter", broken) == SENT and attempts("delivered", broken) == 0
    assert attempts("retry", down) >= 2
    w = observed.scrape("worker")
    by_ok = {"route": routes[ok.url], "backend": ok.url}
    assert value(w, "hookfan_delivery_attempt_duration_seconds_count", **by_ok) == SENT
    assert value(w, "hookfan_delivery_latency_seconds_count", **by_ok) == SENT
    assert value(w, "hookfan_delivery_attempts_per_copy_sum",
                 route=routes[flaky.url], backend=flaky.url) == SENT + 2

    a = observed.scrape("app")
    assert value(a, "hookfan_http_requests_total", status="202", route=fan_label) == SENT
    assert value(a, "hookfan_http_requests_total", status="202",
                 route=routes[down.url]) == 2
    assert value(a, "hookfan_http_requests_total", status="503", route="none") == sc["refused"]
    assert value(a, "hookfan_http_request_duration_seconds_count", status="202") == SENT + 2
    assert value(a, "hookfan_http_request_body_bytes_count") == SENT + 2
    assert value(a, "hookfan_http_request_body_bytes_sum") == (SENT + 2) * len(b'{"n": 1}')

    def backlog(name: str, b: RecordingBackend) -> float:
        return value(observed.scrape("operator"), name, route=routes[b.url], backend=b.url)

    wait_until(lambda: backlog("hookfan_dead_letters", broken) == SENT
               and backlog("hookfan_pending_deliveries", flaky) == 0,
               what="backlog gauges caught up")
    assert backlog("hookfan_pending_deliveries", down) == 2
    assert backlog("hookfan_oldest_pending_age_seconds", down) > 0
    assert backlog("hookfan_pending_deliveries", ok) == 0
    assert backlog("hookfan_dead_letters", ok) == 0
    o = observed.scrape("operator")
    assert value(o, "hookfan_stored_bytes") > 0  # the dead letters' and pending requests
    assert value(o, "hookfan_operator_leader") == 1
    assert value(o, "hookfan_operator_routes") == 2
    assert value(o, "hookfan_operator_backends") == 4
    assert value(o, "hookfan_operator_syncs_total") >= 1
    assert_dashboard_metrics_exported(observed)


def assert_dashboard_metrics_exported(observed: ObservedStack) -> None:
    """Every series the Grafana dashboard queries is on some live process's ``/metrics``."""
    exported = set()
    for p in ("app", "worker", "operator"):
        exported |= set(observed.scrape(p))
    histograms = {n for n, t in contract_metrics().items() if t == "histogram"}
    wanted = dashboard_series()
    missing = {s for s in wanted
               if s not in exported and family(s, histograms) + "_bucket" not in exported}
    assert not missing, missing


def test_every_metric_has_the_hookfan_prefix_and_conventions(
        observed: ObservedStack, make_backend: Callable[..., RecordingBackend]) -> None:
    route_file(observed.routes_dir, FAN, [make_backend()], name="fan")
    observed.start()
    until_accepted(observed, FAN)
    for p in ("app", "worker", "operator"):
        text = requests.get(f"http://127.0.0.1:{observed.metrics_port[p]}/metrics",
                            timeout=5).text
        types = dict(line.split()[2:4] for line in text.splitlines()
                     if line.startswith("# TYPE"))
        for name, kind in types.items():
            assert name.startswith("hookfan_"), (p, name)
            assert kind != "summary", (p, name)
            if name.endswith("_seconds") or name.endswith("_bytes"):
                assert kind in ("histogram", "gauge"), (p, name)


def test_every_contract_metric_is_documented() -> None:
    text = (contract_metrics.__globals__["ROOT"] / "docs" / "metrics.md").read_text()
    missing = [m for m in contract_metrics() if f"`{m}`" not in text]
    assert not missing, missing
