"""Defaults that isolate (issue 19): the chart and compose start the worker with hookfan's own
delivery defaults, and those leave pool processes to other backends beside a slow one.

A backend's batches run in one pool process at a time (one task per backend, across all
workers), so a slow backend takes one of ``--concurrency`` processes and the rest serve every
other backend. tests/delivery/test_default_isolation.py measures it on a real stack."""

from __future__ import annotations

from typing import Any

from hookfan import cli
from hookfan.config import DeliverySettings

from .chart import containers, one
from .test_compose import model


def test_the_chart_and_compose_run_workers_with_the_delivery_defaults(
        defaults: list[dict[str, Any]]) -> None:
    bare = DeliverySettings()
    assert bare.concurrency >= 2  # a slow backend's process, and at least one for the others
    (chart,) = containers(one(defaults, "Deployment", "hookfan-worker"))
    compose = model()["services"]["worker"]["command"]
    for where, args in (("chart", chart["args"]), ("compose", compose)):
        got = cli.resolve(args, {}).settings.delivery
        assert (got.concurrency, got.backend_concurrency, got.batch) == (
            bare.concurrency, bare.backend_concurrency, bare.batch), where
