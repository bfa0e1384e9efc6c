"""The Helm chart charts/zsp-operator, rendered by a real helm.

Covered:
- `helm lint --strict` passes with the defaults and with every optional part switched on;
  Chart.yaml's appVersion is the package version; the chart's crds/ are the generated CRDs;
- the ClusterRole grants exactly deploy/operator-rbac.yaml's rules (which the stories run
  the operator with), `bind` on ClusterRoles only for the catalog and never unrestricted;
  the Lease Role is namespaced and names the Lease the operator is told to use;
- the webhook configurations hold exactly the entries kopf's own builder makes from the
  operator's handler registry (names, rules, paths, failure and side-effect policies),
  routed through the rendered webhook Service to the container's webhook port;
- the Deployment: 2 replicas running `zsp run`, every ZSP_* variable a Settings field whose
  value Settings accepts, the downward-API Lease namespace, probes (liveness /healthz on the
  health port, readiness TCP on the webhook port), hardened pod and container, spread;
- value variations: namespaces, sweep, audit file, catalog, cert-manager, optional objects;
- API Priority and Fairness: a FlowSchema sends every request of the operator's
  ServiceAccount, in every API group its RBAC grants, to a Limited priority level of its own,
  ahead of the built-in `service-accounts` schema; settings come from values; the objects can
  be left out, need Kubernetes 1.29, and the operator is granted nothing on them.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest
from chartkit import CHART, NAMESPACE, REPO, Rendered, chart_values, helm, iter_yaml_documents, render
from kopf._cogs.structs.references import Resource
from kopf._cogs.structs.reviews import WebhookClientConfigService
from kopf._core.engines.admission import build_webhooks
from kopf._core.intents.causes import WebhookType

from zsp_operator.core import constants as c
from zsp_operator.handlers import build_registry
from zsp_operator.settings import Settings
from zsp_operator.tools.crdgen import KINDS, render_crd_files

ALL_ON: dict[str, Any] = {
    "webhook": {"certificate": {"source": "cert-manager"}},
    "serviceMonitor": {"enabled": True},
    "networkPolicy": {"enabled": True},
    "podDisruptionBudget": {"enabled": True},
    "dashboard": {"enabled": True},
    "auditWebhook": {
        "enabled": True,
        "certSecret": "zsp-audit-tls",
        "tokenSecret": {"name": "zsp-audit-token"},
        "clientCASecret": {"name": "zsp-audit-client-ca"},
    },
    "priorityClassName": "system-cluster-critical",
}


def deploy_rbac() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in iter_yaml_documents(REPO / "deploy" / "operator-rbac.yaml")}


def dev_only(rule: dict[str, Any]) -> bool:
    """A rule only `zsp run --dev` needs: kopf creating and patching its own configurations
    (named after the API group) on a local control plane. The chart ships its own."""
    return rule["apiGroups"] == ["admissionregistration.k8s.io"] and (
        rule["verbs"] == ["create"] or rule.get("resourceNames") == [c.GROUP]
    )


def webhook_certificate_only(rule: dict[str, Any]) -> bool:
    """The webhook certificate's Secret, by name: cluster-wide in deploy/ (stories serve from
    their own namespaces), a Role in the release namespace in the chart."""
    return rule["resources"] == ["secrets"] and bool(rule.get("resourceNames"))


def deploy_cluster_rules() -> list[dict[str, Any]]:
    return [
        rule
        for rule in deploy_rbac()["ClusterRole"]["rules"]
        if not dev_only(rule) and not webhook_certificate_only(rule)
    ]


def normalized(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rules compared as sets of strings, in their order."""
    return [{key: sorted(value) for key, value in rule.items()} for rule in rules]


# --- the chart as a package ---------------------------------------------------------------


@pytest.mark.parametrize("values", [{}, ALL_ON], ids=["defaults", "all-on"])
def test_helm_lint_strict_passes(values: dict[str, Any], tmp_path: Any) -> None:
    file = tmp_path / "values.json"
    file.write_text(json.dumps(values))
    result = helm("lint", "--strict", str(CHART), "--values", str(file))
    assert "0 chart(s) failed" in result.stdout


