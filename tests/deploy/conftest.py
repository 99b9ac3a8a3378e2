"""Deployment artefacts are checked statically: no cluster, no Docker engine and no helm binary
exist here. The chart is rendered by helm-python-sdk (Helm's Go SDK), manifests are validated
against Kubernetes' OpenAPI schemas by kubernetes-validate, compose.yaml by the Compose binary."""

from __future__ import annotations

from typing import Any

import pytest

from .chart import SCENARIOS, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every scenario rendered once per session (each render takes milliseconds)."""
    return {name: render(values) for name, values in SCENARIOS.items()}


@pytest.fixture(scope="session")
def defaults(rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return rendered["defaults"]
