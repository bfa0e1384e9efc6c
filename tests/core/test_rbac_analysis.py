"""RBAC analysis in the pure core.

Covered: rule matching as the Kubernetes authorizer does it (verbs, groups, resources,
subresources, `*/subresource`, wildcards, resourceNames, non-resource URLs); persistence
findings, one row per category plus harmless rules that are not flagged; rule coverage
(`covers`) including wildcards and resourceNames.
"""

from __future__ import annotations

from typing import Any

import pytest

from zsp_operator.core.models import PolicyRule
from zsp_operator.core.rbac import (
    Attributes,
    Risk,
    covers,
    describe_rule,
    persistence_findings,
    rule_allows,
    rules_allow,
)


def rule(
    verbs: str,
    resources: str = "",
    groups: str = "",
    names: str = "",
    urls: str = "",
) -> PolicyRule:
    """`rule("get,list", "pods", "")`: comma-separated fields; groups "" is the core group."""

    def split(text: str) -> list[str]:
        return text.split(",") if text else []

    data: dict[str, Any] = {"verbs": split(verbs), "resourceNames": split(names)}
    if urls:
        data["nonResourceURLs"] = split(urls)
    else:
        data["apiGroups"] = groups.split(",")
        data["resources"] = split(resources)
    return PolicyRule.model_validate(data)


# --- matching ---------------------------------------------------------------------------------

MATCHING = [
    pytest.param(rule("get", "pods"), Attributes("get", "", "pods"), True, id="exact"),
    pytest.param(rule("get", "pods"), Attributes("list", "", "pods"), False, id="other-verb"),
    pytest.param(rule("get", "pods"), Attributes("get", "apps", "pods"), False, id="other-group"),
    pytest.param(
        rule("get", "deployments", "apps"), Attributes("get", "apps", "deployments"), True, id="named-group"
    ),
    pytest.param(
        rule("get", "pods"), Attributes("get", "", "pods", "log"), False, id="resource-excludes-subresource"
    ),
    pytest.param(rule("get", "pods/log"), Attributes("get", "", "pods", "log"), True, id="subresource"),
    pytest.param(
        rule("get", "pods/log"), Attributes("get", "", "pods"), False, id="subresource-excludes-resource"
    ),
    pytest.param(
        rule("get", "*/log"), Attributes("get", "", "pods", "log"), True, id="any-resource-subresource"
    ),
    pytest.param(
        rule("get", "*/log"), Attributes("get", "", "pods"), False, id="any-resource-subresource-not-parent"
    ),
    pytest.param(rule("*", "pods"), Attributes("delete", "", "pods"), True, id="wildcard-verb"),
    pytest.param(rule("get", "*"), Attributes("get", "", "secrets"), True, id="wildcard-resource"),
    pytest.param(
        rule("get", "*"), Attributes("get", "", "pods", "exec"), True, id="wildcard-resource-subresource"
    ),
    pytest.param(
        rule("get", "pods", "*"), Attributes("get", "metrics.k8s.io", "pods"), True, id="wildcard-group"
    ),
    pytest.param(
        rule("get", "secrets", names="a,b"), Attributes("get", "", "secrets", name="b"), True, id="named"
    ),
    pytest.param(
        rule("get", "secrets", names="a"), Attributes("get", "", "secrets", name="c"), False, id="other-name"
    ),
    pytest.param(
        rule("list", "secrets", names="a"), Attributes("list", "", "secrets"), False, id="names-exclude-list"
    ),
    pytest.param(
        rule("get", "secrets"), Attributes("get", "", "secrets", name="any"), True, id="no-names-all-names"
    ),
    pytest.param(rule("get", urls="/healthz"), Attributes("get", path="/healthz"), True, id="url-exact"),
    pytest.param(
        rule("get", urls="/healthz"), Attributes("get", path="/healthz/etcd"), False, id="url-no-prefix"
    ),
    pytest.param(
        rule("get", urls="/healthz/*"), Attributes("get", path="/healthz/etcd"), True, id="url-star-prefix"
    ),
    pytest.param(rule("get", urls="*"), Attributes("get", path="/metrics"), True, id="url-wildcard"),
    pytest.param(
        rule("get", urls="/metrics"), Attributes("post", path="/metrics"), False, id="url-other-verb"
    ),
    pytest.param(
        rule("get", "*", "*"), Attributes("get", path="/metrics"), False, id="resource-rule-not-url"
    ),
    pytest.param(rule("get", urls="*"), Attributes("get", "", "pods"), False, id="url-rule-not-resource"),
]


