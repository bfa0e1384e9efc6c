"""The chart's audit webhook values (evidence of use, docs/evidence.md), rendered by a real helm.

Covered:
- off by default, and while `auditWebhook.enabled` is false nothing of it renders whatever
  else is set: no ZSP_AUDIT_* variable, port, volume, Service or NetworkPolicy rule;
- enabled: the ZSP_AUDIT_* variables Settings accepts as `zsp run` would, naming the files the
  Secrets are mounted as (read-only, only the keys needed, mode 0440); the container port,
  and a Service `<release>-audit` that selects the pods and reaches that port by name, of
  type ClusterIP, NodePort or LoadBalancer as the values say; the NetworkPolicy admits the
  port from `networkPolicy.auditWebhookFrom` (anyone when empty); the ServiceMonitor does
  not select it;
- NOTES.txt prints the API server's flags and points to docs/evidence.md, only when enabled;
- refused: enabled without a certificate, or without a token or client CA (by the schema,
  and by the template when the schema is skipped), a port another one already uses, a node
  port on a ClusterIP Service, malformed values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chartkit import CHART, NAMESPACE, RELEASE, Rendered, helm, render, render_error

from zsp_operator.settings import Settings

TOKEN_ONLY: dict[str, Any] = {
    "enabled": True,
    "certSecret": "zsp-audit-tls",
    "tokenSecret": {"name": "zsp-audit-token", "key": "bearer"},
    "settle": "90s",
}
BOTH: dict[str, Any] = {
    **TOKEN_ONLY,
    "clientCASecret": {"name": "apiserver-client-ca"},
    "maxBodyBytes": 4194304,
}
SERVICE = "zsp-operator-audit"


def _pod(rendered: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = rendered.one("Deployment")["spec"]["template"]["spec"]
    return spec


def _volumes(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in _pod(rendered)["volumes"]}


def _mounts(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in rendered.container["volumeMounts"]}


def _services(rendered: Rendered) -> set[str]:
    return {s["metadata"]["name"] for s in rendered.all("Service")}


def _settings(rendered: Rendered) -> Settings:
    kwargs: dict[str, Any] = {n.removeprefix("ZSP_").lower(): v for n, v in rendered.env_values.items()}
    return Settings(**kwargs, lease_namespace=NAMESPACE)


def _file_of(rendered: Rendered, path: str) -> tuple[dict[str, Any], str]:
    """The Secret volume a file path in the container comes from, and the key it is."""
    for mount in rendered.container["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume = _volumes(rendered)[mount["name"]]
            relative = path.removeprefix(prefix)
            (item,) = [i for i in volume["secret"]["items"] if i["path"] == relative]
            return volume, item["key"]
    raise AssertionError(f"{path} is in no mount")


# --- off ----------------------------------------------------------------------------------


def test_off_by_default() -> None:
    rendered = render({"networkPolicy": {"enabled": True}})
    assert not [
        name for name in rendered.env if name.startswith("ZSP_AUDIT_WEBHOOK") or name == "ZSP_AUDIT_SETTLE"
    ]
    assert "audit" not in {p["name"] for p in rendered.container["ports"]}
    assert not {"audit-tls", "audit-token", "audit-client-ca"} & set(_volumes(rendered))
    assert SERVICE not in _services(rendered)
    rules = rendered.one("NetworkPolicy")["spec"]["ingress"]
    assert [r["ports"][0]["port"] for r in rules] == ["webhook", "metrics"]


def test_disabled_renders_nothing_of_it_whatever_else_is_set() -> None:
    configured = {**BOTH, "enabled": False, "service": {"type": "NodePort", "nodePort": 30444}}
    assert render({"auditWebhook": configured}).docs == render().docs
    peers = [{"ipBlock": {"cidr": "10.0.0.0/24"}}]
    policy = {"networkPolicy": {"enabled": True, "auditWebhookFrom": peers}}
    assert (
        render({"auditWebhook": configured, **policy}).docs
        == render({"networkPolicy": {"enabled": True}}).docs
    )


# --- on -----------------------------------------------------------------------------------


def test_enabled_with_a_token_passes_the_settings_zsp_run_needs() -> None:
    rendered = render({"auditWebhook": TOKEN_ONLY})
    env = rendered.env_values
    settings = _settings(rendered)
    assert settings.audit_webhook_port == 8444 == int(env["ZSP_AUDIT_WEBHOOK_PORT"])
    assert settings.audit_settle.total_seconds() == 90
    assert settings.audit_webhook_max_body == 16 * 1024 * 1024
    assert settings.audit_webhook_client_ca is None
    assert "ZSP_AUDIT_WEBHOOK_CLIENT_CA" not in env
    assert "audit-client-ca" not in _volumes(rendered)
    # The token file is the Secret's key, and only that key is projected.
    volume, key = _file_of(rendered, env["ZSP_AUDIT_WEBHOOK_TOKEN_FILE"])
    assert (volume["secret"]["secretName"], key) == ("zsp-audit-token", "bearer")
    assert volume["secret"]["items"] == [{"key": "bearer", "path": "bearer"}]


def test_enabled_with_a_client_ca_only() -> None:
    rendered = render(
        {
            "auditWebhook": {
                "enabled": True,
                "certSecret": "zsp-audit-tls",
                "clientCASecret": {"name": "apiserver-ca"},
            }
        }
    )
    env = rendered.env_values
    settings = _settings(rendered)
    assert settings.audit_webhook_token_file is None
    assert "audit-token" not in _volumes(rendered)
    volume, key = _file_of(rendered, env["ZSP_AUDIT_WEBHOOK_CLIENT_CA"])
    assert (volume["secret"]["secretName"], key) == ("apiserver-ca", "ca.crt")
    assert settings.audit_settle.total_seconds() == 60


def test_secrets_are_mounted_read_only_as_the_cert_dir_and_files() -> None:
    rendered = render({"auditWebhook": BOTH})
    env = rendered.env_values
    settings = _settings(rendered)
    assert settings.audit_webhook_max_body == 4194304
    # The certificate directory holds tls.crt and tls.key of the kubernetes.io/tls Secret.
    cert_dir = env["ZSP_AUDIT_WEBHOOK_CERT_DIR"]
    for name in ("tls.crt", "tls.key"):
        volume, key = _file_of(rendered, f"{cert_dir}/{name}")
        assert (volume["secret"]["secretName"], key) == ("zsp-audit-tls", name)
    for path in (env["ZSP_AUDIT_WEBHOOK_TOKEN_FILE"], env["ZSP_AUDIT_WEBHOOK_CLIENT_CA"]):
        _file_of(rendered, path)
    mounts, volumes = _mounts(rendered), _volumes(rendered)
    for name in ("audit-tls", "audit-token", "audit-client-ca"):
        assert mounts[name]["readOnly"] is True
        # Whole-directory mounts: a subPath mount would never see a renewed file.
        assert "subPath" not in mounts[name]
        assert volumes[name]["secret"]["defaultMode"] == 0o440
    # The operator still reads no Secret through the API.
    for rule in rendered.one("ClusterRole")["rules"]:
        if "secrets" in rule["resources"]:
            assert not {"get", "list", "watch"} & set(rule["verbs"]), rule


def test_the_service_reaches_the_audit_port_of_the_pods() -> None:
    rendered = render({"auditWebhook": TOKEN_ONLY}, namespace="ops")
    service = rendered.one("Service", SERVICE)
    assert service["metadata"]["namespace"] == "ops"
    assert service["spec"]["type"] == "ClusterIP"
    assert "clusterIP" not in service["spec"]
    (port,) = service["spec"]["ports"]
    assert port == {"name": "audit", "port": 8444, "targetPort": "audit", "protocol": "TCP"}
    ports = {p["name"]: p["containerPort"] for p in rendered.container["ports"]}
    assert ports["audit"] == int(rendered.env_values["ZSP_AUDIT_WEBHOOK_PORT"])
    pod_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    # Readiness stays on the webhook port: a standby answers admission, not audit events.
    assert rendered.container["readinessProbe"]["tcpSocket"] == {"port": "webhook"}


def test_port_and_service_come_from_values() -> None:
    values = {
        **TOKEN_ONLY,
        "port": 10444,
        "service": {"port": 443, "clusterIP": "10.96.0.44", "annotations": {"team": "platform"}},
    }
    rendered = render({"auditWebhook": values})
    service = rendered.one("Service", SERVICE)
    assert service["spec"]["clusterIP"] == "10.96.0.44"
    assert service["metadata"]["annotations"] == {"team": "platform"}
    assert service["spec"]["ports"][0]["port"] == 443
    assert {p["name"]: p["containerPort"] for p in rendered.container["ports"]}["audit"] == 10444
    assert rendered.env_values["ZSP_AUDIT_WEBHOOK_PORT"] == "10444"


def test_node_port_and_load_balancer_services() -> None:
    node = render({"auditWebhook": {**TOKEN_ONLY, "service": {"type": "NodePort", "nodePort": 30444}}})
    spec = node.one("Service", SERVICE)["spec"]
    assert spec["type"] == "NodePort"
    assert spec["ports"][0]["nodePort"] == 30444
    assigned = render({"auditWebhook": {**TOKEN_ONLY, "service": {"type": "NodePort"}}})
    assert "nodePort" not in assigned.one("Service", SERVICE)["spec"]["ports"][0]
    ranges = ["10.0.0.0/24", "fd00::/64"]
    balanced = render(
        {
            "auditWebhook": {
                **TOKEN_ONLY,
                "service": {"type": "LoadBalancer", "loadBalancerSourceRanges": ranges},
            }
        }
    )
    spec = balanced.one("Service", SERVICE)["spec"]
    assert spec["type"] == "LoadBalancer"
    assert spec["loadBalancerSourceRanges"] == ranges
    # Source ranges mean nothing to a ClusterIP Service and are left out.
    plain = render({"auditWebhook": {**TOKEN_ONLY, "service": {"loadBalancerSourceRanges": ranges}}})
    assert "loadBalancerSourceRanges" not in plain.one("Service", SERVICE)["spec"]


def test_the_service_monitor_does_not_select_the_audit_service() -> None:
    rendered = render({"auditWebhook": TOKEN_ONLY, "serviceMonitor": {"enabled": True}})
    selector = rendered.one("ServiceMonitor")["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= rendered.one("Service", SERVICE)["metadata"]["labels"].items()


def test_network_policy_admits_the_audit_port_from_its_peers() -> None:
    anyone = render({"auditWebhook": TOKEN_ONLY, "networkPolicy": {"enabled": True}})
    rules = anyone.one("NetworkPolicy")["spec"]["ingress"]
    assert [r["ports"] for r in rules][2] == [{"port": "audit", "protocol": "TCP"}]
    assert "from" not in rules[2]
    peers = [{"ipBlock": {"cidr": "192.168.10.0/24"}}]
    limited = render(
        {"auditWebhook": TOKEN_ONLY, "networkPolicy": {"enabled": True, "auditWebhookFrom": peers}}
    )
    rules = limited.one("NetworkPolicy")["spec"]["ingress"]
    assert [r["ports"][0]["port"] for r in rules] == ["webhook", "metrics", "audit"]
    assert rules[2]["from"] == peers
    assert "from" not in rules[0]
    assert "from" not in rules[1]


# --- NOTES.txt ----------------------------------------------------------------------------


def _notes(values: dict[str, Any], tmp_path: Path) -> str:
    file = tmp_path / "values.json"
    file.write_text(json.dumps(values), encoding="utf-8")
    out = helm(
        "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE, "--values", str(file)
    )
    return out.stdout.split("NOTES:", 1)[1]


def test_notes_print_the_api_server_flags_when_enabled(tmp_path: Path) -> None:
    notes = _notes({"auditWebhook": TOKEN_ONLY}, tmp_path)
    for flag in ("--audit-policy-file=", "--audit-webhook-config-file=", "--audit-webhook-batch-max-wait="):
        assert flag in notes, notes
    assert "docs/evidence.md" in notes
    assert f"https://{SERVICE}.{NAMESPACE}.svc:8444/audit" in notes
    assert "auditWebhook.settle (90s)" in notes
    assert "zsp-audit-token/bearer" in notes
    fixed = _notes({"auditWebhook": {**TOKEN_ONLY, "service": {"clusterIP": "fd00::44"}}}, tmp_path)
    assert "https://[fd00::44]:8444/audit" in fixed
    off = _notes({}, tmp_path)
    assert "--audit-" not in off
    assert "evidence" not in off


# --- refused ------------------------------------------------------------------------------


def test_enabled_without_a_certificate_or_a_way_to_know_the_api_server_is_refused() -> None:
    error = render_error({"auditWebhook": {"enabled": True}})
    assert "values don't meet the specifications of the schema" in error, error
    assert "at '/auditWebhook/certSecret': minLength" in error, error
    assert "at '/auditWebhook/tokenSecret/name'" in error, error
    assert "at '/auditWebhook/clientCASecret/name'" in error, error
    no_auth = render_error({"auditWebhook": {"enabled": True, "certSecret": "zsp-audit-tls"}})
    assert "at '/auditWebhook': 'anyOf' failed" in no_auth, no_auth
    assert "certSecret" not in no_auth
    no_cert = render_error({"auditWebhook": {"enabled": True, "tokenSecret": {"name": "t"}}})
    assert "at '/auditWebhook/certSecret': minLength" in no_cert, no_cert
    assert "anyOf" not in no_cert


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"enabled": True}, "auditWebhook.certSecret: name the kubernetes.io/tls Secret"),
        (
            {"enabled": True, "certSecret": "zsp-audit-tls"},
            "auditWebhook: set tokenSecret.name or clientCASecret.name",
        ),
    ],
)
def test_the_template_refuses_the_same_without_the_schema(
    values: dict[str, Any], complaint: str, tmp_path: Path
) -> None:
    file = tmp_path / "values.json"
    file.write_text(json.dumps({"auditWebhook": values}), encoding="utf-8")
    result = helm(
        "template", RELEASE, str(CHART), "--skip-schema-validation", "--values", str(file), check=False
    )
    assert result.returncode != 0
    assert complaint in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({**TOKEN_ONLY, "port": 9443}, "auditWebhook.port: 9443 is already one of"),
        ({**TOKEN_ONLY, "port": 8081}, "auditWebhook.port: 8081 is already one of"),
        (
            {**TOKEN_ONLY, "service": {"nodePort": 30444}},
            "auditWebhook.service.nodePort: only a NodePort or LoadBalancer",
        ),
    ],
)
def test_conflicting_values_fail_the_render(values: dict[str, Any], complaint: str) -> None:
    assert complaint in render_error({"auditWebhook": values})


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"settle": "a minute"}, "/auditWebhook/settle"),
        ({"port": 0}, "/auditWebhook/port"),
        ({"certSecret": "Not_A_Name"}, "/auditWebhook/certSecret"),
        ({"tokenSecret": {"key": "../token"}}, "/auditWebhook/tokenSecret/key"),
        ({"clientCASecret": {"name": "CA"}}, "/auditWebhook/clientCASecret/name"),
        ({"maxBodyBytes": 100}, "/auditWebhook/maxBodyBytes"),
        ({"service": {"type": "ExternalName"}}, "/auditWebhook/service/type"),
        ({"service": {"clusterIP": "audit.example.org"}}, "/auditWebhook/service/clusterIP"),
        (
            {"service": {"loadBalancerSourceRanges": ["everyone"]}},
            "/auditWebhook/service/loadBalancerSourceRanges/0",
        ),
        ({"tokenFile": "/etc/token"}, "'tokenFile' not allowed"),
    ],
)
def test_malformed_values_are_refused(values: dict[str, Any], field: str) -> None:
    error = render_error({"auditWebhook": values})
    assert field in error, error


def test_network_policy_peers_must_be_a_list() -> None:
    assert "/networkPolicy/auditWebhookFrom" in render_error(
        {"networkPolicy": {"auditWebhookFrom": "anyone"}}
    )
