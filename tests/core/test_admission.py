"""Admission decisions (pure): identities stamped from userInfo, approvals recorded from it,
and the checks the CRD schema cannot express — each error names the field and the fix.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from core_factories import POLICY_SPEC

from zsp_operator.core import constants as c
from zsp_operator.core.admission import (
    admit_approval,
    admit_policy,
    admit_request_identity,
    admit_request_spec,
    userinfo,
)
from zsp_operator.core.annotations import encode_approvals, encode_requester
from zsp_operator.core.models import AccessPolicy, ApprovalRecord, UserInfo

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
CREDENTIAL = {"authentication.kubernetes.io/credential-id": ["JTI=5f1c"]}
PIPELINE = UserInfo(
    username="system:serviceaccount:ci:pipeline",
    uid="p1",
    groups=["system:serviceaccounts"],
    extra=CREDENTIAL,
)
ALICE = UserInfo(username="alice", uid="a1", groups=["platform-leads"])
DAVE = UserInfo(username="dave", uid="d1", groups=["developers"])


def policy(**changes: Any) -> AccessPolicy:
    return AccessPolicy.model_validate({"metadata": {"name": "p"}, "spec": {**POLICY_SPEC, **changes}})


def request(
    annotations: dict[str, str] | None = None, status: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "r", "namespace": "pay", "annotations": annotations or {}},
        "spec": {
            "grantee": {"serviceAccount": {"namespace": "ci", "name": "deployer"}},
            "permission": "deploy",
            "reason": "x",
            **spec,
        },
    }
    if status is not None:
        body["status"] = status
    return body


def conditions(*pairs: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "decision": {"allowed": True, "reason": "ok", "at": "2026-01-01T00:00:00Z"},
        "conditions": [
            {"type": t, "status": s, "reason": r, "lastTransitionTime": "2026-01-01T00:00:00Z"}
            for t, s, r in pairs
        ],
    }


PENDING = conditions((c.COND_APPROVED, "False", c.REASON_PENDING))
ACTIVE = conditions((c.COND_APPROVED, "True", c.REASON_APPROVED), (c.COND_READY, "True", c.REASON_ISSUED))
STAMPED = {c.ANNOTATION_REQUESTER: encode_requester(PIPELINE)}


# --- identity -------------------------------------------------------------------------------


def test_create_stamps_the_authenticated_creator_with_its_credential_id() -> None:
    user = userinfo(
        {
            "username": PIPELINE.username,
            "uid": "p1",
            "groups": ["system:serviceaccounts"],
            "extra": CREDENTIAL,
        }
    )
    verdict = admit_request_identity("CREATE", None, request(), user)
    assert verdict.allowed
    assert json.loads(verdict.annotations[c.ANNOTATION_REQUESTER] or "") == {
        "username": PIPELINE.username,
        "uid": "p1",
        "groups": ["system:serviceaccounts"],
        "extra": CREDENTIAL,
    }


@pytest.mark.parametrize(
    ("operation", "old", "new", "fragment"),
    [
        pytest.param(
            "CREATE", None, request({c.ANNOTATION_REQUESTER: "{}"}), "remove it", id="create-with-requester"
        ),
        pytest.param(
            "CREATE", None, request({c.ANNOTATION_APPROVALS: "[]"}), "zsp approve", id="create-with-approvals"
        ),
        pytest.param(
            "UPDATE",
            request(STAMPED),
            request({c.ANNOTATION_REQUESTER: "{}"}),
            "may not be changed",
            id="change-requester",
        ),
        pytest.param("UPDATE", request(STAMPED), request({}), "may not be changed", id="remove-requester"),
        pytest.param(
            "UPDATE",
            request(STAMPED),
            request({**STAMPED, c.ANNOTATION_APPROVALS: "[]"}),
            "written directly",
            id="write-approvals",
        ),
    ],
)
def test_user_written_identity_annotations_are_refused(
    operation: str, old: dict[str, Any] | None, new: dict[str, Any], fragment: str
) -> None:
    verdict = admit_request_identity(operation, old, new, PIPELINE)
    assert not verdict.allowed
    assert fragment in verdict.errors[0]
    assert "metadata.annotations[" in verdict.errors[0]


def test_an_update_that_leaves_identity_alone_is_allowed() -> None:
    verdict = admit_request_identity("UPDATE", request(STAMPED), request({**STAMPED, "note": "x"}), ALICE)
    assert verdict.allowed
    assert verdict.annotations == {}


# --- approvals ------------------------------------------------------------------------------


def approve(
    user: UserInfo,
    old_status: dict[str, Any],
    key: str = c.ANNOTATION_APPROVE,
    pol: AccessPolicy | None = None,
    prior: str | None = None,
) -> Any:
    old_annotations = dict(STAMPED)
    if prior:
        old_annotations[c.ANNOTATION_APPROVALS] = prior
    old = request(old_annotations, old_status)
    new = request({**old_annotations, key: "lgtm"}, old_status)
    return admit_approval(old, new, user, NOW, pol or policy())


def test_an_eligible_approval_is_recorded_from_userinfo_and_consumed() -> None:
    verdict = approve(ALICE, PENDING)
    assert verdict.allowed
    records = json.loads(verdict.annotations[c.ANNOTATION_APPROVALS] or "")
    assert records == [
        {
            "username": "alice",
            "groups": ["platform-leads"],
            "decision": "approve",
            "at": "2026-01-01T12:00:00.000000Z",
            "comment": "lgtm",
        }
    ]
    assert verdict.annotations[c.ANNOTATION_APPROVE] is None, "the request annotation is removed"


def test_a_deny_is_recorded_as_deny() -> None:
    verdict = approve(ALICE, PENDING, key=c.ANNOTATION_DENY)
    assert json.loads(verdict.annotations[c.ANNOTATION_APPROVALS] or "")[0]["decision"] == "deny"


@pytest.mark.parametrize(
    ("user", "status", "pol", "prior", "fragment"),
    [
        pytest.param(ALICE, ACTIVE, None, None, "is Active, not Pending", id="not-pending"),
        pytest.param(
            DAVE,
            PENDING,
            None,
            None,
            "dave is not an approver of AccessPolicy p (approvers: Group platform-leads)",
            id="not-an-approver",
        ),
        pytest.param(
            UserInfo(username=PIPELINE.username, groups=["platform-leads"]),
            PENDING,
            None,
            None,
            "may not approve it",
            id="self-approval",
        ),
        pytest.param(
            ALICE,
            PENDING,
            None,
            json.dumps([{"username": "alice", "decision": "approve", "at": "2026-01-01T00:00:00Z"}]),
            "already recorded",
            id="repeat",
        ),
    ],
)
def test_approvals_that_are_refused(
    user: UserInfo, status: dict[str, Any], pol: AccessPolicy | None, prior: str | None, fragment: str
) -> None:
    verdict = approve(user, status, pol=pol, prior=prior)
    assert not verdict.allowed
    assert fragment in verdict.errors[0]


def test_self_approval_is_recorded_when_the_policy_allows_it() -> None:
    pol = policy(
        approval={
            "required": 1,
            "approvers": [{"kind": "Group", "name": "platform-leads"}],
            "allowSelfApproval": True,
        }
    )
    me = UserInfo(username=PIPELINE.username, groups=["platform-leads"])
    assert approve(me, PENDING, pol=pol).allowed


def test_both_approve_and_deny_at_once_is_refused() -> None:
    old = request(STAMPED, PENDING)
    new = request({**STAMPED, c.ANNOTATION_APPROVE: "", c.ANNOTATION_DENY: ""}, PENDING)
    verdict = admit_approval(old, new, ALICE, NOW, policy())
    assert "set only one of" in verdict.errors[0]


# --- request spec ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "fragment"),
    [
        pytest.param(
            request(policy="p", ttl="2h"),
            "spec.ttl: 2h exceeds maxTTL 1h of AccessPolicy p: ask for 1h or less",
            id="ttl-over-max",
        ),
        pytest.param(
            request(policy="p", permission="nuke"),
            "spec.permission: 'nuke' is not a permission",
            id="unknown-permission",
        ),
        pytest.param(
            request(policy="missing"), "spec.policy: AccessPolicy missing does not exist", id="unknown-policy"
        ),
        pytest.param(
            request(
                policy="p",
                grantee={"ephemeral": {}},
                delivery={"namespace": "kube-system", "secretName": "s"},
            ),
            "spec.delivery.namespace: kube-system is not a delivery namespace",
            id="delivery-namespace",
        ),
        pytest.param(request(reason="  "), "spec.reason", id="blank-reason"),
    ],
)
def test_malformed_requests_are_refused_naming_the_field(new: dict[str, Any], fragment: str) -> None:
    verdict = admit_request_spec("CREATE", None, new, {"p": policy()}, ["view"])
    assert not verdict.allowed
    assert any(fragment in error for error in verdict.errors), verdict.errors


def test_a_valid_request_is_admitted() -> None:
    assert admit_request_spec(
        "CREATE", None, request(policy="p", ttl="30m"), {"p": policy()}, ["view"]
    ).allowed


@pytest.mark.parametrize(
    ("old_status", "change", "allowed"),
    [
        pytest.param(PENDING, {"ttl": "5m"}, True, id="pending-may-change"),
        pytest.param(ACTIVE, {"done": True}, True, id="active-done"),
        pytest.param(ACTIVE, {"ttl": "5m"}, False, id="active-ttl"),
        pytest.param(ACTIVE, {"permission": "other"}, False, id="active-permission"),
    ],
)
def test_only_done_may_change_once_decided(
    old_status: dict[str, Any], change: dict[str, Any], allowed: bool
) -> None:
    old = request(STAMPED, old_status)
    new = request(STAMPED, old_status, **change)
    verdict = admit_request_spec("UPDATE", old, new, {"p": policy()}, ["view"])
    assert verdict.allowed is allowed
    if not allowed:
        assert "only spec.done may change" in verdict.errors[0]


def test_done_cannot_be_undone() -> None:
    old = request(STAMPED, ACTIVE, done=True)
    new = request(STAMPED, ACTIVE, done=False)
    verdict = admit_request_spec("UPDATE", old, new, {}, [])
    assert "spec.done: cannot be set back to false" in verdict.errors[0]


# --- policies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        pytest.param(
            {"defaultTTL": "2h", "maxTTL": "1h"},
            "defaultTTL (2h) is longer than maxTTL (1h)",
            id="default-over-max",
        ),
        pytest.param(
            {"approval": {"required": 2, "approvers": []}},
            "spec.approval.approvers: approval.required is 2 but no approvers",
            id="no-approvers",
        ),
        pytest.param(
            {
                "approval": {
                    "required": 3,
                    "approvers": [{"kind": "User", "name": "a"}, {"kind": "User", "name": "b"}],
                }
            },
            "spec.approval.required: 3 distinct approvers are needed but only 2 are listed",
            id="impossible-quorum",
        ),
        pytest.param(
            {"permissions": [{"name": "x", "clusterRole": "cluster-admin"}]},
            "spec.permissions[0].clusterRole: cluster-admin is not in the operator's catalog",
            id="uncatalogued",
        ),
        pytest.param({"surprise": True}, "spec.surprise: unknown field", id="unknown-field"),
    ],
)
def test_contradictory_policies_are_refused(changes: dict[str, Any], fragment: str) -> None:
    verdict = admit_policy({"metadata": {"name": "p"}, "spec": {**POLICY_SPEC, **changes}}, ["view"])
    assert not verdict.allowed
    assert any(fragment in error for error in verdict.errors), verdict.errors


def test_a_group_of_approvers_can_meet_any_quorum() -> None:
    spec = {
        **POLICY_SPEC,
        "approval": {"required": 5, "approvers": [{"kind": "Group", "name": "platform-leads"}]},
    }
    assert admit_policy({"metadata": {"name": "p"}, "spec": spec}, ["view"]).allowed


APPROVED_BY_ALICE = {
    **STAMPED,
    c.ANNOTATION_APPROVALS: encode_approvals(
        [ApprovalRecord(username="alice", groups=["platform-leads"], decision="approve", at=NOW)]
    ),
}


@pytest.mark.parametrize(
    ("change", "allowed"),
    [
        pytest.param({"permission": "read-only"}, False, id="permission"),
        pytest.param({"ttl": "5m"}, False, id="ttl"),
        pytest.param({"reason": "something else"}, False, id="reason"),
        pytest.param({}, True, id="re-applied-unchanged"),
    ],
)
def test_a_pending_request_someone_approved_keeps_the_spec_they_approved(
    change: dict[str, Any], allowed: bool
) -> None:
    old = request(APPROVED_BY_ALICE, PENDING)
    new = request(APPROVED_BY_ALICE, PENDING, **change)
    verdict = admit_request_spec("UPDATE", old, new, {"p": policy()}, ["view"])
    assert verdict.allowed is allowed
    if not allowed:
        assert "already has approvals (alice)" in verdict.errors[0]
        assert "file a new AccessRequest" in verdict.errors[0]
