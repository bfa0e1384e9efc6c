"""Admission decisions, no I/O: (operation, old, new, userinfo) -> annotations to write, or errors.

The requester and approvers are recorded from the API server's authenticated userInfo in
annotations that no user may write; everything here names the field it objects to and
says what to do instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from zsp_operator.core import constants as c
from zsp_operator.core.annotations import approvals_of, encode_approvals, encode_requester, requester_of
from zsp_operator.core.approvals import is_eligible
from zsp_operator.core.durations import format_duration
from zsp_operator.core.errors import describe
from zsp_operator.core.lifecycle import phase_of
from zsp_operator.core.models import (
    AccessPolicy,
    AccessPolicySpec,
    AccessRequestSpec,
    AccessRequestStatus,
    ApprovalRecord,
    Phase,
    UserInfo,
)

Body = Mapping[str, Any]


def _annotations(body: Body | None) -> dict[str, str]:
    return dict(((body or {}).get("metadata") or {}).get("annotations") or {})


def _field(key: str) -> str:
    return f"metadata.annotations[{key}]"


@dataclass
class Admission:
    """The verdict on one request: errors reject it; `annotations` are set (None removes)."""

    errors: list[str] = field(default_factory=list)
    annotations: dict[str, str | None] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return not self.errors


def userinfo(raw: Mapping[str, Any]) -> UserInfo:
    return UserInfo(
        username=str(raw.get("username", "")),
        uid=str(raw.get("uid", "") or ""),
        groups=[str(g) for g in raw.get("groups") or []],
        extra={str(k): [str(v) for v in values] for k, values in (raw.get("extra") or {}).items()},
    )


def admit_request_identity(operation: str, old: Body | None, new: Body, user: UserInfo) -> Admission:
    """Stamp the creator on CREATE; refuse any user-written requester or approvals record."""
    verdict = Admission()
    before, after = _annotations(old), _annotations(new)
    if operation == "CREATE":
        if c.ANNOTATION_REQUESTER in after:
            verdict.errors.append(
                f"{_field(c.ANNOTATION_REQUESTER)}: is recorded from your authenticated identity by the "
                "admission webhook; remove it from the manifest"
            )
        if c.ANNOTATION_APPROVALS in after:
            verdict.errors.append(
                f"{_field(c.ANNOTATION_APPROVALS)}: is recorded by the admission webhook; remove it and "
                "approve with `zsp approve`"
            )
        verdict.annotations[c.ANNOTATION_REQUESTER] = encode_requester(user)
        return verdict
    if before.get(c.ANNOTATION_REQUESTER) != after.get(c.ANNOTATION_REQUESTER):
        verdict.errors.append(
            f"{_field(c.ANNOTATION_REQUESTER)}: may not be changed; it records who created the request"
        )
    if before.get(c.ANNOTATION_APPROVALS) != after.get(c.ANNOTATION_APPROVALS):
        verdict.errors.append(
            f"{_field(c.ANNOTATION_APPROVALS)}: may not be written directly; use `zsp approve` or "
            f"`zsp deny` (the annotations {c.ANNOTATION_APPROVE} / {c.ANNOTATION_DENY})"
        )
    return verdict


def admit_approval(
    old: Body,
    new: Body,
    user: UserInfo,
    now: datetime,
    policy: AccessPolicy | None,
) -> Admission:
    """Turn a `zsp.dev/approve` or `zsp.dev/deny` annotation into an authenticated record."""
    verdict = Admission()
    after = _annotations(new)
    wanted = [
        (key, d)
        for key, d in ((c.ANNOTATION_APPROVE, "approve"), (c.ANNOTATION_DENY, "deny"))
        if key in after
    ]
    if not wanted:
        return verdict
    if len(wanted) > 1:
        verdict.errors.append(
            f"set only one of {_field(c.ANNOTATION_APPROVE)} or {_field(c.ANNOTATION_DENY)}"
        )
        return verdict
    key, decision = wanted[0]
    status = AccessRequestStatus.model_validate((old or {}).get("status") or {})
    phase = phase_of(status.conditions)
    name = (new.get("metadata") or {}).get("name", "")
    if phase is not Phase.PENDING:
        verdict.errors.append(
            f"{_field(key)}: AccessRequest {name} is {phase.value}, not Pending: nothing to {decision}"
        )
        return verdict
    if policy is not None and not is_eligible(user, policy.spec.approval.approvers):
        approvers = ", ".join(f"{s.kind.value} {s.name}" for s in policy.spec.approval.approvers) or "nobody"
        verdict.errors.append(
            f"{_field(key)}: {user.username} is not an approver of AccessPolicy {policy.name} (approvers: {approvers})"
        )
        return verdict
    requester = requester_of(_annotations(old))
    self_approval = requester is not None and requester.username == user.username and decision == "approve"
    if self_approval and not (policy is not None and policy.spec.approval.allow_self_approval):
        verdict.errors.append(
            f"{_field(key)}: {user.username} filed AccessRequest {name} and may not approve it "
            "(the policy does not set approval.allowSelfApproval); ask another approver"
        )
        return verdict
    records = approvals_of(_annotations(old))
    if any(r.username == user.username and r.decision == decision for r in records):
        verdict.errors.append(
            f"{_field(key)}: {user.username} has already recorded {decision} on AccessRequest {name}"
        )
        return verdict
    comment = after[key].strip() or None
    records.append(
        ApprovalRecord(username=user.username, groups=user.groups, decision=decision, at=now, comment=comment)
    )
    verdict.annotations[c.ANNOTATION_APPROVALS] = encode_approvals(records)
    verdict.annotations[key] = None
    return verdict


def admit_request_spec(
    operation: str, old: Body | None, new: Body, policies: Mapping[str, AccessPolicy], catalog: Sequence[str]
) -> Admission:
    """What the CRD schema cannot say: TTL over the policy's max, unknown permission, delivery
    namespace, edits of a request that is no longer Pending (only `done: true` may change), and
    edits of a Pending request someone has already approved or denied."""
    verdict = Admission()
    name = (new.get("metadata") or {}).get("name", "")
    try:
        spec = AccessRequestSpec.model_validate(new.get("spec") or {})
    except ValidationError as err:
        verdict.errors.extend(describe(err, f"AccessRequest {name}", prefix=("spec",)))
        return verdict
    if operation == "UPDATE" and old is not None:
        status = AccessRequestStatus.model_validate(old.get("status") or {})
        phase = phase_of(status.conditions)
        before = dict(old.get("spec") or {})
        after = dict(new.get("spec") or {})
        before.pop("done", None)
        after.pop("done", None)
        approvers = [r.username for r in approvals_of(_annotations(old))]
        if phase is Phase.PENDING and approvers and before != after:
            # An approval is of the request as it was: it must not carry over to another one.
            verdict.errors.append(
                f"spec: AccessRequest {name} already has approvals ({', '.join(approvers)}) for what it "
                "asks now; file a new AccessRequest to ask for something else"
            )
            return verdict
        if phase is not Phase.PENDING and status.decision is not None:
            if before != after:
                verdict.errors.append(
                    f"spec: AccessRequest {name} is {phase.value}; only spec.done may change (set it to "
                    "true to end the grant); file a new AccessRequest for anything else"
                )
            if (old.get("spec") or {}).get("done") and not (new.get("spec") or {}).get("done"):
                verdict.errors.append("spec.done: cannot be set back to false once the task is done")
        return verdict
    policy = policies.get(spec.policy) if spec.policy else None
    if spec.policy and policy is None:
        verdict.errors.append(
            f"spec.policy: AccessPolicy {spec.policy} does not exist; name an existing policy or leave it out"
        )
    if policy is not None:
        pspec = policy.spec
        if spec.ttl is not None and spec.ttl > pspec.max_ttl:
            verdict.errors.append(
                f"spec.ttl: {format_duration(spec.ttl)} exceeds maxTTL {format_duration(pspec.max_ttl)} of "
                f"AccessPolicy {policy.name}: ask for {format_duration(pspec.max_ttl)} or less"
            )
        if spec.permission is not None and pspec.permission(spec.permission) is None:
            names = ", ".join(p.name for p in pspec.permissions)
            verdict.errors.append(
                f"spec.permission: {spec.permission!r} is not a permission of AccessPolicy {policy.name} (it has: {names})"
            )
        if spec.delivery is not None:
            allowed = pspec.grantees.ephemeral.delivery_namespaces if pspec.grantees.ephemeral else []
            if spec.delivery.namespace not in allowed:
                verdict.errors.append(
                    f"spec.delivery.namespace: {spec.delivery.namespace} is not a delivery namespace of "
                    f"AccessPolicy {policy.name} (allowed: {', '.join(allowed) or 'none'})"
                )
    return verdict


def admit_policy(new: Body, catalog: Sequence[str]) -> Admission:
    """Contradictions in a policy: defaultTTL > maxTTL, impossible approval quorum, unknown ClusterRole."""
    verdict = Admission()
    name = (new.get("metadata") or {}).get("name", "")
    try:
        spec = AccessPolicySpec.model_validate(new.get("spec") or {})
    except ValidationError as err:
        verdict.errors.extend(describe(err, f"AccessPolicy {name}", prefix=("spec",)))
        return verdict
    approval = spec.approval
    people = [s for s in approval.approvers if s.kind.value != "Group"]
    groups = [s for s in approval.approvers if s.kind.value == "Group"]
    if approval.required and not approval.approvers and not spec.break_glass:
        verdict.errors.append(
            f"spec.approval.approvers: approval.required is {approval.required} but no approvers are listed; "
            "list approvers or set required: 0"
        )
    elif approval.required > len(people) and not groups:
        verdict.errors.append(
            f"spec.approval.required: {approval.required} distinct approvers are needed but only {len(people)} "
            "are listed; lower required or list more approvers"
        )
    for index, permission in enumerate(spec.permissions):
        if permission.cluster_role and permission.cluster_role not in catalog:
            verdict.errors.append(
                f"spec.permissions[{index}].clusterRole: {permission.cluster_role} is not in the operator's "
                f"catalog ({', '.join(catalog) or 'empty'}); use inline rules or add it to the catalog"
            )
    return verdict
