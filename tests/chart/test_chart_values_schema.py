"""values.schema.json: helm refuses bad values before rendering, naming the value.

Covered:
- wrong enums (sweep mode, certificate source), malformed durations, unknown keys at every
  level, out-of-range numbers (token seconds below the API's floor, webhook timeout above
  30 s), list entries that would break the comma-separated ZSP_* variables;
- the schema's duration pattern and sweep modes are the operator's own (core.durations,
  config.SweepMode), so the chart accepts exactly what `zsp run` accepts;
- every key of values.yaml is described by the schema (strict objects all the way down).
"""

from __future__ import annotations

from typing import Any

import pytest
from chartkit import chart_schema, chart_values, render, render_error

from zsp_operator.config import SweepMode
from zsp_operator.core.durations import DURATION_PATTERN, parse_duration


@pytest.mark.parametrize(
    ("values", "field", "complaint"),
    [
        ({"operator": {"sweep": {"mode": "delete"}}}, "/operator/sweep/mode", "audit"),
        ({"operator": {"resync": "5 minutes"}}, "/operator/resync", "does not match pattern"),
        ({"operator": {"resync": 300}}, "/operator/resync", "string"),
        ({"operator": {"breakGlassMaxTTL": "-1h"}}, "/operator/breakGlassMaxTTL", "pattern"),
        (
            {"operator": {"leaderElection": {"leaseDuration": "15"}}},
            "/operator/leaderElection/leaseDuration",
            "",
        ),
        ({"operator": {"tokenSeconds": 60}}, "/operator/tokenSeconds", "600"),
        ({"operator": {"catalog": ["view,edit"]}}, "/operator/catalog/0", "pattern"),
        ({"operator": {"namespaces": ["Team_A"]}}, "/operator/namespaces/0", "pattern"),
        ({"operator": {"resyncc": "5m"}}, "/operator'", "'resyncc' not allowed"),
        ({"replicas": 3}, "at ''", "'replicas' not allowed"),
        ({"webhook": {"timeoutSeconds": 31}}, "/webhook/timeoutSeconds", "30"),
        ({"webhook": {"certificate": {"source": "vault"}}}, "/webhook/certificate/source", "cert-manager"),
        ({"webhook": {"configurationName": "Zsp Operator"}}, "/webhook/configurationName", "pattern"),
        ({"image": {"digest": "latest"}}, "/image/digest", "pattern"),
        ({"ports": {"webhook": 70000}}, "/ports/webhook", "maximum"),
        ({"serviceMonitor": {"interval": "half a minute"}}, "/serviceMonitor/interval", "pattern"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(
    values: dict[str, Any], field: str, complaint: str
) -> None:
    error = render_error(values)
    assert "values don't meet the specifications of the schema" in error, error
    assert field in error, error
    assert complaint in error, error


@pytest.mark.parametrize("duration", ["90s", "15m", "1h30m", "0.5h", "8760h", "1h2m3s"])
def test_go_durations_are_accepted(duration: str) -> None:
    rendered = render({"operator": {"resync": duration}})
    assert parse_duration(rendered.env_values["ZSP_RESYNC"]) == parse_duration(duration)


def test_schema_duration_is_the_operators() -> None:
    assert chart_schema()["definitions"]["duration"]["pattern"] == DURATION_PATTERN


def test_schema_sweep_modes_are_the_operators() -> None:
    sweep = chart_schema()["properties"]["operator"]["properties"]["sweep"]["properties"]["mode"]
    assert sweep["enum"] == [mode.value for mode in SweepMode]


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _undescribed(schema: dict[str, Any], node: dict[str, Any], value: Any, path: str) -> list[str]:
    node = _resolve(schema, node)
    if not isinstance(value, dict) or "properties" not in node:
        return []
    missing = []
    for key, sub in value.items():
        if key not in node["properties"]:
            missing.append(f"{path}.{key}")
        else:
            missing += _undescribed(schema, node["properties"][key], sub, f"{path}.{key}")
    return missing


def test_every_value_is_in_the_schema() -> None:
    schema = chart_schema()
    assert _undescribed(schema, schema, chart_values(), "") == []


def _strict(schema: dict[str, Any], node: dict[str, Any], path: str) -> list[str]:
    node = _resolve(schema, node)
    loose = []
    if "properties" in node:
        if node.get("additionalProperties") is not False:
            loose.append(path or "(root)")
        for key, sub in node["properties"].items():
            loose += _strict(schema, sub, f"{path}.{key}")
    return loose


def test_every_object_the_chart_defines_is_closed() -> None:
    schema = chart_schema()
    assert _strict(schema, schema, "") == []
