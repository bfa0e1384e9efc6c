"""The fields every audit record about a request shares, built from our models; no I/O.

Every record names the request the same way (`{name, namespace, uid}`) and carries what is
known at that step: policy, requester, approvers, grantee, permission, rules, expiresAt.
A record built from a TaskGrant (revocation) says the same things from the grant's own spec,
which is what the teardown trusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from zsp_operator.core import constants as c
from zsp_operator.core import lifecycle
from zsp_operator.core.models import (
    AccessRequest,
    AccessRequestStatus,
    ApprovalRecord,
    NamespacedName,
    Phase,
    PolicyRule,
    TaskGrant,
    UserInfo,
    format_time,
)

Mode = Literal["bind", "ephemeral"]


def request_ref(name: str, namespace: str | None, uid: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace or "", "uid": uid}


def user(info: UserInfo | None) -> dict[str, Any] | None:
    return info.to_wire() if info is not None else None


def approvers(approvals: Sequence[ApprovalRecord]) -> list[str] | None:
    """Usernames that approved, in order, once each."""
    names = list(dict.fromkeys(a.username for a in approvals if a.decision == "approve"))
    return names or None


def grantee(mode: Mode, identity: NamespacedName | None) -> dict[str, Any]:
    """Who holds (or will hold) the privilege, with the username the API server's audit log shows."""
    body: dict[str, Any] = {"mode": mode}
    if identity is not None:
        body.update(
            namespace=identity.namespace,
            name=identity.name,
            username=f"system:serviceaccount:{identity.namespace}:{identity.name}",
        )
    return body


def rules(items: Sequence[PolicyRule] | None) -> list[dict[str, Any]] | None:
    return [rule.to_wire() for rule in items] if items else None


def flag(value: bool | None) -> Literal[True] | None:
    """Flags appear only when true, so a reader never mistakes a missing flag for `false`."""
    return True if value else None


def phase(status: AccessRequestStatus) -> str | None:
    return lifecycle.phase_of(status.conditions).value if status.conditions else None


def of_request(request: AccessRequest, phase_after: Phase | None = None) -> dict[str, Any]:
    """The shared fields, from the request and its status as the caller knows it."""
    spec, status = request.spec, request.status
    identity = status.identity or spec.grantee.service_account
    return {
        "request": request_ref(request.name, request.namespace, request.metadata.uid),
        "phase": phase_after.value if phase_after is not None else phase(status),
        "policy": status.policy or spec.policy,
        "requester": user(status.requester),
        "approvers": approvers(status.approvals),
        "grantee": grantee(spec.grantee.mode, identity),
        "permission": spec.permission,
        "rules": rules(status.permission_rules or spec.rules),
        "expiresAt": format_time(status.expires_at) if status.expires_at else None,
        "breakGlass": flag(status.break_glass),
        "persistenceCapable": flag(status.persistence_capable),
    }


def of_grant(grant: TaskGrant, status: AccessRequestStatus | None = None) -> dict[str, Any]:
    """The shared fields from a TaskGrant, completed by its request's status when known."""
    spec = grant.spec
    request_status = status or AccessRequestStatus()
    return {
        "request": request_ref(spec.request.name, grant.namespace, spec.request.uid),
        "phase": phase(request_status),
        "policy": spec.policy,
        "requester": user(spec.requester),
        "approvers": approvers(request_status.approvals),
        "grantee": grantee(spec.mode, spec.identity),
        "permission": spec.permission,
        "rules": rules(spec.rules),
        "clusterRole": spec.cluster_role,
        "expiresAt": format_time(spec.expires_at),
        "breakGlass": flag(spec.break_glass),
        "persistenceCapable": flag(spec.persistence_capable),
        "grant": {"name": grant.name, "namespace": grant.namespace, "uid": grant.metadata.uid},
    }


def event_target(kind: str, name: str, namespace: str | None, uid: str) -> dict[str, Any]:
    """The minimal object body an Event's involvedObject is built from."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
    }
