"""The chart's notification settings (docs/notifications.md), rendered by a real helm.

Covered: off by default (no variable, no mount); with `operator.notifications.secretName` the
routes file is mounted read-only from that Secret and `ZSP_NOTIFY_CONFIG` names it, with the
delivery settings, all accepted by Settings; the operator is still granted no read of any
Secret; the values schema refuses a malformed Secret name, key or timeout.
"""

from __future__ import annotations

from typing import Any

import pytest
from chartkit import NAMESPACE, render, render_error

from zsp_operator.settings import Settings

ON = {"operator": {"notifications": {"secretName": "zsp-notify", "key": "routes.yaml", "timeout": "5s"}}}


def _pod(rendered: Any) -> dict[str, Any]:
    spec: dict[str, Any] = rendered.one("Deployment")["spec"]["template"]["spec"]
    return spec


def test_notifications_are_off_by_default() -> None:
    rendered = render()
    assert not [name for name in rendered.env if name.startswith("ZSP_NOTIFY")]
    assert "notifications" not in {v["name"] for v in _pod(rendered)["volumes"]}


def test_routes_file_is_mounted_from_the_secret() -> None:
    rendered = render(ON)
    [volume] = [v for v in _pod(rendered)["volumes"] if v["name"] == "notifications"]
    assert volume["secret"]["secretName"] == "zsp-notify"
    [mount] = [m for m in rendered.container["volumeMounts"] if m["name"] == "notifications"]
    assert mount == {
        "name": "notifications",
        "mountPath": "/etc/zsp-operator/notifications",
        "readOnly": True,
    }
    env = rendered.env_values
    assert env["ZSP_NOTIFY_CONFIG"] == "/etc/zsp-operator/notifications/routes.yaml"
    kwargs: dict[str, Any] = {n.removeprefix("ZSP_").lower(): v for n, v in env.items()}
    settings = Settings(**kwargs, lease_namespace=NAMESPACE)
    assert settings.notify_config == "/etc/zsp-operator/notifications/routes.yaml"
    assert settings.notify_attempts == 8
    assert settings.notify_queue == 1000
    assert settings.notify_timeout.total_seconds() == 5


def test_the_operator_reads_no_secret_for_notifications() -> None:
    rendered = render(ON)
    for rule in rendered.one("ClusterRole")["rules"]:
        if "secrets" in rule["resources"]:
            assert not {"get", "list", "watch"} & set(rule["verbs"]), rule


@pytest.mark.parametrize(
    "notifications",
    [{"secretName": "Not_A_Name"}, {"key": "../routes"}, {"timeout": "ten seconds"}, {"attempts": 0}],
)
def test_malformed_values_are_refused(notifications: dict[str, Any]) -> None:
    assert "notifications" in render_error({"operator": {"notifications": notifications}})
