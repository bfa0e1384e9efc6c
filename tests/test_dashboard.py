"""docs/metrics.md, the metrics the operator serves, and the Grafana dashboard agree.

Covered: every family the operator registers is documented with its type and labels, and
nothing is documented that it does not serve; every query of the dashboard (panels and
variables) reads only documented series, and every documented metric is on the dashboard;
the dashboard is a well-formed classic Grafana model (unique panel ids, a grid position
each, the Prometheus data source as a variable, balanced brackets in every query).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zsp_operator.observe.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "charts" / "zsp-operator" / "dashboards" / "zsp-operator.json"
DOC = ROOT / "docs" / "metrics.md"
ROW = re.compile(r"^\| `(zsp_\w+)` \| (counter|gauge|histogram) \|([^|]*)\|")
SERIES = re.compile(r"\bzsp_\w+")
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def documented() -> dict[str, tuple[str, set[str]]]:
    """metric name -> (type, label names), from the table in docs/metrics.md."""
    table = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            name, kind, labels = match.groups()
            table[name] = (kind, set(re.findall(r"`(\w+)`", labels)))
    return table


def served_series() -> set[str]:
    """Every series name a documented metric is exposed under."""
    names = set()
    for name, (kind, _) in documented().items():
        base = name.removesuffix("_total")
        names.update(base + suffix for suffix in SUFFIXES[kind])
    return names


def queries(dashboard: dict[str, Any]) -> Iterator[str]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            yield query["query"]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return body


def test_every_registered_family_is_documented_with_its_type_and_labels() -> None:
    table = documented()
    metrics = Metrics()
    families = {f.name: f.type for f in metrics.registry.collect()}
    # prometheus-client names a counter family without `_total`; the documentation names the series.
    assert {name + "_total" if kind == "counter" else name for name, kind in families.items()} == set(table)
    for name, (kind, labels) in table.items():
        assert families[name.removesuffix("_total")] == kind, name
        assert set(_attribute(metrics, name)._labelnames) == labels, name


def _attribute(metrics: Metrics, name: str) -> Any:
    base = name.removesuffix("_total")
    for value in vars(metrics).values():
        if getattr(value, "_name", None) == base:
            return value
    raise AssertionError(f"{name} is not an attribute of Metrics")


def test_the_dashboard_reads_only_documented_series(dashboard: dict[str, Any]) -> None:
    allowed = served_series()
    for expr in queries(dashboard):
        unknown = set(SERIES.findall(expr)) - allowed
        assert not unknown, f"{expr!r} reads undocumented series {sorted(unknown)}"


def test_every_documented_metric_is_on_the_dashboard(dashboard: dict[str, Any]) -> None:
    used = {series for expr in queries(dashboard) for series in SERIES.findall(expr)}
    for name, (kind, _) in documented().items():
        base = name.removesuffix("_total")
        assert any(base + suffix in used for suffix in SUFFIXES[kind]), f"{name} is not on the dashboard"


def test_the_dashboard_is_a_well_formed_grafana_model(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "zsp-operator"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for expr in queries(dashboard):
        for opening, closing in ("()", "{}", "[]"):
            assert expr.count(opening) == expr.count(closing), expr