@pytest.mark.parametrize(("granted", "attrs", "allowed"), MATCHING)
def test_rule_allows_like_the_authorizer(granted: PolicyRule, attrs: Attributes, allowed: bool) -> None:
    assert rule_allows(granted, attrs) is allowed


def test_rules_allow_if_any_rule_does() -> None:
    rules = [rule("get", "pods"), rule("list", "services")]
    assert rules_allow(rules, Attributes("list", "", "services"))
    assert not rules_allow(rules, Attributes("list", "", "pods"))
    assert not rules_allow([], Attributes("get", "", "pods"))


# --- persistence ------------------------------------------------------------------------------

PERSISTENT = [
    pytest.param(rule("create", "serviceaccounts/token"), Risk.MINTS_TOKENS, id="token-request"),
    pytest.param(
        rule("create", "serviceaccounts/token", names="deployer"), Risk.MINTS_TOKENS, id="token-one-name"
    ),
    pytest.param(rule("create", "pods"), Risk.RUNS_WORKLOADS, id="create-pods"),
    pytest.param(rule("create", "deployments", "apps"), Risk.RUNS_WORKLOADS, id="create-deployments"),
    pytest.param(rule("create", "replicasets", "apps"), Risk.RUNS_WORKLOADS, id="create-replicasets"),
    pytest.param(rule("create", "statefulsets", "apps"), Risk.RUNS_WORKLOADS, id="create-statefulsets"),
    pytest.param(rule("create", "daemonsets", "apps"), Risk.RUNS_WORKLOADS, id="create-daemonsets"),
    pytest.param(rule("create", "jobs", "batch"), Risk.RUNS_WORKLOADS, id="create-jobs"),
    pytest.param(rule("create", "cronjobs", "batch"), Risk.RUNS_WORKLOADS, id="create-cronjobs"),
    pytest.param(rule("create", "replicationcontrollers"), Risk.RUNS_WORKLOADS, id="create-rcs"),
    pytest.param(rule("create", "pods/exec"), Risk.ENTERS_PODS, id="exec"),
    pytest.param(rule("get", "pods/exec"), Risk.ENTERS_PODS, id="exec-websocket-get"),
    pytest.param(rule("create", "pods/attach"), Risk.ENTERS_PODS, id="attach"),
    pytest.param(rule("patch", "pods/ephemeralcontainers"), Risk.ENTERS_PODS, id="ephemeral-containers"),
    pytest.param(rule("get", "secrets"), Risk.READS_SECRETS, id="get-secrets"),
    pytest.param(rule("list", "secrets"), Risk.READS_SECRETS, id="list-secrets"),
    pytest.param(rule("watch", "secrets"), Risk.READS_SECRETS, id="watch-secrets"),
    pytest.param(rule("get", "secrets", names="db"), Risk.READS_SECRETS, id="get-one-secret"),
    pytest.param(rule("create", "secrets"), Risk.WRITES_SECRETS, id="create-secrets"),
    pytest.param(rule("update", "secrets"), Risk.WRITES_SECRETS, id="update-secrets"),
    pytest.param(rule("patch", "secrets"), Risk.WRITES_SECRETS, id="patch-secrets"),
    pytest.param(
        rule("create", "rolebindings", "rbac.authorization.k8s.io"),
        Risk.WRITES_RBAC,
        id="create-rolebindings",
    ),
    pytest.param(rule("patch", "roles", "rbac.authorization.k8s.io"), Risk.WRITES_RBAC, id="patch-roles"),
    pytest.param(
        rule("update", "clusterroles", "rbac.authorization.k8s.io"),
        Risk.WRITES_RBAC,
        id="update-clusterroles",
    ),
    pytest.param(
        rule("delete", "clusterrolebindings", "rbac.authorization.k8s.io"), Risk.WRITES_RBAC, id="delete-crbs"
    ),
    pytest.param(
        rule("deletecollection", "roles", "rbac.authorization.k8s.io"),
        Risk.WRITES_RBAC,
        id="deletecollection-roles",
    ),
    pytest.param(rule("bind", "clusterroles", "rbac.authorization.k8s.io"), Risk.ESCALATES, id="bind"),
    pytest.param(rule("escalate", "roles", "rbac.authorization.k8s.io"), Risk.ESCALATES, id="escalate"),
    pytest.param(rule("impersonate", "users,groups"), Risk.ESCALATES, id="impersonate"),
    pytest.param(rule("impersonate", "serviceaccounts", names="admin"), Risk.ESCALATES, id="impersonate-one"),
    pytest.param(
        rule("create", "certificatesigningrequests", "certificates.k8s.io"),
        Risk.SIGNS_CERTIFICATES,
        id="create-csr",
    ),
    pytest.param(
        rule("update", "certificatesigningrequests/approval", "certificates.k8s.io"),
        Risk.SIGNS_CERTIFICATES,
        id="approve-csr",
    ),
    pytest.param(
        rule("approve", "signers", "certificates.k8s.io", names="kubernetes.io/kube-apiserver-client"),
        Risk.SIGNS_CERTIFICATES,
        id="approve-signer",
    ),
    pytest.param(
        rule("create", "mutatingwebhookconfigurations", "admissionregistration.k8s.io"),
        Risk.WRITES_WEBHOOKS,
        id="mutating-webhook",
    ),
    pytest.param(
        rule("patch", "validatingwebhookconfigurations", "admissionregistration.k8s.io"),
        Risk.WRITES_WEBHOOKS,
        id="validating-webhook",
    ),
    pytest.param(rule("*", "configmaps"), Risk.WILDCARD, id="wildcard-verb"),
    pytest.param(rule("get", "*"), Risk.WILDCARD, id="wildcard-resource"),
    pytest.param(rule("get", "configmaps", "*"), Risk.WILDCARD, id="wildcard-group"),
    pytest.param(rule("*", "*", "*"), Risk.WILDCARD, id="cluster-admin"),
]


