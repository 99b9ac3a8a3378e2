"""The operator's pure core: RequestClones + Services -> route table + Ready conditions."""

from __future__ import annotations

from hookfan.operator.filesource import file_table
from hookfan.operator.model import RequestClone
from hookfan.operator.resolve import (
    HOST_CLAIMED,
    INVALID_SPEC,
    PORT_NOT_FOUND,
    READY,
    SERVICE_NOT_FOUND,
    Invalid,
    Service,
    ServicePort,
    resolve,
)
from hookfan.routes import Backend

HOST = "webhook-receiver.example.com"


def clone(name: str, ns: str = "apps", host: str = HOST, service: str | None = None,
          port: int | str = "http", created: str = "2024-01-01T00:00:00Z", gen: int = 1
          ) -> RequestClone:
    return RequestClone(ns, name, host, service or name, port, gen, created)


def svc(name: str, ns: str = "apps", ip: str = "10.0.0.1", *ports: ServicePort) -> Service:
    return Service(ns, name, ip, ports or (ServicePort("http", 80, 8080),))


def services(*items: Service) -> dict[tuple[str, str], Service]:
    return {(s.namespace, s.name): s for s in items}


def test_two_clones_with_one_host_fan_out_to_both_services() -> None:
    got = resolve([clone("app-1"), clone("app-2")],
                  services(svc("app-1", ip="10.0.0.1"), svc("app-2", ip="10.0.0.2")))
    assert got.table.routes == {HOST: (Backend("apps/app-1", "http://10.0.0.1:80"),
                                       Backend("apps/app-2", "http://10.0.0.2:80"))}
    assert {k: c.reason for k, c in got.conditions.items()} == {
        "apps/app-1": READY, "apps/app-2": READY}
    assert all(c.ready and c.generation == 1 for c in got.conditions.values())


def test_missing_service_is_not_ready_and_routes_nothing() -> None:
    got = resolve([clone("app-1", gen=3)], {})
    assert got.table.routes == {}
    cond = got.conditions["apps/app-1"]
    assert (cond.ready, cond.reason, cond.generation) == (False, SERVICE_NOT_FOUND, 3)
    assert "create it" in cond.message and "spec.backend.serviceName" in cond.message


def test_missing_port_name_names_the_ports_the_service_has() -> None:
    got = resolve([clone("app-1", port="grpc")], services(svc("app-1")))
    cond = got.conditions["apps/app-1"]
    assert (cond.ready, cond.reason) == (False, PORT_NOT_FOUND)
    assert "'grpc'" in cond.message and "http" in cond.message
    assert got.table.routes == {}


def test_port_number_selects_the_service_port() -> None:
    got = resolve([clone("app-1", port=80)], services(svc("app-1")))
    assert got.table.routes[HOST] == (Backend("apps/app-1", "http://10.0.0.1:80"),)
    missing = resolve([clone("app-1", port=81)], services(svc("app-1")))
    assert missing.conditions["apps/app-1"].reason == PORT_NOT_FOUND


def test_headless_service_uses_its_dns_name_and_target_port() -> None:
    got = resolve([clone("app-1")], services(svc("app-1", "apps", "None")))
    assert got.table.routes[HOST] == (Backend("apps/app-1", "http://app-1.apps.svc:8080"),)


def test_service_in_another_namespace_does_not_count() -> None:
    got = resolve([clone("app-1")], services(svc("app-1", ns="other")))
    assert got.conditions["apps/app-1"].reason == SERVICE_NOT_FOUND


def test_malformed_object_gets_invalid_spec_and_others_still_route() -> None:
    got = resolve([Invalid("apps", "bad", 2, "spec: 'host' is a required property"),
                   clone("app-1")], services(svc("app-1")))
    cond = got.conditions["apps/bad"]
    assert (cond.ready, cond.reason, cond.generation) == (False, INVALID_SPEC, 2)
    assert "host" in cond.message
    assert list(got.table.routes) == [HOST]


