"""Metric names out of PromQL, the Grafana dashboard and docs/CONTRACTS.md.

Reusable by a live-scrape test: ``dashboard_series()`` gives the exact series names the dashboard
queries (``..._bucket`` included) and ``family()`` maps one back to the metric family that
CONTRACTS.md and a ``/metrics`` page's ``# TYPE`` lines name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "hookfan" / "dashboards" / "hookfan.json"
CONTRACTS = ROOT / "docs" / "CONTRACTS.md"

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
             "unless", "offset", "inf", "nan", "atan2"}
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression.

    Strips what is not a metric name first: string literals, label matchers ``{...}``, range and
    subquery selectors ``[...]``, grouping clauses ``by (...)``/``on (...)``, and Grafana
    variables (``$__rate_interval``); then every identifier not followed by ``(`` (a function)
    and not a keyword is a metric name.
    """
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for m in _IDENT.finditer(text):
        rest = text[m.end():].lstrip()
        word = m.group(0)
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue
        if m.start() > 0 and (text[m.start() - 1].isdigit() or text[m.start() - 1] == "."):
            continue  # the unit of a number, as in 5m or 1e3
        names.add(word)
    return names


def family(series: str, histograms: set[str]) -> str:
    """``foo_seconds_bucket`` -> ``foo_seconds`` when ``foo_seconds`` is a histogram."""
    for suffix in _HISTOGRAM_SUFFIXES:
        if series.endswith(suffix) and series[: -len(suffix)] in histograms:
            return series[: -len(suffix)]
    return series


def _targets(panels: list[dict[str, Any]]) -> Iterator[str]:
    for panel in panels:
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield str(target["expr"])
        yield from _targets(panel.get("panels", []))  # rows nest panels


def dashboard_exprs(path: Path = DASHBOARD) -> list[str]:
    dash = json.loads(path.read_text(encoding="utf-8"))
    exprs = list(_targets(dash.get("panels", [])))
    for var in dash.get("templating", {}).get("list", []):
        query = var.get("query")
        if var.get("type") == "query":
            exprs.append(str(query["query"] if isinstance(query, dict) else query))
    return exprs


def _label_values_metric(expr: str) -> set[str]:
    m = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{[^}]*\})?\s*,.*",
                     expr)
    return {m.group(1)} if m else set()


def dashboard_series(path: Path = DASHBOARD) -> set[str]:
    """Every series name the dashboard queries, as written (``*_bucket`` kept)."""
    names: set[str] = set()
    for expr in dashboard_exprs(path):
        names |= _label_values_metric(expr) or metric_names(expr)
    return names


def contract_metrics(path: Path = CONTRACTS) -> dict[str, str]:
    """``{metric name: type}`` from the Prometheus metrics table of docs/CONTRACTS.md."""
    text = path.read_text(encoding="utf-8")
    section = text.split("## Prometheus metrics", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|\s*([a-z]+)", section, re.MULTILINE)
    return dict(rows)