def test_chart_metadata_follows_the_package() -> None:
    chart = next(iter_yaml_documents(CHART / "Chart.yaml"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == c.OPERATOR_NAME
    assert chart["appVersion"] == project["version"]
    assert chart["kubeVersion"].startswith(">=1.")


def test_chart_crds_are_the_generated_crds() -> None:
    generated = render_crd_files()
    shipped = {path.name: path.read_text(encoding="utf-8") for path in (CHART / "crds").glob("*.yaml")}
    assert sorted(shipped) == sorted(generated), "run `zsp crds --out charts/zsp-operator/crds`"
    for name, text in generated.items():
        assert shipped[name] == text, f"{name} drifted: run `zsp crds --out charts/zsp-operator/crds`"
        assert (REPO / "crds" / name).read_text(encoding="utf-8") == text


def test_crds_render_with_include_crds() -> None:
    rendered = render(include_crds=True)
    names = {d["metadata"]["name"] for d in rendered.all("CustomResourceDefinition")}
    assert names == {kind.crd_name for kind in KINDS}


def test_every_object_carries_the_chart_labels() -> None:
    for doc in render(ALL_ON).docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == c.OPERATOR_NAME, doc["kind"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", doc["kind"]
        assert labels["app.kubernetes.io/instance"] == "zsp-operator", doc["kind"]


# --- RBAC ---------------------------------------------------------------------------------


def test_cluster_role_grants_exactly_the_rules_the_operator_is_tested_with() -> None:
    rendered = render()  # release zsp-operator in zsp-system: the names deploy/ uses
    assert normalized(rendered.one("ClusterRole")["rules"]) == normalized(deploy_cluster_rules())
    deploy = deploy_rbac()
    for kind in ("ClusterRole", "ClusterRoleBinding", "ServiceAccount"):
        assert rendered.one(kind)["metadata"]["name"] == deploy[kind]["metadata"]["name"], kind
    assert rendered.one("ClusterRoleBinding")["subjects"] == deploy["ClusterRoleBinding"]["subjects"]


def test_lease_role_grants_exactly_the_rules_the_operator_is_tested_with() -> None:
    rendered, deploy = render(), deploy_rbac()
    role = rendered.one("Role", deploy["Role"]["metadata"]["name"])
    assert normalized(role["rules"]) == normalized(deploy["Role"]["rules"])
    binding = rendered.one("RoleBinding", deploy["RoleBinding"]["metadata"]["name"])
    assert binding["subjects"] == deploy["RoleBinding"]["subjects"]
    assert role["metadata"]["namespace"] == deploy["Role"]["metadata"]["namespace"]


def test_operator_reads_no_secret_but_its_webhook_certificate() -> None:
    """Delivery Secrets are written and deleted by name; the only Secret read is the
    webhook certificate's, by name, in the release namespace (none with cert-manager)."""
    rendered = render()
    for rule in rendered.one("ClusterRole")["rules"]:
        if "secrets" in rule["resources"]:
            assert not {"get", "list", "watch"} & set(rule["verbs"]), rule
    [deploy_rule] = [r for r in deploy_rbac()["ClusterRole"]["rules"] if webhook_certificate_only(r)]
    role = rendered.one("Role", "zsp-operator-webhook-certificate")
    assert normalized(role["rules"]) == normalized([deploy_rule])
    assert role["metadata"]["namespace"] == "zsp-system"
    with_cert_manager = render({"webhook": {"certificate": {"source": "cert-manager"}}})
    assert not [r for r in with_cert_manager.all("Role") if r["metadata"]["name"].endswith("-certificate")]


def test_default_catalog_is_the_same_in_chart_deploy_and_settings() -> None:
    deploy_bind = [
        rule
        for rule in deploy_rbac()["ClusterRole"]["rules"]
        if rule["resources"] == ["clusterroles"] and "bind" in rule["verbs"]
    ]
    assert [rule["resourceNames"] for rule in deploy_bind] == [Settings().catalog]
    assert chart_values()["operator"]["catalog"] == Settings().catalog


def bind_rules(rendered: Rendered) -> list[dict[str, Any]]:
    return [
        rule
        for rule in rendered.one("ClusterRole")["rules"]
        if "clusterroles" in rule["resources"] and {"bind", "escalate", "*"} & set(rule["verbs"])
    ]


def test_bind_on_cluster_roles_is_limited_to_the_catalog() -> None:
    rendered = render({"operator": {"catalog": ["view", "edit", "system:aggregate-to-view"]}})
    assert bind_rules(rendered) == [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "verbs": ["bind"],
            "resourceNames": ["view", "edit", "system:aggregate-to-view"],
        }
    ]
    assert rendered.env_values["ZSP_CATALOG"] == "view,edit,system:aggregate-to-view"
    # Apart from the catalog rule, the ClusterRole is the tested one.
    others = [r for r in rendered.one("ClusterRole")["rules"] if r not in bind_rules(rendered)]
    deploy = [
        r for r in deploy_cluster_rules() if "clusterroles" not in r["resources"] or "bind" not in r["verbs"]
    ]
    assert normalized(others) == normalized(deploy)


def test_empty_catalog_grants_no_bind_on_cluster_roles_at_all() -> None:
    # An empty resourceNames list would mean every ClusterRole: the rule must vanish.
    rendered = render({"operator": {"catalog": []}})
    assert bind_rules(rendered) == []
    assert rendered.env_values["ZSP_CATALOG"] == ""
    assert Settings(catalog=rendered.env_values["ZSP_CATALOG"]).catalog == []


def test_no_rule_is_a_wildcard() -> None:
    for role in (*render().all("ClusterRole"), *render().all("Role")):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], (role["metadata"]["name"], rule)


def test_cluster_role_binding_binds_the_operator_service_account() -> None:
    rendered = render(namespace="ops")
    account = rendered.one("ServiceAccount")
    binding = rendered.one("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": rendered.one("ClusterRole")["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "ops"}
    ]
    assert account["metadata"]["namespace"] == "ops"
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_lease_role_is_namespaced_and_names_the_operators_lease() -> None:
    rendered = render(namespace="ops")
    role = rendered.one("Role", "zsp-operator-leader")
    assert role["metadata"]["namespace"] == "ops"
    lease = rendered.env_values["ZSP_LEASE_NAME"]
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "update"],
            "resourceNames": [lease],
        },
    ]
    binding = rendered.one("RoleBinding", "zsp-operator-leader")
    assert binding["metadata"]["namespace"] == "ops"
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": rendered.one("ServiceAccount")["metadata"]["name"],
            "namespace": "ops",
        }
    ]


