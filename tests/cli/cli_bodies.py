"""AccessRequest bodies as the API server returns them, at each step of their lifecycle.

The status is produced by the operator's own transition function (`core.lifecycle.apply`),
so the CLI tests read exactly the shapes the operator writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from zsp_operator.core import constants as c
from zsp_operator.core import lifecycle
from zsp_operator.core.models import (
    AccessPolicySpec,
    AccessRequestStatus,
    ApprovalRecord,
    NamespacedName,
    ObjectRef,
    UserInfo,
    format_time,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CREATED = NOW - timedelta(minutes=5)
PIPELINE = UserInfo(
    username="system:serviceaccount:ci:pipeline",
    groups=["system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"],
)
ALICE = UserInfo(username="alice", groups=["platform-leads", "system:authenticated"])
BOB = UserInfo(username="bob", groups=["platform-leads", "system:authenticated"])
DAVE = UserInfo(username="dave", groups=["developers", "system:authenticated"])


def policy(
    required: int = 2, allow_self: bool = False, approvers: Sequence[dict[str, Any]] = ()
) -> AccessPolicySpec:
    return AccessPolicySpec.model_validate(
        {
            "permissions": [
                {
                    "name": "deploy",
                    "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]}],
                }
            ],
            "approval": {
                "required": required,
                "approvers": list(approvers) or [{"kind": "Group", "name": "platform-leads"}],
                "allowSelfApproval": allow_self,
            },
        }
    )


def at(minutes: float) -> datetime:
    """A moment `minutes` after the request was created."""
    return CREATED + timedelta(minutes=minutes)


def approval(
    user: UserInfo, minutes: float, decision: str = "approve", comment: str | None = None
) -> ApprovalRecord:
    return ApprovalRecord(
        username=user.username,
        groups=user.groups,
        decision=decision,
        at=at(minutes),
        comment=comment,  # type: ignore[arg-type]
    )


def decided(outcome: str = "allowed", reason: str = "policy ci-deployers allows it") -> lifecycle.Decided:
    return lifecycle.Decided(outcome=outcome, reason=reason, policy="ci-deployers", requester=PIPELINE)  # type: ignore[arg-type]


def approvals_changed(
    records: Sequence[ApprovalRecord],
    *,
    approved: bool = False,
    denied_by: str | None = None,
    message: str = "",
) -> lifecycle.ApprovalsChanged:
    return lifecycle.ApprovalsChanged(tuple(records), approved, denied_by, message)


def issued(
    minutes: float = 1, ttl: timedelta = timedelta(minutes=10), identity: tuple[str, str] = ("ci", "deployer")
) -> lifecycle.Issued:
    return lifecycle.Issued(
        grant=ObjectRef(name="deploy-4711", uid="uid-grant"),
        identity=NamespacedName(namespace=identity[0], name=identity[1]),
        issued_at=at(minutes),
        expires_at=at(minutes) + ttl,
    )


def ended(reason: str, message: str, minutes: float) -> lifecycle.Ended:
    return lifecycle.Ended(reason=reason, message=message, revoked_at=at(minutes), lag_seconds=0.004)  # type: ignore[arg-type]


def request(
    *steps: tuple[float, lifecycle.Event],
    name: str = "deploy-4711",
    spec: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    requester: UserInfo | None = PIPELINE,
) -> dict[str, Any]:
    """A request body after `steps` ((minutes after creation, lifecycle event), ...)."""
    status = AccessRequestStatus()
    for minutes, event in steps:
        status = lifecycle.apply(status, event, at(minutes), 1)
    notes = dict(annotations or {})
    if requester is not None:
        notes.setdefault(c.ANNOTATION_REQUESTER, json.dumps(requester.to_wire()))
    if status.approvals:
        notes.setdefault(c.ANNOTATION_APPROVALS, json.dumps([r.to_wire() for r in status.approvals]))
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_REQUEST,
        "metadata": {
            "name": name,
            "namespace": "payments-staging",
            "uid": f"uid-{name}",
            "creationTimestamp": format_time(CREATED),
            "annotations": notes,
        },
        "spec": spec
        or {
            "grantee": {"serviceAccount": {"namespace": "ci", "name": "deployer"}},
            "permission": "deploy",
            "ttl": "10m",
            "reason": "deploy build 4711",
        },
        "status": status.to_wire(),
    }


EPHEMERAL_SPEC: dict[str, Any] = {
    "grantee": {"ephemeral": {}},
    "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}],
    "reason": "agent triage",
    "delivery": {"namespace": "ci", "secretName": "agent-kubeconfig"},
}


def event(reason: str, message: str, minutes: float, type_: str = "Normal", count: int = 1) -> dict[str, Any]:
    stamp = format_time(at(minutes))
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"deploy-4711.{reason.lower()}", "namespace": "payments-staging"},
        "reason": reason,
        "message": message,
        "type": type_,
        "count": count,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": "zsp-operator"},
    }
