"""The `zsp audit` report in the pure core, from lists of objects.

Covered, one table row each: which subjects are reported (system subjects and bootstrap
bindings are not; a binding's non-system subjects are), each binding's state (granted,
orphaned, tampered, forged, unverified without readable grants, standing, allowlisted), whether
a subject holds standing privilege and whether it is persistence-capable (standing rules only;
a persistence-capable grant is flagged apart), rules merged per namespace and cluster-wide,
a missing role, a ServiceAccount subject that does not exist (or cannot be known); the summary.
"""

from __future__ import annotations

from typing import Any

import pytest

from zsp_operator.core import constants as c
from zsp_operator.core.standing_report import build_report, report_json

RBAC = "rbac.authorization.k8s.io/v1"
AT = "2030-01-01T00:00:00Z"
CONFIGMAPS = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}
SECRETS = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
DEPLOYER = {"kind": "ServiceAccount", "namespace": "ci", "name": "deployer"}
LABELS = {c.LABEL_MANAGED_BY: c.OPERATOR_NAME, c.LABEL_GRANT: "g", c.LABEL_GRANT_UID: "uid-g"}


def rb(
    name: str, role: tuple[str, str], subjects: list[dict[str, str]], ns: str = "pay", **labels: str
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": labels}
    return {
        "kind": "RoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role[0], "name": role[1]},
        "subjects": subjects,
    }


def crb(name: str, role: str, subjects: list[dict[str, str]], **labels: str) -> dict[str, Any]:
    body = rb(name, ("ClusterRole", role), subjects, **labels)
    body["kind"] = "ClusterRoleBinding"
    del body["metadata"]["namespace"]
    return body


def grant(rules: list[Any], persistence: bool = False, ready: str = "True") -> dict[str, Any]:
    return {
        "metadata": {"name": "g", "namespace": "pay", "uid": "uid-g"},
        "spec": {
            "request": {"name": "g", "uid": "uid-r"},
            "policy": "p",
            "mode": "bind",
            "identity": {"namespace": "ci", "name": "deployer"},
            "rules": rules,
            "expiresAt": AT,
            "persistenceCapable": persistence,
        },
        "status": {
            "objects": [
                {
                    "apiVersion": RBAC,
                    "kind": "RoleBinding",
                    "name": "zsp-g",
                    "namespace": "pay",
                    "uid": "uid-zsp-g",
                }
            ],
            "conditions": [{"type": "Ready", "status": ready, "reason": "Issued", "lastTransitionTime": AT}],
        },
    }


ROLES = [
    {"metadata": {"name": "zsp-g", "namespace": "pay"}, "rules": [SECRETS]},
    {"metadata": {"name": "cm", "namespace": "pay"}, "rules": [CONFIGMAPS]},
]
CLUSTER_ROLES = [
    {"metadata": {"name": "reader"}, "rules": [CONFIGMAPS]},
    {"metadata": {"name": "secrets"}, "rules": [SECRETS]},
]
NAMESPACES = [
    {"metadata": {"name": "pay", "labels": {c.LABEL_ENFORCE: "true"}}},
    {"metadata": {"name": "dev"}},
]
ACCOUNTS = [{"metadata": {"namespace": "ci", "name": "deployer"}}]
GRANTED = rb("zsp-g", ("Role", "zsp-g"), [DEPLOYER], **LABELS)


def summarize(bindings: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    kw.setdefault("grants", [grant([SECRETS])])
    kw.setdefault("service_accounts", ACCOUNTS)
    report = build_report(
        bindings=bindings, roles=ROLES, cluster_roles=CLUSTER_ROLES, namespaces=NAMESPACES, **kw
    )
    out: dict[str, Any] = {}
    for s in report.subjects:
        flags = {
            "standing": s.standing,
            "persistence": s.persistence_capable,
            "grant": s.persistence_capable_grant,
            "exists": s.exists,
        }
        states = {f"{f.binding.namespace}/{f.binding.name}": f.state.value for f in s.bindings}
        out[str(s.subject)] = (flags, states)
    return out


def flags(
    standing: bool, persistence: bool = False, grant: bool = False, exists: bool | None = True
) -> dict[str, Any]:
    return {"standing": standing, "persistence": persistence, "grant": grant, "exists": exists}


D = "ServiceAccount ci/deployer"

CASES = [
    pytest.param([GRANTED], {}, {D: (flags(False), {"pay/zsp-g": "granted"})}, id="granted-only"),
    pytest.param(
        [GRANTED],
        {"grants": [grant([SECRETS], persistence=True)]},
        {D: (flags(False, grant=True), {"pay/zsp-g": "granted"})},
        id="persistence-capable-grant-is-flagged-not-standing",
    ),
    pytest.param(
        [GRANTED], {"grants": []}, {D: (flags(True, True), {"pay/zsp-g": "orphaned"})}, id="orphaned"
    ),
    pytest.param(
        [GRANTED],
        {"grants": [grant([SECRETS], ready="False")]},
        {D: (flags(True, True), {"pay/zsp-g": "orphaned"})},
        id="ended-grant",
    ),
    pytest.param(
        [GRANTED],
        {"grants": [grant([CONFIGMAPS])]},
        {D: (flags(True, True), {"pay/zsp-g": "tampered"})},
        id="role-edited",
    ),
    pytest.param(
        [rb("copy", ("ClusterRole", "reader"), [DEPLOYER], **LABELS)],
        {},
        {D: (flags(True), {"pay/copy": "forged"})},
        id="forged",
    ),
    pytest.param(
        [GRANTED],
        {"grants": None},
        {D: (flags(True, True), {"pay/zsp-g": "unverified"})},
        id="grants-unreadable",
    ),
    pytest.param(
        [rb("cm", ("Role", "cm"), [DEPLOYER])], {}, {D: (flags(True), {"pay/cm": "standing"})}, id="unmanaged"
    ),
    pytest.param(
        [rb("cm", ("Role", "cm"), [DEPLOYER], ns="dev")],
        {},
        {D: (flags(True), {"dev/cm": "standing"})},
        id="unmanaged-outside-enforced-namespaces-too",
    ),
    pytest.param(
        [rb("cm", ("Role", "cm"), [DEPLOYER])],
        {"allowlist": ["pay/cm"]},
        {D: (flags(False), {"pay/cm": "allowlisted"})},
        id="allowlisted",
    ),
    pytest.param(
        [crb("all-secrets", "secrets", [DEPLOYER])],
        {},
        {D: (flags(True, True), {"/all-secrets": "standing"})},
        id="cluster-wide",
    ),
    pytest.param(
        [rb("cm", ("Role", "cm"), [{"kind": "ServiceAccount", "namespace": "ci", "name": "ghost"}])],
        {},
        {"ServiceAccount ci/ghost": (flags(True, exists=False), {"pay/cm": "standing"})},
        id="missing-service-account",
    ),
    pytest.param(
        [rb("cm", ("Role", "cm"), [DEPLOYER])],
        {"service_accounts": None},
        {D: (flags(True, exists=None), {"pay/cm": "standing"})},
        id="service-accounts-unreadable",
    ),
    pytest.param(
        [
            rb(
                "cm",
                ("Role", "cm"),
                [{"kind": "Group", "name": "team"}, {"kind": "User", "name": "system:kube-scheduler"}],
            )
        ],
        {},
        {"Group team": (flags(True, exists=None), {"pay/cm": "standing"})},
        id="only-non-system-subjects",
    ),
    pytest.param(
        [
            rb(
                "dns",
                ("ClusterRole", "secrets"),
                [{"kind": "ServiceAccount", "namespace": "kube-system", "name": "coredns"}],
                ns="kube-system",
            ),
            crb(
                "system:basic-user",
                "reader",
                [{"kind": "Group", "name": "system:authenticated"}],
                **{"kubernetes.io/bootstrapping": "rbac-defaults"},
            ),
        ],
        {},
        {},
        id="system-bindings-not-reported",
    ),
    pytest.param(
        [crb("everyone-reads-secrets", "secrets", [{"kind": "Group", "name": "system:serviceaccounts"}])],
        {},
        {
            "Group system:serviceaccounts": (
                flags(True, True, exists=None),
                {"/everyone-reads-secrets": "standing"},
            )
        },
        id="broad-system-group-reported",
    ),
]


@pytest.mark.parametrize(("bindings", "kw", "expected"), CASES)
def test_report(bindings: list[dict[str, Any]], kw: dict[str, Any], expected: dict[str, Any]) -> None:
    assert summarize(bindings, **kw) == expected


def test_a_rule_held_both_ways_counts_as_standing_and_scopes_are_separate() -> None:
    bindings = [
        GRANTED,
        rb("also-secrets", ("ClusterRole", "secrets"), [DEPLOYER]),
        rb("cm", ("Role", "cm"), [DEPLOYER], ns="dev"),
        crb("reader", "reader", [DEPLOYER]),
    ]
    report = build_report(
        bindings=bindings,
        roles=ROLES,
        cluster_roles=CLUSTER_ROLES,
        namespaces=NAMESPACES,
        service_accounts=ACCOUNTS,
        grants=[grant([SECRETS])],
    )
    (subject,) = report_json(report)["subjects"]
    scopes = {
        s["namespace"]: [(r["text"], r["standing"], r["risks"]) for r in s["rules"]]
        for s in subject["scopes"]
    }
    assert scopes == {
        None: [('{verbs: [get], apiGroups: [""], resources: [configmaps]}', True, [])],
        "dev": [],  # Role cm lives in pay: in dev it does not exist, so that binding grants nothing
        "pay": [('{verbs: [get], apiGroups: [""], resources: [secrets]}', True, ["reads-secrets"])],
    }
    dev = next(b for b in subject["bindings"] if b["namespace"] == "dev")
    assert dev["roleMissing"] is True
    assert "does not exist" in dev["message"]


def test_summary_counts_subjects_bindings_and_persistence_grants() -> None:
    bindings = [
        GRANTED,
        rb("cm", ("Role", "cm"), [DEPLOYER, {"kind": "Group", "name": "team"}]),
        rb(
            "zsp-x",
            ("ClusterRole", "secrets"),
            [{"kind": "User", "name": "bob"}],
            **{**LABELS, c.LABEL_GRANT_UID: "uid-gone"},
        ),
    ]
    report = build_report(
        bindings=bindings,
        roles=ROLES,
        cluster_roles=CLUSTER_ROLES,
        namespaces=NAMESPACES,
        service_accounts=ACCOUNTS,
        grants=[grant([SECRETS], persistence=True)],
    )
    summary = report_json(report)["summary"]
    assert summary == {
        "subjects": 3,
        "standing": 3,
        "persistence": 1,
        "bindings": {"granted": 1, "orphaned": 1, "standing": 1},
        "persistenceGrants": 1,
        "text": "3 subject(s) hold privilege, 3 of them standing (1 persistence-capable); bindings: 1 granted, "
        "1 orphaned, 1 standing; 1 live persistence-capable grant(s)",
    }
