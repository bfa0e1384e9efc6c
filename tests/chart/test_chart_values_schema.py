"""values.schema.json: helm refuses bad values before rendering, naming the value.

Covered:
- wrong enums (sweep mode, certificate source), malformed durations, unknown keys at every
  level, out-of-range numbers (token seconds below the API's floor, webhook timeout above
  30 s, a FlowSchema precedence the built-in `service-accounts` schema would beat, priority
  level settings the API server refuses), list entries that would break the
  comma-separated ZSP_* variables;
- queue settings the API server would refuse together (a hand larger than the deck, or one
  needing more than 60 bits of shuffle sharding) fail the render, naming the value;
- the schema's duration pattern and sweep modes are the operator's own (core.durations,
  config.SweepMode), so the chart accepts exactly what `zsp run` accepts;
- every key of values.yaml is described by the schema (strict objects all the way down).
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from chartkit import chart_schema, chart_values, render, render_error

from zsp_operator.core.durations import DURATION_PATTERN, parse_duration
from zsp_operator.settings import SweepMode

# (values, the field helm names, what it says): each a distinct field, so that helm, which
# lists every violation, is asked once for all of them.
BAD_VALUES = [
    ({"operator": {"sweep": {"mode": "delete"}}}, "/operator/sweep/mode", "audit"),
    ({"operator": {"resync": "5 minutes"}}, "/operator/resync", "does not match pattern"),
    ({"operator": {"breakGlassMaxTTL": "-1h"}}, "/operator/breakGlassMaxTTL", "pattern"),
    (
        {"operator": {"leaderElection": {"leaseDuration": "15"}}},
        "/operator/leaderElection/leaseDuration",
        "pattern",
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
    # From 9000 on the built-in `service-accounts` schema would win; 1 is only for `exempt`.
    ({"flowControl": {"matchingPrecedence": 9000}}, "/flowControl/matchingPrecedence", "want 8,999"),
    ({"flowControl": {"nominalConcurrencyShares": 0}}, "/flowControl/nominalConcurrencyShares", "want 1"),
    ({"flowControl": {"lendablePercent": 101}}, "/flowControl/lendablePercent", "want 100"),
    ({"flowControl": {"queuing": {"queues": 0}}}, "/flowControl/queuing/queues", "want 1"),
    (
        {"flowControl": {"queuing": {"queueLengthLimit": -1}}},
        "/flowControl/queuing/queueLengthLimit",
        "want 1",
    ),
    ({"flowControl": {"borrowingLimitPercent": 10}}, "/flowControl'", "'borrowingLimitPercent' not allowed"),
]


def _merged(cases: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for case in cases:
        for key, value in case.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = _merged([merged[key], value])
            else:
                merged[key] = value
    return merged


@functools.cache
def all_bad_at_once() -> str:
    assert len({field for _, field, _ in BAD_VALUES}) == len(BAD_VALUES)
    return render_error(_merged([values for values, _, _ in BAD_VALUES]))


@pytest.mark.parametrize(("values", "field", "complaint"), BAD_VALUES)
def test_bad_values_are_refused_with_the_field_named(
    values: dict[str, Any], field: str, complaint: str
) -> None:
    error = all_bad_at_once()
    assert "values don't meet the specifications of the schema" in error, error
    lines = [line for line in error.splitlines() if field in line and complaint in line]
    assert lines, f"no line names {field} with {complaint!r}:\n{error}"


@pytest.mark.parametrize(
    ("queues", "hand_size", "complaint"),
    [
        (4, 5, "flowControl.queuing.handSize: must not be greater than flowControl.queuing.queues"),
        (1024, 7, "flowControl.queuing.handSize: queues^handSize must not exceed 2^60"),
        (10_000_000, 3, "flowControl.queuing.handSize: queues^handSize must not exceed 2^60"),
    ],
)
def test_queue_settings_the_api_server_refuses_fail_the_render(
    queues: int, hand_size: int, complaint: str
) -> None:
    error = render_error({"flowControl": {"queuing": {"queues": queues, "handSize": hand_size}}})
    assert complaint in error, error


def test_queue_settings_at_the_api_servers_limits_render() -> None:
    # 1024^6 is 2^60 exactly: the most shuffle sharding the API server accepts.
    for queues, hand_size in [(1024, 6), (4, 4), (10_000_000, 2)]:
        level = render({"flowControl": {"queuing": {"queues": queues, "handSize": hand_size}}})
        queuing = level.one("PriorityLevelConfiguration")["spec"]["limited"]["limitResponse"]["queuing"]
        assert (queuing["queues"], queuing["handSize"]) == (queues, hand_size)


def test_a_wrong_type_alone_is_refused() -> None:
    error = render_error({"operator": {"resync": 300}})
    assert "at '/operator/resync': got number, want string" in error, error


def test_go_durations_are_accepted() -> None:
    durations = {
        "ZSP_RESYNC": ("resync", "1h2m3s"),
        "ZSP_BREAK_GLASS_MAX_TTL": ("breakGlassMaxTTL", "0.5h"),
        "ZSP_LEASE_DURATION": ("leaseDuration", "90s"),
        "ZSP_RENEW_DEADLINE": ("renewDeadline", "1m"),
        "ZSP_RETRY_PERIOD": ("retryPeriod", "1500ms"),
    }
    election = {key: d for env, (key, d) in durations.items() if env.startswith(("ZSP_LEASE", "ZSP_RE"))}
    election.pop("resync")
    operator = {"resync": "1h2m3s", "breakGlassMaxTTL": "0.5h", "leaderElection": election}
    rendered = render({"operator": operator})
    for env, (_, duration) in durations.items():
        assert parse_duration(rendered.env_values[env]) == parse_duration(duration), env


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
