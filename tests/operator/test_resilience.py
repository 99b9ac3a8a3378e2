"""Watches survive what API servers do: 410 Gone after compaction, dropped connections.

Also the host policy across namespaces, end to end through the API. The kmock server of
tests/support/kubeapi.py injects the faults; creation times come from its one-second-per-create
clock. Not covered: API server restarts that lose objects, and watch bookmarks.
"""

from __future__ import annotations

from hookfan.store import Store
from tests.operator.conftest import K8s, RunOperator, eventually, table

HOST = "hooks.example.com"


def test_410_gone_leads_to_a_relist_that_misses_no_change(
        k8s: K8s, run_operator: RunOperator, store: Store) -> None:
    k8s.service("one")
    k8s.clone("one", HOST, "one")
    op = run_operator()
    eventually(lambda: len(table(store).get(HOST, [])) == 1, "first routed")
    lists = op.clones.lists
    k8s.server.compact()
    # Made after the compaction: a watch resuming from its old version is told 410 and never
    # sees these events; only a re-list does.
    k8s.service("two", ip="10.0.0.2")
    k8s.clone("two", HOST, "two")
    eventually(lambda: len(table(store).get(HOST, [])) == 2, "change seen after the 410")
    assert op.clones.lists > lists and op.clones.restarts >= 1


def test_dropped_watch_connection_reconnects(k8s: K8s, run_operator: RunOperator,
                                             store: Store) -> None:
    k8s.service("one")
    op = run_operator()
    watches = k8s.server.api.watch_count
    k8s.server.drop_watches()
    eventually(lambda: k8s.server.api.watch_count >= watches + 2, "both watches reconnected")
    k8s.clone("one", HOST, "one")
    eventually(lambda: table(store) == {HOST: [("apps/one", "http://10.0.0.1:80")]},
               "change after the reconnect routed")
    assert op.clones.restarts + op.services.restarts >= 1 or op.clones.lists >= 2


def test_two_namespaces_racing_for_a_host_the_oldest_keeps_it(
        k8s: K8s, run_operator: RunOperator, store: Store) -> None:
    k8s.service("app", ns="team-a")
    k8s.service("app", ip="10.0.0.2", ns="team-b")
    k8s.clone("app", HOST, "app", ns="team-a")   # older by the server's clock
    k8s.clone("app", HOST, "app", ns="team-b")
    run_operator()
    eventually(lambda: table(store) == {HOST: [("team-a/app", "http://10.0.0.1:80")]},
               "only the owner routed")
    eventually(lambda: k8s.reason("app", "team-b") == "HostClaimedByOtherNamespace", "claimed")
    assert "team-a" in (k8s.ready("app", "team-b") or {})["message"]
    eventually(lambda: ("app", "Warning", "HostClaimedByOtherNamespace") in k8s.events("app"),
               "the Warning Event")
    # The loser deletes and re-creates: it is now even younger and still loses.
    k8s.custom.delete_namespaced_custom_object("proxy.infra.doodle.com", "v1beta1", "team-b",
                                               "requestclones", "app")
    k8s.clone("app", HOST, "app", ns="team-b")
    eventually(lambda: k8s.reason("app", "team-b") == "HostClaimedByOtherNamespace",
               "recreated clone still claimed")
    assert table(store) == {HOST: [("team-a/app", "http://10.0.0.1:80")]}
    # The owner goes away: the host passes to the remaining namespace.
    k8s.custom.delete_namespaced_custom_object("proxy.infra.doodle.com", "v1beta1", "team-a",
                                               "requestclones", "app")
    eventually(lambda: table(store) == {HOST: [("team-b/app", "http://10.0.0.2:80")]},
               "host handed over")


def test_shared_policy_fans_out_across_namespaces(k8s: K8s, run_operator: RunOperator,
                                                  store: Store) -> None:
    k8s.service("app", ns="team-a")
    k8s.service("app", ip="10.0.0.2", ns="team-b")
    k8s.clone("app", HOST, "app", ns="team-a")
    k8s.clone("app", HOST, "app", ns="team-b")
    run_operator(host_policy="shared")
    eventually(lambda: table(store) == {HOST: [("team-a/app", "http://10.0.0.1:80"),
                                               ("team-b/app", "http://10.0.0.2:80")]},
               "both namespaces routed")
    eventually(lambda: k8s.reason("app", "team-b") == "ServiceBackendReady", "both ready")