def test_rbac_and_service_account_can_be_left_to_someone_else() -> None:
    rendered = render({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops-made"}})
    assert not {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"} & set(
        rendered.kinds()
    )
    assert rendered.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-made"


# --- admission webhooks -------------------------------------------------------------------

# What kopf builds and the chart must reproduce; the chart sets the API server's timeout from
# values and asks for AdmissionReview v1 only (kopf offers v1beta1 too).
_FROM_KOPF = (
    "name",
    "rules",
    "sideEffects",
    "failurePolicy",
    "matchPolicy",
    "objectSelector",
    "clientConfig",
)


def kopf_webhooks(reason: WebhookType, service: WebhookClientConfigService) -> list[dict[str, Any]]:
    """The entries kopf itself would write for the operator's registry (as with --dev)."""
    resources = [
        Resource(
            c.GROUP,
            c.VERSION,
            kind.plural,
            kind=kind.kind,
            singular=kind.singular,
            namespaced=kind.scope == "Namespaced",
            subresources=frozenset({"status"}),
        )
        for kind in KINDS
    ]
    handlers = [h for h in build_registry()._webhooks.get_all_handlers() if h.reason == reason]
    return build_webhooks(
        handlers, resources=resources, name_suffix=c.GROUP, client_config={"service": service}
    )


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("MutatingWebhookConfiguration", WebhookType.MUTATING),
        ("ValidatingWebhookConfiguration", WebhookType.VALIDATING),
    ],
)
@pytest.mark.parametrize("values", [{}, ALL_ON], ids=["operator-cert", "cert-manager"])
def test_webhooks_are_what_kopf_builds_from_the_operators_registry(
    kind: str, reason: WebhookType, values: dict[str, Any]
) -> None:
    rendered = render(values, namespace="ops")
    configuration = rendered.one(kind)
    assert configuration["metadata"]["name"] == "zsp-operator"
    service = rendered.one("Service", "zsp-operator-webhook")
    expected = kopf_webhooks(
        reason,
        {
            "namespace": "ops",
            "name": service["metadata"]["name"],
            "port": service["spec"]["ports"][0]["port"],
        },
    )
    assert expected, f"the operator registers no {reason.value} webhook"
    chart = configuration["webhooks"]
    assert [w["name"] for w in chart] == [w["name"] for w in expected]
    for ours, kopfs in zip(chart, expected, strict=True):
        for key in _FROM_KOPF:
            assert ours.get(key) == kopfs[key], f"{ours['name']}: {key}"
        assert ours["timeoutSeconds"] == 10
        assert ours["admissionReviewVersions"] == ["v1"]
        assert set(ours) <= {*_FROM_KOPF, "timeoutSeconds", "admissionReviewVersions"}


