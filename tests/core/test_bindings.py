"""Classifying bindings for the standing-privilege sweeper, in the pure core.

Covered, one table row each: the binding of a live grant as issued (also mid-issuance and
for a ClusterRole grant) is kept; operator labels without a grant, with an ended or deleting
grant, or copied onto another binding are removed; a grant's binding with a subject added or
replaced, another roleRef, its Role's rules edited or its Role deleted is removed and the grant
revoked (reordered rules are no edit); unmanaged bindings are left alone outside enforced
namespaces, reported in audit mode, deleted in enforce mode, except system bindings, the
operator's own, allowlisted ones and break-glass requesters' right to ask; ClusterRoleBindings
are deleted only with enforce_cluster_bindings. Then the helpers: system subjects, the
allowlist syntax, rule comparison, and which role a verdict needs.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from core_factories import changed

from zsp_operator.core import constants as c
from zsp_operator.core.bindings import (
    Action,
    State,
    SubjectRef,
    SweepContext,
    allowlisted,
    break_glass_requesters,
    classify,
    is_system_subject,
    parse_binding,
    role_needed,
    same_rules,
)
from zsp_operator.core.models import AccessPolicy, TaskGrant

RBAC = "rbac.authorization.k8s.io/v1"
GRANT_UID = "uid-grant-1"
OPERATOR = "system:serviceaccount:zsp-system:zsp-operator"
RULES = [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]}]
DEPLOYER = {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}
LABELS = {
    c.LABEL_MANAGED_BY: c.OPERATOR_NAME,
    c.LABEL_GRANT: "deploy-1",
    c.LABEL_GRANT_UID: GRANT_UID,
    c.LABEL_REQUEST_UID: "uid-request-1",
}
AT = "2026-03-01T12:00:00Z"


def grant_body(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "deploy-1", "namespace": "pay", "uid": GRANT_UID},
        "spec": {
            "request": {"name": "deploy-1", "uid": "uid-request-1"},
            "policy": "deployers",
            "mode": "bind",
            "identity": {"namespace": "ci", "name": "deployer"},
            "permission": "deploy",
            "rules": RULES,
            "expiresAt": AT,
        },
        "status": {
            "objects": [
                {
                    "apiVersion": RBAC,
                    "kind": "Role",
                    "name": "zsp-deploy-1-abc",
                    "namespace": "pay",
                    "uid": "r1",
                },
                {
                    "apiVersion": RBAC,
                    "kind": "RoleBinding",
                    "name": "zsp-deploy-1-abc",
                    "namespace": "pay",
                    "uid": "rb1",
                },
            ],
            "conditions": [{"type": "Ready", "status": "True", "reason": "Issued", "lastTransitionTime": AT}],
            **status,
        },
    }


def rb(
    name: str = "zsp-deploy-1-abc",
    namespace: str = "pay",
    *,
    uid: str = "rb1",
    labels: dict[str, str] | None = None,
    role: tuple[str, str] = ("Role", "zsp-deploy-1-abc"),
    subjects: list[dict[str, str]] | None = None,
    kind: str = "RoleBinding",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": uid, "labels": dict(LABELS if labels is None else labels)}
    if kind == "RoleBinding":
        meta["namespace"] = namespace
    return {
        "apiVersion": RBAC,
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role[0], "name": role[1]},
        "subjects": [DEPLOYER] if subjects is None else subjects,
    }


def crb(name: str, subjects: list[dict[str, str]], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return rb(
        name, kind="ClusterRoleBinding", labels=labels or {}, role=("ClusterRole", "admin"), subjects=subjects
    )


def unmanaged(name: str = "hand-made", namespace: str = "pay", **kw: Any) -> dict[str, Any]:
    kw.setdefault("role", ("ClusterRole", "edit"))
    return rb(name, namespace, uid=f"uid-{name}", labels={}, **kw)


BREAK_GLASS_POLICY = AccessPolicy.model_validate(
    {
        "metadata": {"name": "break-glass"},
        "spec": {
            "requesters": [{"kind": "Group", "name": "platform-oncall"}],
            "permissions": [{"name": "incident", "rules": RULES}],
            "breakGlass": True,
        },
    }
)
ASK_RULES = [{"apiGroups": [c.GROUP], "resources": [c.PLURAL_REQUEST], "verbs": ["create", "get"]}]
ONCALL = {"kind": "Group", "name": "platform-oncall", "apiGroup": "rbac.authorization.k8s.io"}


def context(
    *,
    grant: dict[str, Any] | None = None,
    roles: dict[tuple[str, str, str], list[Any]] | None = None,
    mode: str = "audit",
    **settings: Any,
) -> SweepContext:
    grants = {} if grant is None else {GRANT_UID: TaskGrant.model_validate(grant)}
    return SweepContext(
        grants=grants,
        roles={("Role", "pay", "zsp-deploy-1-abc"): RULES} if roles is None else roles,
        namespace_labels={"pay": {c.LABEL_ENFORCE: "true"}, "dev": {}},
        mode=mode,
        operator=OPERATOR,
        break_glass=break_glass_requesters([BREAK_GLASS_POLICY]),
        **settings,
    )


LIVE = grant_body()
ENDED = changed(
    LIVE,
    {"status.conditions.0.status": "False", "status.conditions.0.reason": "Expired"},
)
DELETING = changed(LIVE, {"metadata.deletionTimestamp": AT})
ISSUING = changed(LIVE, {"status.objects": [], "status.conditions": []})
CLUSTER_ROLE_GRANT = changed(
    LIVE,
    {
        "spec.rules": [],
        "spec.clusterRole": "view",
        "status.objects": [
            {
                "apiVersion": RBAC,
                "kind": "RoleBinding",
                "name": "zsp-deploy-1-abc",
                "namespace": "pay",
                "uid": "rb1",
            }
        ],
    },
)
EDITED_RULES = {
    ("Role", "pay", "zsp-deploy-1-abc"): [
        *RULES,
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    ]
}
REORDERED_RULES = {
    ("Role", "pay", "zsp-deploy-1-abc"): [
        {"verbs": ["patch", "get"], "resources": ["deployments"], "apiGroups": ["apps"], "resourceNames": []}
    ]
}
INTRUDER = {"kind": "ServiceAccount", "name": "intruder", "namespace": "ci"}
KUBE_SYSTEM_SA = {"kind": "ServiceAccount", "name": "replicaset-controller", "namespace": "kube-system"}
OPERATOR_SA = {"kind": "ServiceAccount", "name": "zsp-operator", "namespace": "zsp-system"}
BOOTSTRAP = {"kubernetes.io/bootstrapping": "rbac-defaults"}

K, R, D = Action.KEEP, Action.REPORT, Action.DELETE

CASES = [
    # -- bindings with the operator's labels ---------------------------------------------------
    pytest.param(rb(), context(grant=LIVE), K, State.GRANTED, False, id="live-grant-as-issued"),
    pytest.param(rb(), context(grant=LIVE, mode="enforce"), K, State.GRANTED, False, id="live-grant-enforce"),
    pytest.param(rb(), context(grant=ISSUING), K, State.GRANTED, False, id="mid-issuance"),
    pytest.param(
        rb(role=("ClusterRole", "view")),
        context(grant=CLUSTER_ROLE_GRANT),
        K,
        State.GRANTED,
        False,
        id="clusterrole-grant",
    ),
    pytest.param(rb(), context(), D, State.ORPHANED, False, id="grant-gone"),
    pytest.param(
        rb(labels={c.LABEL_MANAGED_BY: c.OPERATOR_NAME}),
        context(grant=LIVE),
        D,
        State.ORPHANED,
        False,
        id="no-grant-label",
    ),
    pytest.param(
        rb(labels={c.LABEL_GRANT_UID: "uid-made-up"}),
        context(grant=LIVE),
        D,
        State.ORPHANED,
        False,
        id="only-grant-uid-label",
    ),
    pytest.param(rb(), context(grant=ENDED), D, State.ORPHANED, True, id="grant-ended-teardown-finished"),
    pytest.param(
        rb(), context(grant=DELETING), D, State.ORPHANED, False, id="grant-deleting-finalizer-finishes"
    ),
    pytest.param(
        rb(subjects=[DEPLOYER, INTRUDER]), context(grant=LIVE), D, State.TAMPERED, True, id="subject-added"
    ),
    pytest.param(
        rb(subjects=[INTRUDER]), context(grant=LIVE), D, State.TAMPERED, True, id="subject-replaced"
    ),
    pytest.param(
        rb(role=("ClusterRole", "admin")), context(grant=LIVE), D, State.TAMPERED, True, id="roleref-changed"
    ),
    pytest.param(
        rb(role=("ClusterRole", "admin")),
        context(grant=CLUSTER_ROLE_GRANT),
        D,
        State.TAMPERED,
        True,
        id="clusterrole-grant-roleref-changed",
    ),
    pytest.param(
        rb(), context(grant=LIVE, roles=EDITED_RULES), D, State.TAMPERED, True, id="role-rules-edited"
    ),
    pytest.param(
        rb(), context(grant=LIVE, roles=REORDERED_RULES), K, State.GRANTED, False, id="role-rules-reordered"
    ),
    pytest.param(rb(), context(grant=LIVE, roles={}), D, State.TAMPERED, True, id="role-deleted"),
    # Role and RoleBinding are created at once: mid-issuance, a binding may be seen first.
    pytest.param(
        rb(), context(grant=ISSUING, roles={}), K, State.GRANTED, False, id="mid-issuance-role-not-seen-yet"
    ),
    pytest.param(rb("copy", uid="other"), context(grant=LIVE), D, State.FORGED, False, id="labels-copied"),
    pytest.param(rb(uid="recreated"), context(grant=LIVE), D, State.FORGED, False, id="recreated-same-name"),
    pytest.param(
        rb(namespace="dev"), context(grant=LIVE), D, State.FORGED, False, id="copied-to-other-namespace"
    ),
    pytest.param(
        rb(namespace="dev"),
        context(grant=ISSUING),
        D,
        State.FORGED,
        False,
        id="copied-elsewhere-mid-issuance",
    ),
    pytest.param(
        crb("zsp-forged", [DEPLOYER], LABELS), context(grant=LIVE), D, State.FORGED, False, id="managed-crb"
    ),
    pytest.param(
        crb("zsp-forged", [DEPLOYER], LABELS), context(), D, State.ORPHANED, False, id="managed-crb-no-grant"
    ),
    pytest.param(
        rb(namespace="dev", labels={c.LABEL_MANAGED_BY: c.OPERATOR_NAME}),
        context(),
        D,
        State.ORPHANED,
        False,
        id="managed-outside-enforced-namespaces-too",
    ),
    # -- unmanaged RoleBindings ----------------------------------------------------------------
    pytest.param(
        unmanaged(namespace="dev"), context(mode="enforce"), K, State.NOT_ENFORCED, False, id="not-enforced"
    ),
    pytest.param(unmanaged(), context(), R, State.STANDING, False, id="audit-reports"),
    pytest.param(unmanaged(), context(mode="enforce"), D, State.STANDING, False, id="enforce-deletes"),
    pytest.param(
        unmanaged(),
        context(mode="enforce", allowlist=["pay/hand-made"]),
        K,
        State.ALLOWLISTED,
        False,
        id="allowlist-ns-name",
    ),
    pytest.param(
        unmanaged(),
        context(mode="enforce", allowlist=["hand-made"]),
        K,
        State.ALLOWLISTED,
        False,
        id="allowlist-name",
    ),
    pytest.param(
        unmanaged(),
        context(mode="enforce", allowlist=["pay/hand-*"]),
        K,
        State.ALLOWLISTED,
        False,
        id="allowlist-glob",
    ),
    pytest.param(
        unmanaged(),
        context(mode="enforce", allowlist=["dev/hand-made"]),
        D,
        State.STANDING,
        False,
        id="allowlist-other-ns",
    ),
    pytest.param(
        unmanaged(subjects=[KUBE_SYSTEM_SA]),
        context(mode="enforce"),
        K,
        State.SYSTEM,
        False,
        id="system-subjects",
    ),
    pytest.param(
        unmanaged(subjects=[{"kind": "Group", "name": "system:serviceaccounts:ci"}]),
        context(mode="enforce"),
        D,
        State.STANDING,
        False,
        id="broad-system-group-is-privilege",
    ),
    pytest.param(
        rb("system:sneaky", uid="s", labels=BOOTSTRAP, role=("ClusterRole", "admin")),
        context(mode="enforce"),
        D,
        State.STANDING,
        False,
        id="bootstrap-label-in-user-namespace-is-not-system",
    ),
    pytest.param(
        unmanaged(subjects=[OPERATOR_SA]),
        context(mode="enforce"),
        K,
        State.OPERATOR,
        False,
        id="operators-own",
    ),
    pytest.param(
        unmanaged(subjects=[OPERATOR_SA, INTRUDER]),
        context(mode="enforce"),
        R,
        State.STANDING,
        False,
        id="operator-plus-others-reported-never-deleted",
    ),
    pytest.param(
        unmanaged(role=("ClusterRole", "zsp-requester"), subjects=[ONCALL]),
        context(mode="enforce", roles={("ClusterRole", "", "zsp-requester"): ASK_RULES}),
        K,
        State.BREAK_GLASS,
        False,
        id="break-glass-right-to-ask",
    ),
    pytest.param(
        unmanaged(subjects=[ONCALL]),
        context(mode="enforce", roles={("ClusterRole", "", "edit"): [*ASK_RULES, *RULES]}),
        D,
        State.STANDING,
        False,
        id="break-glass-requesters-with-more-than-asking",
    ),
    pytest.param(
        unmanaged(role=("ClusterRole", "zsp-requester"), subjects=[ONCALL, INTRUDER]),
        context(mode="enforce", roles={("ClusterRole", "", "zsp-requester"): ASK_RULES}),
        D,
        State.STANDING,
        False,
        id="right-to-ask-for-others-than-break-glass-requesters",
    ),
    pytest.param(unmanaged(subjects=[]), context(mode="enforce"), K, State.EMPTY, False, id="binds-no-one"),
    # -- unmanaged ClusterRoleBindings -------------------------------------------------------
    pytest.param(crb("ci-admin", [DEPLOYER]), context(), R, State.STANDING, False, id="crb-audit"),
    pytest.param(
        crb("ci-admin", [DEPLOYER]),
        context(mode="enforce"),
        R,
        State.STANDING,
        False,
        id="crb-enforce-reports",
    ),
    pytest.param(
        crb("ci-admin", [DEPLOYER]),
        context(mode="enforce", enforce_cluster_bindings=True),
        D,
        State.STANDING,
        False,
        id="crb-enforce-cluster-bindings",
    ),
    pytest.param(
        crb("ci-admin", [DEPLOYER]),
        context(mode="audit", enforce_cluster_bindings=True),
        R,
        State.STANDING,
        False,
        id="crb-flag-alone-does-not-delete",
    ),
    pytest.param(
        crb("ci-admin", [DEPLOYER]),
        context(mode="enforce", enforce_cluster_bindings=True, allowlist=["ci-admin"]),
        K,
        State.ALLOWLISTED,
        False,
        id="crb-allowlisted",
    ),
    pytest.param(
        crb("ci-admin", [DEPLOYER]),
        context(mode="enforce", enforce_cluster_bindings=True, allowlist=["pay/ci-admin"]),
        D,
        State.STANDING,
        False,
        id="crb-not-named-by-ns-name",
    ),
    pytest.param(
        crb("system:basic-user", [{"kind": "Group", "name": "system:authenticated"}], BOOTSTRAP),
        context(mode="enforce", enforce_cluster_bindings=True),
        K,
        State.SYSTEM,
        False,
        id="bootstrap-crb",
    ),
    pytest.param(
        crb("zsp-operator", [OPERATOR_SA]),
        context(mode="enforce", enforce_cluster_bindings=True),
        K,
        State.OPERATOR,
        False,
        id="operators-own-crb",
    ),
]


@pytest.mark.parametrize(("body", "ctx", "action", "state", "revoke"), CASES)
def test_classify(
    body: dict[str, Any], ctx: SweepContext, action: Action, state: State, revoke: bool
) -> None:
    verdict = classify(parse_binding(body), ctx)
    assert (verdict.action, verdict.state, verdict.revoke) == (action, state, revoke), verdict.message
    assert verdict.message.startswith(("RoleBinding ", "ClusterRoleBinding ")), (
        "the message names the binding"
    )


def test_a_tampered_binding_names_what_changed_and_its_grant() -> None:
    verdict = classify(parse_binding(rb(subjects=[DEPLOYER, INTRUDER])), context(grant=LIVE))
    assert verdict.grant is not None
    assert verdict.grant.name == "deploy-1"
    assert verdict.message == (
        "RoleBinding pay/zsp-deploy-1-abc of TaskGrant pay/deploy-1 was changed after issuance: its "
        "subjects are ServiceAccount ci/deployer, ServiceAccount ci/intruder, not ServiceAccount ci/deployer"
    )


def test_edited_role_rules_are_named_in_the_message() -> None:
    verdict = classify(parse_binding(rb()), context(grant=LIVE, roles=EDITED_RULES))
    assert "the rules of Role zsp-deploy-1-abc were edited after issuance" in verdict.message


def test_a_service_account_subject_without_namespace_is_the_bindings_own() -> None:
    body = unmanaged(subjects=[{"kind": "ServiceAccount", "name": "builder"}])
    assert parse_binding(body).subjects == (SubjectRef("ServiceAccount", "builder", "pay"),)


def test_the_grant_record_is_not_mutated_by_classification() -> None:
    grant = copy.deepcopy(LIVE)
    classify(parse_binding(rb()), context(grant=grant))
    assert grant == LIVE


SYSTEM_SUBJECTS = [
    (SubjectRef("User", "system:kube-controller-manager"), True),
    (SubjectRef("Group", "system:masters"), True),
    (SubjectRef("Group", "system:nodes"), True),
    (SubjectRef("ServiceAccount", "coredns", "kube-system"), True),
    (SubjectRef("User", "system:serviceaccount:kube-system:coredns"), True),
    (SubjectRef("User", "system:serviceaccount:ci:deployer"), False),
    (SubjectRef("Group", "system:authenticated"), False),
    (SubjectRef("Group", "system:unauthenticated"), False),
    (SubjectRef("Group", "system:serviceaccounts"), False),
    (SubjectRef("Group", "system:serviceaccounts:ci"), False),
    (SubjectRef("ServiceAccount", "deployer", "ci"), False),
    (SubjectRef("User", "alice"), False),
]


@pytest.mark.parametrize(("subject", "system"), SYSTEM_SUBJECTS, ids=str)
def test_system_subjects(subject: SubjectRef, system: bool) -> None:
    assert is_system_subject(subject) is system


ALLOWLIST = [
    (rb("ci-bot", "pay"), ["pay/ci-bot"], "pay/ci-bot"),
    (rb("ci-bot", "pay"), ["ci-bot"], "ci-bot"),
    (rb("ci-bot", "pay"), ["*/ci-bot"], "*/ci-bot"),
    (rb("ci-bot", "pay"), ["pay/*"], "pay/*"),
    (rb("ci-bot", "pay"), ["dev/ci-bot", "ci-*"], "ci-*"),
    (rb("ci-bot", "pay"), ["dev/ci-bot"], None),
    (rb("ci-bot", "pay"), ["ci-bo"], None),
    (rb("ci-bot", kind="ClusterRoleBinding"), ["ci-bot"], "ci-bot"),
    (rb("ci-bot", kind="ClusterRoleBinding"), ["*/ci-bot"], None),
]


@pytest.mark.parametrize(("body", "patterns", "entry"), ALLOWLIST)
def test_allowlist_entries(body: dict[str, Any], patterns: list[str], entry: str | None) -> None:
    assert allowlisted(parse_binding(body), patterns) == entry


def test_same_rules_ignores_order_and_empty_fields_but_not_content() -> None:
    a = [
        {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]},
        {"verbs": ["get"], "nonResourceURLs": ["/x"]},
    ]
    reordered = [
        {"nonResourceURLs": ["/x"], "verbs": ["get"], "resources": []},
        {"resources": ["pods"], "apiGroups": [""], "verbs": ["list", "get"]},
    ]
    assert same_rules(a, reordered)
    assert not same_rules(a, [a[0]])
    assert not same_rules(a, [a[0], {"verbs": ["get", "list"], "nonResourceURLs": ["/x"]}])
    assert not same_rules([a[0]], [a[0], a[0]]), "a duplicated rule is an edit"


def test_role_needed_only_for_managed_roles_and_break_glass_candidates() -> None:
    ctx = context()
    assert role_needed(parse_binding(rb()), ctx) == ("Role", "pay", "zsp-deploy-1-abc")
    assert role_needed(parse_binding(rb(role=("ClusterRole", "view"))), ctx) is None
    assert role_needed(parse_binding(unmanaged()), ctx) is None
    assert role_needed(parse_binding(unmanaged(subjects=[ONCALL])), ctx) == ("ClusterRole", "", "edit")
    assert role_needed(parse_binding(unmanaged(namespace="dev", subjects=[ONCALL])), ctx) is None


def test_break_glass_requesters_come_from_break_glass_policies_only() -> None:
    ordinary = AccessPolicy.model_validate(
        {
            "metadata": {"name": "ordinary"},
            "spec": {
                "requesters": [{"kind": "ServiceAccount", "namespace": "ci", "name": "pipeline"}],
                "permissions": [{"name": "deploy", "rules": RULES}],
            },
        }
    )
    assert break_glass_requesters([ordinary, BREAK_GLASS_POLICY]) == {SubjectRef("Group", "platform-oncall")}


def test_an_expired_grant_not_yet_revoked_is_left_to_the_scheduler() -> None:
    # Liveness comes from the grant's own record, so the sweeper never races the revoker's clock.
    far_past = changed(LIVE, {"spec.expiresAt": datetime(2000, 1, 1, tzinfo=UTC).isoformat()})
    assert classify(parse_binding(rb()), context(grant=far_past)).action is Action.KEEP


def test_an_orphan_names_the_grant_that_is_missing() -> None:
    verdict = classify(parse_binding(rb()), context())
    assert verdict.message == (
        f"RoleBinding pay/zsp-deploy-1-abc carries the operator's labels but its TaskGrant {GRANT_UID} "
        "does not exist"
    )
    unnamed = classify(parse_binding(rb(labels={c.LABEL_MANAGED_BY: c.OPERATOR_NAME})), context())
    assert unnamed.message.endswith("but it names no TaskGrant")
