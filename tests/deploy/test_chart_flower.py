"""Flower is a control panel (its API can shut down workers and revoke tasks): the chart says so,
fences it with a NetworkPolicy and can put an OAuth login in front of it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import flower.urls
import flower.views.auth
import helm_python
import pytest

from .chart import CHART, SCENARIOS, containers, find, one, render


def flower_env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    (c,) = containers(one(docs, "Deployment", "hookfan-flower"))
    return {e["name"]: e for e in c["env"]}


def test_the_chart_tells_the_truth_about_flowers_api() -> None:
    routes = {h[0] for h in flower.urls.handlers if isinstance(h, tuple)}
    # What the installed Flower really serves ...
    assert {r"/api/worker/shutdown/(.+)", r"/api/task/revoke/(.+)"} <= routes
    # ... is what the chart's text says, and no text claims it can do nothing.
    for path in (CHART / "values.yaml", CHART / "templates" / "flower.yaml",
                 CHART / "README.md"):
        text = Path(path).read_text()
        assert not re.search(r"can replay nothing|flower[^.\n]*read-only", text, re.I), path
    values = (CHART / "values.yaml").read_text()
    assert "shut down workers" in values and "revoke" in values
    service = (CHART / "templates" / "flower.yaml").read_text()
    assert "/api/worker/shutdown" in service and "/api/task/revoke" in service


def test_flower_admits_no_one_over_the_network_by_default() -> None:
    docs = render()
    policy = one(docs, "NetworkPolicy", "hookfan-flower")
    assert policy["spec"]["podSelector"]["matchLabels"] == one(
        docs, "Deployment", "hookfan-flower")["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == []
    assert find(render({"flower": {"networkPolicy": {"enabled": False}}}), "NetworkPolicy",
                "hookfan-flower") == []


def test_flower_admits_the_peers_named() -> None:
    policy = one(render(SCENARIOS["flower-oauth"]), "NetworkPolicy", "hookfan-flower")
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == SCENARIOS["flower-oauth"]["flower"]["networkPolicy"]["from"]
    assert rule["ports"] == [{"port": 5555, "protocol": "TCP"}]


def test_oauth_values_become_flowers_own_options() -> None:
    docs = render(SCENARIOS["flower-oauth"])
    env = flower_env(docs)
    assert env["FLOWER_AUTH_PROVIDER"]["value"] == "flower.views.auth.GithubLoginHandler"
    assert env["FLOWER_AUTH"]["value"] == r".*@example\.com"
    assert env["FLOWER_OAUTH2_REDIRECT_URI"]["value"] == "https://flower.example.com/login"
    assert env["FLOWER_OAUTH2_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "flower-oauth", "key": "client-id"}
    assert env["FLOWER_OAUTH2_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "flower-oauth", "key": "client-secret"}
    # OAuth replaces basic auth: no login Secret, no FLOWER_BASIC_AUTH.
    assert "FLOWER_BASIC_AUTH" not in env
    assert find(docs, "Secret", "hookfan-flower-auth") == []


@pytest.mark.parametrize("provider", ["google", "github", "gitlab", "okta"])
def test_every_provider_names_a_handler_flower_has(provider: str) -> None:
    values = {"flower": {**SCENARIOS["flower-oauth"]["flower"],
                         "oauth": {**SCENARIOS["flower-oauth"]["flower"]["oauth"],
                                   "provider": provider}}}
    handler = flower_env(render(values))["FLOWER_AUTH_PROVIDER"]["value"]
    module, _, name = handler.rpartition(".")
    assert module == "flower.views.auth"
    assert isinstance(getattr(flower.views.auth, name), type)


def test_oauth_without_its_settings_is_refused() -> None:
    with pytest.raises(helm_python.HelmError, match="redirectUri"):
        render({"flower": {"oauth": {"provider": "google"}}})


def test_basic_auth_stays_the_default() -> None:
    env = flower_env(render())
    assert env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]["name"] == "hookfan-flower-auth"
    assert "FLOWER_AUTH_PROVIDER" not in env
