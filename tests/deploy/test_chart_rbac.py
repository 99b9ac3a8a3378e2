"""The operator gets exactly the permissions docs/CONTRACTS.md lists, in the right scope."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .chart import NAMESPACE, ROOT, containers, find, flag, one

Rule = tuple[str, str, str]  # (apiGroup, resource, verb)


def contract_rules() -> set[Rule]:
    """Parse "Operator RBAC" in docs/CONTRACTS.md: ``- `group` `res`: verbs; `res2`: verbs``."""
    text = (ROOT / "docs" / "CONTRACTS.md").read_text(encoding="utf-8")
    section = text.split("## Operator RBAC", 1)[1].split("\n## ", 1)[0]
    rules: set[Rule] = set()
    line_group = ""
    for line in section.splitlines():
        if not line.startswith("- "):
            continue
        for clause in line[2:].split(";"):
            names, _, verbs = clause.partition(":")
            quoted = re.findall(r"`([^`]*)`", names)
            # "`""` `events` and `events.k8s.io` `events`": pairs of (group, resource).
            if len(quoted) == 1:  # "`requestclones/status`": the group named before it
                pairs = [(line_group, quoted[0])]
            else:
                pairs = [(quoted[i], quoted[i + 1]) for i in range(0, len(quoted) - 1, 2)]
                line_group = pairs[0][0]
            for group, resource in pairs:
                group = "" if group == '""' else group
                for verb in (v.strip() for v in verbs.split(",")):
                    rules.add((group, resource, verb))
    return rules


def granted(docs: list[dict[str, Any]], kind: str) -> set[Rule]:
    out: set[Rule] = set()
    for role in find(docs, kind):
        for rule in role["rules"]:
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    for v in rule["verbs"]:
                        out.add((g, r, v))
    return out


def test_contract_parser_reads_every_rule() -> None:
    rules = contract_rules()
    assert ("proxy.infra.doodle.com", "requestclones/status", "patch") in rules
    assert ("events.k8s.io", "events", "create") in rules
    assert ("", "services", "watch") in rules
    assert ("webhook.infra.doodle.com", "receivers/status", "patch") in rules
    assert ("", "secrets", "watch") in rules
    assert len(rules) == 24


def test_cluster_mode_grants_exactly_the_contract(defaults: list[dict[str, Any]]) -> None:
    granted_all = granted(defaults, "ClusterRole") | granted(defaults, "Role")
    assert granted_all == contract_rules()
    # Leases live in the release namespace only: never cluster-wide.
    assert not any(r[1] == "leases" for r in granted(defaults, "ClusterRole"))
    assert {r for r in granted(defaults, "Role")} == {
        ("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}


def test_no_wildcards_anywhere(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for docs in rendered.values():
        for rule in granted(docs, "ClusterRole") | granted(docs, "Role"):
            assert "*" not in rule


def test_namespaced_mode_uses_a_role_and_tells_the_operator(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["namespaced"]
    assert find(docs, "ClusterRole") == [] and find(docs, "ClusterRoleBinding") == []
    # Namespaces are cluster-scoped: a Role cannot grant them (docs/CONTRACTS.md says so).
    namespaces = {("", "namespaces", v) for v in ("get", "list", "watch")}
    assert granted(docs, "Role") == contract_rules() - namespaces
    role = one(docs, "Role", "hookfan-operator")
    assert role["metadata"]["namespace"] == NAMESPACE
    (op,) = containers(one(docs, "Deployment", "hookfan-operator"))
    assert flag(op, "watch-all-namespaces") == "false"


@pytest.mark.parametrize("scenario, kind", [("defaults", "ClusterRoleBinding"),
                                            ("defaults", "RoleBinding"),
                                            ("namespaced", "RoleBinding")])
def test_bindings_point_at_the_operator_service_account(
        rendered: dict[str, list[dict[str, Any]]], scenario: str, kind: str) -> None:
    docs = rendered[scenario]
    sa = one(docs, "ServiceAccount", "hookfan")
    binding = one(docs, kind, "hookfan-operator")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": NAMESPACE}]
    role_kind = "ClusterRole" if kind == "ClusterRoleBinding" else "Role"
    assert binding["roleRef"]["kind"] == role_kind
    one(docs, role_kind, binding["roleRef"]["name"])


def test_only_the_operator_gets_an_api_token(defaults: list[dict[str, Any]]) -> None:
    for w in find(defaults, "Deployment") + find(defaults, "StatefulSet"):
        spec = w["spec"]["template"]["spec"]
        if w["metadata"]["name"] == "hookfan-operator":
            assert spec["serviceAccountName"] == "hookfan"
        else:
            assert spec.get("automountServiceAccountToken") is False, w["metadata"]["name"]