def test_webhook_service_reaches_the_containers_webhook_port() -> None:
    rendered = render()
    service = rendered.one("Service", "zsp-operator-webhook")
    (port,) = service["spec"]["ports"]
    assert port["port"] == 443
    ports = {p["name"]: p["containerPort"] for p in rendered.container["ports"]}
    assert port["targetPort"] == "webhook"
    assert ports["webhook"] == 9443 == int(rendered.env_values["ZSP_WEBHOOK_PORT"])
    pod_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_webhook_configuration_name_and_timeout_come_from_values() -> None:
    rendered = render({"webhook": {"configurationName": "zsp.example.org", "timeoutSeconds": 25}})
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        configuration = rendered.one(kind)
        assert configuration["metadata"]["name"] == "zsp.example.org"
        assert {w["timeoutSeconds"] for w in configuration["webhooks"]} == {25}
    assert rendered.env_values["ZSP_WEBHOOK_CONFIGURATION"] == "zsp.example.org"
    # The operator may read and patch these two configurations and no others.
    (rule,) = [
        r for r in rendered.one("ClusterRole")["rules"] if "admissionregistration.k8s.io" in r["apiGroups"]
    ]
    assert rule["resourceNames"] == ["zsp.example.org"]
    assert sorted(rule["verbs"]) == ["get", "patch"]


def test_with_cert_manager_the_operator_may_not_touch_webhook_configurations() -> None:
    rendered = render({"webhook": {"certificate": {"source": "cert-manager"}}})
    rules = rendered.one("ClusterRole")["rules"]
    assert not [r for r in rules if "admissionregistration.k8s.io" in r["apiGroups"]]


# --- the Deployment -----------------------------------------------------------------------


