"""The chart's PrometheusRule: the alerts of docs/operating.md, off by default.

Covered: nothing is rendered unless `prometheusRule.enabled`, and `helm lint --strict` passes
with it; every alert has a severity and a summary and carries `alertLabels`; `disabled`
leaves alerts out, and its allowed names are exactly the alerts the template has; the operator-down alert watches the job the chart's
ServiceMonitor produces (or `job`); every series an alert reads is a metric docs/metrics.md
documents (so tests/test_dashboard.py's check of the operator's metrics covers the alerts
too); docs/operating.md names every alert; bad values are refused naming the value.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from chartkit import CHART, REPO, chart_schema, helm, render, render_error

ON: dict[str, Any] = {"prometheusRule": {"enabled": True}}
METRICS_DOC = REPO / "docs" / "metrics.md"
OPERATING_DOC = REPO / "docs" / "operating.md"
SERIES = re.compile(r"\b(zsp_\w+)")
SUFFIXES = ("_bucket", "_sum", "_count")


def rules(values: dict[str, Any]) -> list[dict[str, Any]]:
    rule = render(values).one("PrometheusRule")
    groups = rule["spec"]["groups"]
    assert [g["name"] for g in groups] == ["zsp-operator"]
    found: list[dict[str, Any]] = groups[0]["rules"]
    return found


def documented_metrics() -> set[str]:
    return set(re.findall(r"^\| `(zsp_\w+)` \|", METRICS_DOC.read_text(encoding="utf-8"), re.MULTILINE))


def base_name(series: str) -> str:
    for suffix in SUFFIXES:
        if series.endswith(suffix):
            return series.removesuffix(suffix)
    return series


def test_no_prometheus_rule_by_default() -> None:
    assert "PrometheusRule" not in render().kinds()


def test_helm_lint_strict_passes_with_the_rule(tmp_path: Path) -> None:
    file = tmp_path / "values.json"
    file.write_text(json.dumps({"prometheusRule": {"enabled": True, "alertLabels": {"team": "platform"}}}))
    result = helm("lint", "--strict", str(CHART), "--values", str(file))
    assert "0 chart(s) failed" in result.stdout


def test_every_alert_has_a_severity_a_summary_and_the_extra_labels() -> None:
    found = rules({"prometheusRule": {"enabled": True, "alertLabels": {"team": "platform"}}})
    assert len(found) >= 8
    for alert in found:
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, alert["alert"]
        assert alert["labels"]["team"] == "platform", alert["alert"]
        assert alert["annotations"]["summary"], alert["alert"]


def test_the_allowed_names_to_disable_are_exactly_the_alerts() -> None:
    names = [alert["alert"] for alert in rules(ON)]
    schema = chart_schema()["properties"]["prometheusRule"]["properties"]["disabled"]["items"]["enum"]
    assert sorted(schema) == sorted(names)
    kept = rules({"prometheusRule": {"enabled": True, "disabled": ["ZspBreakGlassUsed", "ZspSweepStalled"]}})
    assert [a["alert"] for a in kept] == [
        n for n in names if n not in {"ZspBreakGlassUsed", "ZspSweepStalled"}
    ]


def test_operator_down_watches_the_service_monitors_job() -> None:
    rendered = render({"prometheusRule": {"enabled": True}, "serviceMonitor": {"enabled": True}})
    monitor = rendered.one("ServiceMonitor")
    service = rendered.one("Service", "zsp-operator-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    down = next(
        a
        for a in rendered.one("PrometheusRule")["spec"]["groups"][0]["rules"]
        if a["alert"] == "ZspOperatorDown"
    )
    # The Prometheus Operator names the job after the Service it scrapes.
    assert down["expr"] == 'absent(up{job="zsp-operator-metrics"} == 1)'
    custom = next(
        a
        for a in rules({"prometheusRule": {"enabled": True, "job": "zsp"}})
        if a["alert"] == "ZspOperatorDown"
    )
    assert custom["expr"] == 'absent(up{job="zsp"} == 1)'


def test_alerts_read_only_documented_metrics() -> None:
    documented = documented_metrics()
    assert documented, "docs/metrics.md lists no metric"
    for alert in rules(ON):
        # Counters are documented with `_total`, histograms without their series' suffixes.
        series = set(SERIES.findall(alert["expr"]))
        unknown = {s for s in series if s not in documented and base_name(s) not in documented}
        assert not unknown, f"{alert['alert']} reads {sorted(unknown)}, not in docs/metrics.md"


def test_the_operating_guide_names_every_alert() -> None:
    text = OPERATING_DOC.read_text(encoding="utf-8")
    missing = [a["alert"] for a in rules(ON) if f"`{a['alert']}`" not in text]
    assert not missing, f"docs/operating.md does not describe {missing}"


def test_bad_values_are_refused_naming_the_value() -> None:
    error = render_error({"prometheusRule": {"enabled": True, "disabled": ["ZspNoSuchAlert"]}})
    assert "/prometheusRule/disabled/0" in error
    error = render_error({"prometheusRule": {"enabled": True, "sweepStalledAfter": "half an hour"}})
    assert "/prometheusRule/sweepStalledAfter" in error
    error = render_error({"prometheusRule": {"enabledd": True}})
    assert "'enabledd' not allowed" in error