@pytest.mark.parametrize(("risky", "risk"), PERSISTENT)
def test_persistence_capable_rules_are_flagged(risky: PolicyRule, risk: Risk) -> None:
    harmless = rule("get,list", "configmaps")
    findings = persistence_findings([harmless, risky])
    assert len(findings) == 1
    finding = findings[0]
    assert finding.index == 1
    assert finding.rule == risky
    assert risk in finding.risks
    assert finding.message.startswith(f"rule 1 {describe_rule(risky)} can outlive revocation: ")
    assert finding.why in finding.message


HARMLESS = [
    pytest.param(rule("get,list,watch", "pods,pods/log,services"), id="read-workloads"),
    pytest.param(rule("get,list,patch,update", "deployments", "apps"), id="design-deploy-permission"),
    pytest.param(rule("get,list,watch", "roles,rolebindings", "rbac.authorization.k8s.io"), id="read-rbac"),
    pytest.param(rule("get,list", "serviceaccounts"), id="read-serviceaccounts"),
    pytest.param(rule("delete", "pods"), id="delete-pods"),
    pytest.param(rule("get", "pods/log"), id="pod-logs"),
    pytest.param(rule("get", "certificatesigningrequests", "certificates.k8s.io"), id="read-csrs"),
    pytest.param(
        rule("list", "validatingwebhookconfigurations", "admissionregistration.k8s.io"), id="read-webhooks"
    ),
    pytest.param(rule("get", "*/scale", "apps"), id="any-scale"),
    pytest.param(rule("create", "pods/eviction"), id="evict"),
    pytest.param(rule("get", urls="/healthz,/metrics"), id="non-resource"),
    pytest.param(rule("create", "configmaps,services"), id="create-config"),
]


@pytest.mark.parametrize("harmless", HARMLESS)
def test_harmless_rules_are_not_flagged(harmless: PolicyRule) -> None:
    assert persistence_findings([harmless]) == []


def test_a_wildcard_finding_names_the_fields_and_hides_the_concrete_risks() -> None:
    (finding,) = persistence_findings([rule("*", "secrets", "*")])
    assert finding.risks == (Risk.WILDCARD,)
    assert "`*` in verbs, apiGroups" in finding.message


def test_a_rule_with_several_risks_names_each() -> None:
    (finding,) = persistence_findings([rule("get,create", "secrets,pods")])
    assert finding.risks == (Risk.RUNS_WORKLOADS, Risk.READS_SECRETS, Risk.WRITES_SECRETS)
    assert "read Secrets" in finding.message
    assert "write Secrets" in finding.message


