"""The chart lints cleanly in strict mode and its schema turns away bad values."""

from __future__ import annotations

import re
from typing import Any

import helm_python
import pytest

from .chart import CHART, SCENARIOS, chart, render, render_raw


def _problems(report: dict[str, Any]) -> list[str]:
    # severity: 1 info, 2 warning, 3 error; strict mode makes warnings fail as well.
    return report["errors"] + [f"{m['path']}: {m['error']}" for m in report["messages"]
                               if m["severity"] >= 2]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_chart_lints_strict_without_problems(scenario: str) -> None:
    report = helm_python.lint(CHART, SCENARIOS[scenario], strict=True, namespace="hookfan")
    assert report["total_charts_linted"] == 1
    assert _problems(report) == []


@pytest.mark.parametrize("kube_version", ["v1.25.0", "v1.37.0"])
def test_chart_lints_against_claimed_kubernetes_versions(kube_version: str) -> None:
    # Helm's linter flags APIs deprecated or removed in the given version.
    values = SCENARIOS["hpa"] | SCENARIOS["ingress"]
    report = helm_python.lint(CHART, values, strict=True, kube_version=kube_version)
    assert _problems(report) == []


def test_chart_is_api_v2_with_schema_and_docs() -> None:
    meta = chart().metadata
    assert meta["apiVersion"] == "v2"
    assert chart().schema is not None
    names = {f["name"] for f in chart().files}
    assert {"README.md", "dashboards/hookfan.json"} <= names
    assert any(t["name"] == "templates/NOTES.txt" for t in chart().templates)


@pytest.mark.parametrize("values", [
    {"unknownKey": True},
    {"redis": {"appendfsync": "no"}},
    {"redis": {"appendfsync": "everysec"}},
    {"redis": {"external": {"url": "redis://user:hunter2@redis:6379/0"}}},
    {"delivery": {"minRetryDelay": "soon"}},
    {"logLevel": "verbose"},
    {"app": {"workers": 0}},
], ids=["unknown-key", "no-fsync", "everysec", "password-in-url", "bad-duration", "bad-level",
        "no-workers"])
def test_schema_rejects_bad_values(values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        chart().validate_schema(values)


@pytest.mark.parametrize("values, message", [
    ({"delivery": {"timeoutSeconds": 30}, "worker": {"terminationGracePeriodSeconds": 130}},
     r"4\*delivery\.timeoutSeconds\+20"),
    ({"worker": {"terminationGracePeriodSeconds": 40}}, "terminationGracePeriodSeconds"),
    ({"operator": {"leaderElection": False}}, "leaderElection"),
    ({"ingress": {"enabled": True}}, "ingress.hosts"),
])
def test_inconsistent_values_fail_with_a_message_naming_the_fix(
        values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=message):
        render(values)


def _keys(node: dict[str, Any], prefix: str = "") -> dict[str, bool]:
    """Every dotted key in ``node`` -> whether it is a leaf."""
    keys: dict[str, bool] = {}
    for k, v in node.items():
        path = f"{prefix}{k}"
        keys[path] = not (isinstance(v, dict) and v)
        if not keys[path]:
            keys |= _keys(v, path + ".")
    return keys


def test_readme_values_table_documents_every_value() -> None:
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.MULTILINE))
    keys = _keys(chart().values)
    # A documented key covers everything beneath it (free-form maps such as resources).
    missing = {k for k, leaf in keys.items() if leaf
               and not any(k == d or k.startswith(d + ".") for d in documented)}
    assert missing == set()
    assert documented <= set(keys)  # and nothing stale is documented


def test_notes_tell_where_webhooks_go_and_how_to_reach_flower() -> None:
    notes = render_raw()["hookfan/templates/NOTES.txt"]
    assert "hookfan.hookfan.svc:80" in notes
    assert "port-forward svc/hookfan-flower 5555" in notes
    off = render_raw({"flower": {"enabled": False}, "redis": {"persistence": {"enabled": False}}})
    notes_off = off["hookfan/templates/NOTES.txt"]
    assert "flower" not in notes_off.lower()
    assert "NO persistent volume" in notes_off