def test_two_replicas_run_zsp_run_with_leader_election() -> None:
    rendered = render()
    deployment = rendered.one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert rendered.container["command"] == ["zsp", "run"]
    assert rendered.env_values["ZSP_LEADER_ELECT"] == "true"
    assert rendered.env["ZSP_LEASE_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    # A standby is Ready (it answers admission), so a rollout can keep every old pod until a
    # new one is Ready: the webhooks are never without a pod.
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


@pytest.mark.parametrize(
    "values",
    [
        {},
        ALL_ON,
        {
            "operator": {
                "namespaces": ["team-a", "team-b"],
                "deliveryServer": "https://api.example.org:6443",
                "auditFile": "/tmp/audit.jsonl",
                "sweep": {"mode": "enforce", "allowlist": ["kube-system/*", "ci-admin"]},
            }
        },
    ],
    ids=["defaults", "all-on", "everything-set"],
)
def test_every_zsp_variable_is_a_setting_the_operator_accepts(values: dict[str, Any]) -> None:
    rendered = render(values)
    names = set(rendered.env)
    zsp = {name for name in names if name.startswith("ZSP_")}
    fields = {f"ZSP_{field.upper()}" for field in Settings.model_fields}
    assert zsp <= fields, f"not settings: {sorted(zsp - fields)}"
    # Settings parses them as the operator would at start (the downward API filled in).
    kwargs: dict[str, Any] = {name.removeprefix("ZSP_").lower(): v for name, v in rendered.env_values.items()}
    kwargs["lease_namespace"] = NAMESPACE
    Settings(**kwargs)


def test_settings_come_from_values() -> None:
    rendered = render(
        {
            "operator": {
                "namespaces": ["team-a", "team-b"],
                "catalog": ["view", "edit"],
                "breakGlassMaxTTL": "30m",
                "tokenSeconds": 900,
                "deliveryServer": "https://api.example.org:6443",
                "resync": "1h30m",
                "auditFile": "/tmp/audit.jsonl",
                "sweep": {
                    "mode": "enforce",
                    "allowlist": ["kube-system/*", "ci-admin"],
                    "enforceClusterBindings": True,
                },
                "leaderElection": {"leaseName": "zsp-lock", "leaseDuration": "20s"},
            }
        }
    )
    kwargs: dict[str, Any] = {n.removeprefix("ZSP_").lower(): v for n, v in rendered.env_values.items()}
    settings = Settings(**kwargs, lease_namespace=NAMESPACE)
    assert settings.namespaces == ["team-a", "team-b"]
    assert settings.catalog == ["view", "edit"]
    assert settings.break_glass_max_ttl.total_seconds() == 1800
    assert settings.token_seconds == 900
    assert settings.delivery_server == "https://api.example.org:6443"
    assert settings.resync.total_seconds() == 5400
    assert settings.audit_file == "/tmp/audit.jsonl"
    assert settings.sweep_mode == "enforce"
    assert settings.sweep_allowlist == ["kube-system/*", "ci-admin"]
    assert settings.enforce_cluster_bindings is True
    assert settings.leader_elect is True
    assert settings.lease_name == "zsp-lock"
    assert settings.lease_duration.total_seconds() == 20
    assert settings.webhook_service == f"{NAMESPACE}/zsp-operator-webhook"
    assert settings.webhook_secret == "zsp-operator-webhook-tls"
    assert rendered.one("Role", "zsp-operator-leader")["rules"][1]["resourceNames"] == ["zsp-lock"]


def test_probes_liveness_on_healthz_readiness_on_the_webhook_port() -> None:
    rendered = render()
    container = rendered.container
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert ports["health"] == 8081 == int(rendered.env_values["ZSP_HEALTH_PORT"])
    # Every replica listens there once it answers admission, leader or standby.
    assert container["readinessProbe"]["tcpSocket"] == {"port": "webhook"}
    assert ports["metrics"] == 8080 == int(rendered.env_values["ZSP_METRICS_PORT"])


def test_pod_is_hardened() -> None:
    rendered = render(ALL_ON)
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is True
    assert pod["enableServiceLinks"] is False
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)
    assert rendered.one("ServiceAccount")["automountServiceAccountToken"] is False
    container = rendered.container
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security.get("privileged", False) is False
    # The one writable place is /tmp, an emptyDir (the webhook certificate is written there).
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert all(m.get("readOnly") for path, m in mounts.items() if path != "/tmp")
    assert not any("hostPath" in v for v in volumes.values())
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    assert pod["priorityClassName"] == "system-cluster-critical"