def test_namespace_policy_gives_a_host_to_its_oldest_clone_namespace() -> None:
    old = clone("a", ns="team-a", created="2024-01-01T00:00:01Z")
    new = clone("b", ns="team-b", created="2024-01-01T00:00:02Z")
    svcs = services(svc("a", "team-a"), svc("b", "team-b", "10.0.0.2"))
    for order in ([old, new], [new, old]):
        got = resolve(order, svcs, "namespace")
        assert got.table.routes[HOST] == (Backend("team-a/a", "http://10.0.0.1:80"),)
        denied = got.conditions["team-b/b"]
        assert (denied.ready, denied.reason) == (False, HOST_CLAIMED)
        assert "team-a" in denied.message and "--host-policy shared" in denied.message


def test_namespace_policy_ties_on_creation_time_break_by_name() -> None:
    a = clone("a", ns="zeta")
    b = clone("b", ns="alpha")
    got = resolve([b, a], services(svc("a", "zeta"), svc("b", "alpha")), "namespace")
    assert got.conditions["zeta/a"].reason == READY
    assert got.conditions["alpha/b"].reason == HOST_CLAIMED


def test_namespace_policy_keeps_fan_out_within_the_owning_namespace() -> None:
    one = clone("one", created="2024-01-01T00:00:01Z")
    two = clone("two", created="2024-01-01T00:00:05Z")
    got = resolve([one, two], services(svc("one"), svc("two", ip="10.0.0.2")), "namespace")
    assert len(got.table.routes[HOST]) == 2


def test_claim_holds_while_the_owner_is_not_ready() -> None:
    owner = clone("a", ns="team-a", created="2024-01-01T00:00:01Z")
    other = clone("b", ns="team-b", created="2024-01-01T00:00:02Z")
    got = resolve([owner, other], services(svc("b", "team-b")), "namespace")
    assert got.conditions["team-a/a"].reason == SERVICE_NOT_FOUND
    assert got.conditions["team-b/b"].reason == HOST_CLAIMED
    assert got.table.routes == {}


def test_shared_policy_fans_out_across_namespaces() -> None:
    got = resolve([clone("a", ns="team-a"), clone("b", ns="team-b")],
                  services(svc("a", "team-a"), svc("b", "team-b", "10.0.0.2")), "shared")
    assert [b.route for b in got.table.routes[HOST]] == ["team-a/a", "team-b/b"]


def test_hosts_match_case_insensitively_for_claims() -> None:
    got = resolve([clone("a", ns="x", host="HOOK.example.com", created="2024-01-01T00:00:01Z"),
                   clone("b", ns="y", host="hook.example.com.", created="2024-01-01T00:00:02Z")],
                  services(svc("a", "x"), svc("b", "y")))
    assert got.conditions["y/b"].reason == HOST_CLAIMED


def test_file_source_applies_the_same_host_policy() -> None:
    a = clone("a", ns="team-a", port=80, created="")
    b = clone("b", ns="team-b", port=80, created="")
    table, rejected = file_table([b, a], {}, "namespace")
    assert [x.route for x in table.routes[HOST]] == ["team-a/a"]
    assert [(r.name, r.reason.split(":")[0]) for r in rejected] == [("team-b/b", HOST_CLAIMED)]
    shared, none = file_table([b, a], {}, "shared")
    assert len(shared.routes[HOST]) == 2 and none == []


def test_of_two_objects_with_one_name_the_last_decides_condition_and_route() -> None:
    # A routes directory can define one namespace/name twice (the fuzz test found this).
    invalid = Invalid("apps", "app-1", 1, "spec: 'host' is a required property")
    got = resolve([clone("app-1"), invalid], services(svc("app-1")))
    assert got.conditions["apps/app-1"].reason == INVALID_SPEC
    assert got.table.routes == {}
    got = resolve([invalid, clone("app-1")], services(svc("app-1")))
    assert got.conditions["apps/app-1"].reason == READY
    assert got.table.routes == {HOST: (Backend("apps/app-1", "http://10.0.0.1:80"),)}
