"""Approval counting, no I/O: who counts towards N-of-M, who is ignored and why, timeouts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from zsp_operator.core.models import (
    AccessPolicySpec,
    ApprovalRecord,
    Subject,
    SubjectKind,
    UserInfo,
)

# Why a record did not count; stable strings the operator may put in events and status.
NOT_ELIGIBLE: Final = "not an eligible approver"
SELF_APPROVAL: Final = "self-approval not allowed"
DUPLICATE: Final = "duplicate"


@dataclass(frozen=True)
class Tally:
    """The state of a request's approvals under one policy."""

    approved: bool
    denied_by: str | None
    counted: tuple[str, ...]  # distinct usernames whose approval counts, in order
    ignored: tuple[tuple[str, str], ...]  # (username, why it did not count)
    missing: int  # approvals still needed; 0 once approved


def is_eligible(approver: UserInfo | ApprovalRecord, approvers: Sequence[Subject]) -> bool:
    """True if the identity is one of the policy's approvers; an empty list admits nobody."""
    for subject in approvers:
        if subject.kind is SubjectKind.GROUP:
            if subject.name in approver.groups:
                return True
        elif subject.username == approver.username:
            return True
    return False


def tally(records: Sequence[ApprovalRecord], policy: AccessPolicySpec, requester: UserInfo | None) -> Tally:
    """Count approvals: distinct eligible approvers, never the requester unless allowed.

    One deny from an eligible approver denies the request, even after that approver approved:
    doubt from someone entitled to decide must win. A requester who is an eligible approver may
    deny their own request even without allowSelfApproval; any requester withdraws by deleting it.
    """
    approval = policy.approval
    counted: list[str] = []
    ignored: list[tuple[str, str]] = []
    denied_by: str | None = None
    # Records are stored in arrival order; sort by time anyway so the tally never depends on it.
    for record in sorted(records, key=lambda r: r.at):
        user = record.username
        if not is_eligible(record, approval.approvers):
            ignored.append((user, NOT_ELIGIBLE))
        elif record.decision == "deny":
            denied_by = denied_by or user
        elif requester is not None and user == requester.username and not (approval.allow_self_approval):
            ignored.append((user, SELF_APPROVAL))
        elif user in counted:
            ignored.append((user, DUPLICATE))
        else:
            counted.append(user)
    missing = max(0, approval.required - len(counted))
    return Tally(
        approved=denied_by is None and missing == 0,
        denied_by=denied_by,
        counted=tuple(counted),
        ignored=tuple(ignored),
        missing=missing,
    )


def approval_deadline(created: datetime, policy: AccessPolicySpec) -> datetime:
    """When a request still awaiting approval times out."""
    return created + policy.approval.timeout


def timed_out(created: datetime, policy: AccessPolicySpec, now: datetime) -> bool:
    """True once a request created at `created` has waited `approval.timeout` or longer."""
    return now >= approval_deadline(created, policy)