def test_replicas_spread_over_nodes() -> None:
    template = render().one("Deployment")["spec"]["template"]
    (spread,) = template["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"  # a one-node cluster still runs both
    assert spread["labelSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()


def test_replicas_without_leader_election_are_refused() -> None:
    result = helm(
        "template", "zsp", str(CHART), "--set", "operator.leaderElection.enabled=false", check=False
    )
    assert result.returncode != 0
    assert "operator.leaderElection.enabled" in result.stderr
    single = render({"replicaCount": 1, "operator": {"leaderElection": {"enabled": False}}})
    assert "ZSP_LEADER_ELECT" not in single.env
    assert not [r for r in single.all("Role") if r["metadata"]["name"].endswith("-leader")]


# --- certificates -------------------------------------------------------------------------


def test_operator_keeps_the_certificate_by_default() -> None:
    rendered = render()
    assert rendered.env_values["ZSP_WEBHOOK_SERVICE"] == f"{NAMESPACE}/zsp-operator-webhook"
    assert "ZSP_WEBHOOK_CERT_DIR" not in rendered.env
    assert not {"Certificate", "Issuer"} & set(rendered.kinds())
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        assert "annotations" not in rendered.one(kind)["metadata"]


def test_cert_manager_issues_the_certificate_mounted_into_the_pod() -> None:
    rendered = render({"webhook": {"certificate": {"source": "cert-manager"}}}, namespace="ops")
    certificate = rendered.one("Certificate")
    issuer = rendered.one("Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    assert certificate["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"]
    service = rendered.one("Service", "zsp-operator-webhook")["metadata"]["name"]
    assert f"{service}.ops.svc" in certificate["spec"]["dnsNames"]
    assert f"{service}.ops.svc.cluster.local" in certificate["spec"]["dnsNames"]
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        annotations = rendered.one(kind)["metadata"]["annotations"]
        assert annotations == {"cert-manager.io/inject-ca-from": f"ops/{certificate['metadata']['name']}"}
    # The Secret cert-manager writes is mounted where ZSP_WEBHOOK_CERT_DIR says.
    cert_dir = rendered.env_values["ZSP_WEBHOOK_CERT_DIR"]
    mount = next(m for m in rendered.container["volumeMounts"] if m["mountPath"] == cert_dir)
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    assert "ZSP_WEBHOOK_SERVICE" not in rendered.env


def test_cert_manager_with_an_existing_issuer_creates_none() -> None:
    issuer = {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    rendered = render(
        {"webhook": {"certificate": {"source": "cert-manager", "certManager": {"issuerRef": issuer}}}}
    )
    assert "Issuer" not in rendered.kinds()
    assert rendered.one("Certificate")["spec"]["issuerRef"] == issuer


# --- optional objects ---------------------------------------------------------------------


def test_service_monitor_scrapes_the_metrics_service() -> None:
    rendered = render(ALL_ON)
    monitor = rendered.one("ServiceMonitor")
    service = rendered.one("Service", "zsp-operator-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    # The webhook Service must not match: it has no metrics port.
    webhook = rendered.one("Service", "zsp-operator-webhook")
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= webhook["metadata"]["labels"].items()


def test_optional_objects_are_off_by_default() -> None:
    assert not {"ServiceMonitor", "NetworkPolicy", "ConfigMap"} & set(render().kinds())


def test_network_policy_admits_webhook_and_metrics_ports_only() -> None:
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    rendered = render({"networkPolicy": {"enabled": True, "metricsFrom": peers}})
    policy = rendered.one("NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = policy["spec"]["ingress"]
    assert [r["ports"][0]["port"] for r in rules] == ["webhook", "metrics"]
    assert "from" not in rules[0]
    assert rules[1]["from"] == peers


def test_by_default_a_drain_keeps_one_replica_answering_admission() -> None:
    budget = render().one("PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    # One replica alone: a budget could only make drains wait forever.
    single = render({"replicaCount": 1, "operator": {"leaderElection": {"enabled": False}}})
    assert "PodDisruptionBudget" not in single.kinds()


def test_disruption_budget_selects_the_pods() -> None:
    rendered = render({"podDisruptionBudget": {"enabled": True, "maxUnavailable": 1}})
    budget = rendered.one("PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in budget["spec"]
    assert budget["spec"]["selector"] == rendered.one("Deployment")["spec"]["selector"]


def test_dashboard_config_map_carries_the_dashboard() -> None:
    rendered = render({"dashboard": {"enabled": True, "namespace": "monitoring"}})
    config_map = rendered.one("ConfigMap")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "zsp-operator.json").read_text(encoding="utf-8"))
    assert json.loads(config_map["data"]["zsp-operator.json"]) == shipped


# --- API Priority and Fairness ------------------------------------------------------------

FLOWCONTROL = "flowcontrol.apiserver.k8s.io/v1"
# The built-in FlowSchema that classifies every ServiceAccount's requests into `workload-low`.
SERVICE_ACCOUNTS_PRECEDENCE = 9000


def granted_api_groups(rendered: Rendered) -> set[str]:
    """Every API group the ClusterRole and the Lease Role let the operator call."""
    roles = (*rendered.all("ClusterRole"), *rendered.all("Role"))
    return {group for role in roles for rule in role["rules"] for group in rule["apiGroups"]}


def test_the_operators_requests_get_a_priority_level_of_their_own() -> None:
    rendered = render(namespace="ops")
    level = rendered.one("PriorityLevelConfiguration")
    schema = rendered.one("FlowSchema")
    assert level["apiVersion"] == schema["apiVersion"] == FLOWCONTROL
    assert "namespace" not in level["metadata"]
    assert "namespace" not in schema["metadata"]
    assert schema["spec"]["priorityLevelConfiguration"] == {"name": level["metadata"]["name"]}
    # Before the built-in service-accounts schema, after the control plane's own (up to 800).
    assert 800 < schema["spec"]["matchingPrecedence"] < SERVICE_ACCOUNTS_PRECEDENCE
    assert schema["spec"]["distinguisherMethod"] == {"type": "ByUser"}
    (rule,) = schema["spec"]["rules"]
    account = rendered.one("ServiceAccount")["metadata"]
    assert rule["subjects"] == [
        {"kind": "ServiceAccount", "serviceAccount": {"name": account["name"], "namespace": "ops"}}
    ]
    assert "nonResourceRules" not in rule
    assert level["spec"] == {
        "type": "Limited",
        "limited": {
            "nominalConcurrencyShares": 30,
            "lendablePercent": 50,
            "limitResponse": {
                "type": "Queue",
                "queuing": {"queues": 16, "handSize": 4, "queueLengthLimit": 50},
            },
        },
    }


@pytest.mark.parametrize("values", [{}, ALL_ON], ids=["defaults", "all-on"])
def test_the_flow_schema_matches_every_api_group_the_operator_may_call(values: dict[str, Any]) -> None:
    rendered = render(values)
    (rule,) = rendered.one("FlowSchema")["spec"]["rules"]
    (resources,) = rule["resourceRules"]
    assert resources["verbs"] == ["*"]
    assert resources["resources"] == ["*"]
    assert resources["clusterScope"] is True
    assert resources["namespaces"] == ["*"]
    assert granted_api_groups(rendered) <= set(resources["apiGroups"])
    # Nothing more: the default ClusterRole (operator-kept certificate) uses every group listed.
    assert set(resources["apiGroups"]) == granted_api_groups(render())


def test_the_flow_schema_follows_the_service_account_the_pods_run_as() -> None:
    rendered = render({"serviceAccount": {"create": False, "name": "ops-made"}}, namespace="ops")
    (rule,) = rendered.one("FlowSchema")["spec"]["rules"]
    assert rule["subjects"] == [
        {"kind": "ServiceAccount", "serviceAccount": {"name": "ops-made", "namespace": "ops"}}
    ]
    assert rendered.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-made"


def test_flow_control_settings_come_from_values() -> None:
    rendered = render(
        {
            "fullnameOverride": "zsp-prod",
            "flowControl": {
                "matchingPrecedence": 600,
                "nominalConcurrencyShares": 10,
                "lendablePercent": 0,
                "queuing": {"queues": 8, "handSize": 2, "queueLengthLimit": 100},
            },
        }
    )
    level = rendered.one("PriorityLevelConfiguration", "zsp-prod")
    schema = rendered.one("FlowSchema", "zsp-prod")
    assert schema["spec"]["matchingPrecedence"] == 600
    limited = level["spec"]["limited"]
    assert (limited["nominalConcurrencyShares"], limited["lendablePercent"]) == (10, 0)
    assert limited["limitResponse"]["queuing"] == {"queues": 8, "handSize": 2, "queueLengthLimit": 100}


def test_flow_control_objects_can_be_left_out() -> None:
    assert not {"FlowSchema", "PriorityLevelConfiguration"} & set(
        render({"flowControl": {"enabled": False}}).kinds()
    )


def test_flow_control_needs_the_v1_api_of_kubernetes_1_29() -> None:
    args = ("template", "zsp", str(CHART), "--kube-version", "1.28.5")
    refused = helm(*args, check=False)
    assert refused.returncode != 0
    assert "flowControl.enabled" in refused.stderr
    assert "Kubernetes 1.29 or newer" in refused.stderr
    helm(*args, "--set", "flowControl.enabled=false")
    helm("template", "zsp", str(CHART), "--kube-version", "1.29.0")


def test_the_operator_needs_no_access_to_flow_control_objects() -> None:
    # The API server applies them; the operator neither reads nor writes them.
    for role in (*render(ALL_ON).all("ClusterRole"), *render(ALL_ON).all("Role")):
        for rule in role["rules"]:
            assert "flowcontrol.apiserver.k8s.io" not in rule["apiGroups"], rule