def test_describe_rule_reads_like_yaml() -> None:
    text = describe_rule(rule("get", "secrets", "", names="db"))
    assert text == '{verbs: [get], apiGroups: [""], resources: [secrets], resourceNames: [db]}'
    assert describe_rule(rule("get", urls="/healthz")) == "{verbs: [get], nonResourceURLs: [/healthz]}"


# --- covers -------------------------------------------------------------------------------------

DEPLOY = rule("get,list,patch,update", "deployments", "apps")

COVERS = [
    pytest.param([DEPLOY], rule("get,list", "deployments", "apps"), True, id="subset-of-verbs"),
    pytest.param([DEPLOY], DEPLOY, True, id="identical"),
    pytest.param([DEPLOY], rule("delete", "deployments", "apps"), False, id="other-verb"),
    pytest.param([DEPLOY], rule("get", "deployments,statefulsets", "apps"), False, id="one-resource-missing"),
    pytest.param(
        [DEPLOY, rule("get", "statefulsets", "apps")],
        rule("get", "deployments,statefulsets", "apps"),
        True,
        id="split-across-rules",
    ),
    pytest.param([DEPLOY], rule("get", "deployments", "apps,extensions"), False, id="one-group-missing"),
    pytest.param([DEPLOY], rule("get", "deployments/scale", "apps"), False, id="subresource-not-in-resource"),
    pytest.param(
        [rule("get", "*/scale", "apps")],
        rule("get", "deployments/scale", "apps"),
        True,
        id="any-subresource-grant",
    ),
    pytest.param(
        [rule("get", "deployments/scale", "apps")],
        rule("get", "*/scale", "apps"),
        False,
        id="requested-any-subresource",
    ),
    pytest.param(
        [rule("*", "deployments", "apps")],
        rule("delete", "deployments", "apps"),
        True,
        id="granted-wildcard-verb",
    ),
    pytest.param([DEPLOY], rule("*", "deployments", "apps"), False, id="requested-wildcard-verb"),
    pytest.param(
        [rule("*", "deployments", "apps")],
        rule("*", "deployments", "apps"),
        True,
        id="wildcard-verb-by-wildcard",
    ),
    pytest.param([DEPLOY], rule("get", "*", "apps"), False, id="requested-wildcard-resource"),
    pytest.param(
        [rule("get", "*", "apps")], rule("get", "*", "apps"), True, id="wildcard-resource-by-wildcard"
    ),
    pytest.param([DEPLOY], rule("get", "deployments", "*"), False, id="requested-wildcard-group"),
    pytest.param(
        [rule("get", "deployments", "*")],
        rule("get", "deployments", "apps"),
        True,
        id="granted-wildcard-group",
    ),
    pytest.param([DEPLOY], rule("get", "deployments", "apps", names="web"), True, id="names-within-all"),
    pytest.param(
        [rule("get", "deployments", "apps", names="web,api")],
        rule("get", "deployments", "apps", names="web"),
        True,
        id="names-within-names",
    ),
    pytest.param(
        [rule("get", "deployments", "apps", names="web")],
        rule("get", "deployments", "apps", names="web,api"),
        False,
        id="name-outside",
    ),
    pytest.param(
        [rule("get", "deployments", "apps", names="web")],
        rule("get", "deployments", "apps"),
        False,
        id="all-names-by-some",
    ),
    pytest.param([rule("get", urls="/healthz")], rule("get", urls="/healthz"), True, id="url-exact"),
    pytest.param(
        [rule("get", urls="/healthz/*")], rule("get", urls="/healthz/etcd"), True, id="url-by-prefix"
    ),
    pytest.param(
        [rule("get", urls="/healthz/*")],
        rule("get", urls="/healthz/etcd/*"),
        True,
        id="url-prefix-by-shorter-prefix",
    ),
    pytest.param(
        [rule("get", urls="/healthz/etcd")], rule("get", urls="/healthz/*"), False, id="url-prefix-by-exact"
    ),
    pytest.param(
        [rule("get", urls="/healthz/etcd/*")],
        rule("get", urls="/healthz/*"),
        False,
        id="url-prefix-by-longer-prefix",
    ),
    pytest.param([rule("get", urls="*")], rule("get", urls="/anything/*"), True, id="url-by-wildcard"),
    pytest.param([], rule("get", "pods"), False, id="nothing-granted"),
]


@pytest.mark.parametrize(("granted", "requested", "expected"), COVERS)
def test_covers(granted: list[PolicyRule], requested: PolicyRule, expected: bool) -> None:
    assert covers(granted, requested) is expected
