"""An AccessRequest's lifecycle as a pure transition function over its status.

The conditions are the state (`Approved`, `Denied`, `Ready`, in the Kubernetes shape);
`phase` is derived from them and never branched on. Terminal phases absorb every event:
that is the one-shot rule that stops a re-applied request from granting again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from zsp_operator.core import constants as c
from zsp_operator.core.models import (
    TERMINAL_PHASES,
    AccessRequestStatus,
    ApprovalRecord,
    Condition,
    DecisionRecord,
    NamespacedName,
    ObjectRef,
    Phase,
    PolicyRule,
    TaskGrant,
    UsageSummary,
    UserInfo,
)

EndReason = Literal["Expired", "Revoked", "Completed"]
# Ready's reason between approval and issuance (cert-manager's CertificateRequest says Pending).
REASON_ISSUING = "Issuing"
_END_PHASES = {
    c.REASON_EXPIRED: Phase.EXPIRED,
    c.REASON_REVOKED: Phase.REVOKED,
    c.REASON_COMPLETED: Phase.COMPLETED,
    c.REASON_FAILED: Phase.FAILED,
}
# The reasons a revocation gives: Ready turns False with one of them when a grant ends.
END_REASONS: tuple[EndReason, ...] = ("Expired", "Revoked", "Completed")


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Upsert one condition; lastTransitionTime moves only when the status changes."""
    previous = next((cond for cond in conditions if cond.type == type_), None)
    changed_at = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=changed_at,
        observed_generation=generation,
    )
    others = [cond for cond in conditions if cond.type != type_]
    return sorted([*others, updated], key=lambda cond: cond.type)


def condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((cond for cond in conditions if cond.type == type_), None)


def end_phase(reason: str) -> Phase | None:
    """The terminal phase a Ready reason puts a request in: Expired, Revoked, Completed or Failed."""
    return _END_PHASES.get(reason)


def recorded_end(conditions: Sequence[Condition]) -> Condition | None:
    """The Ready condition, when it records why a grant ended (Expired, Revoked, Completed)."""
    ready = condition(conditions, c.COND_READY)
    return ready if ready is not None and ready.status == "False" and ready.reason in END_REASONS else None


def policy_outcome(status: AccessRequestStatus) -> Literal["allowed", "pending", "denied"] | None:
    """What the policy said, as status records it: allowed outright, pending approval, or denied."""
    if status.decision is None:
        return None
    if not status.decision.allowed:
        return "denied"
    approved = condition(status.conditions, c.COND_APPROVED)
    return "allowed" if approved is not None and approved.reason == c.REASON_POLICY_ALLOWS else "pending"


def phase_of(conditions: Sequence[Condition]) -> Phase:
    """Derive the phase from the conditions."""
    denied = condition(conditions, c.COND_DENIED)
    if denied is not None and denied.status == "True":
        return Phase.TIMED_OUT if denied.reason == c.REASON_TIMED_OUT else Phase.DENIED
    ready = condition(conditions, c.COND_READY)
    if ready is not None and ready.status == "True":
        return Phase.ACTIVE
    if ready is not None and (ended := end_phase(ready.reason)) is not None:
        return ended
    approved = condition(conditions, c.COND_APPROVED)
    if approved is not None and approved.status == "True":
        return Phase.APPROVED
    return Phase.PENDING


def is_terminal(status: AccessRequestStatus) -> bool:
    return phase_of(status.conditions) in TERMINAL_PHASES


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decided:
    """Policy evaluated: allowed (no approval needed), pending approval, or denied."""

    outcome: Literal["allowed", "pending", "denied"]
    reason: str
    policy: str | None
    requester: UserInfo | None
    rules: tuple[PolicyRule, ...] = ()
    persistence_capable: bool = False
    break_glass: bool = False
    # When it was decided, if that is not when it is applied (an allowed decision is
    # written together with the issuance that follows it).
    at: datetime | None = None


@dataclass(frozen=True)
class ApprovalsChanged:
    records: tuple[ApprovalRecord, ...]
    approved: bool
    denied_by: str | None
    message: str


@dataclass(frozen=True)
class TimedOut:
    message: str


@dataclass(frozen=True)
class Issued:
    grant: ObjectRef
    identity: NamespacedName
    issued_at: datetime
    expires_at: datetime
    token_credential_id: str | None = None


@dataclass(frozen=True)
class IssueFailed:
    message: str


@dataclass(frozen=True)
class Ended:
    reason: EndReason
    message: str
    revoked_at: datetime
    lag_seconds: float | None


@dataclass(frozen=True)
class UsageObserved:
    """What the ended grant was used for, once the API server's audit events had time to arrive."""

    summary: UsageSummary


Event = Decided | ApprovalsChanged | TimedOut | Issued | IssueFailed | Ended | UsageObserved


def end_of(grant: TaskGrant, request_done: bool, now: datetime) -> tuple[EndReason, str]:
    """Why a grant found marked for deletion ended, re-derived rather than recorded.

    A revocation writes nothing before it removes the privilege; after a restart its reason
    is what still holds: the TTL ran out, the task was declared done, or someone deleted it.
    """
    ended = recorded_end(grant.status.conditions)
    if ended is not None:
        return ended.reason, ended.message  # type: ignore[return-value]
    if grant.spec.expires_at <= now:
        return "Expired", "the grant's TTL ran out"
    if request_done:
        return "Completed", "spec.done was set: the task is finished"
    return "Revoked", "the TaskGrant was deleted"


# Which events each phase accepts; anything else leaves the status untouched.
ACCEPTS: dict[Phase, tuple[type, ...]] = {
    Phase.PENDING: (Decided, ApprovalsChanged, TimedOut, IssueFailed),
    Phase.APPROVED: (Issued, IssueFailed, Ended),
    Phase.ACTIVE: (Ended,),
}


def accepts(status: AccessRequestStatus, event: Event) -> bool:
    if isinstance(event, UsageObserved):
        return status.revoked_at is not None and status.usage is None  # once, after the end
    return isinstance(event, ACCEPTS.get(phase_of(status.conditions), ()))


def apply(
    status: AccessRequestStatus, event: Event, now: datetime, generation: int | None
) -> AccessRequestStatus:
    """The status after `event`; unchanged if the current phase does not accept it."""
    if not accepts(status, event):
        return status
    if isinstance(event, Decided) and event.at is not None:
        now = event.at
    new = status.model_copy(deep=True)
    conds = new.conditions

    def put(type_: str, value: Literal["True", "False"], reason: str, message: str) -> None:
        nonlocal conds
        conds = set_condition(conds, type_, value, reason, message, now, generation)

    def deny(reason: str, message: str) -> None:
        # Every condition says why it ended: none keeps a stale "awaiting approval".
        put(c.COND_DENIED, "True", reason, message)
        if condition(conds, c.COND_APPROVED) is not None:
            put(c.COND_APPROVED, "False", reason, message)
        put(c.COND_READY, "False", reason, message)

    def await_approval(message: str) -> None:
        put(c.COND_APPROVED, "False", c.REASON_PENDING, message)
        put(c.COND_READY, "False", c.REASON_PENDING, message)

    def approve(reason: str, message: str) -> None:
        put(c.COND_APPROVED, "True", reason, message)
        put(c.COND_READY, "False", REASON_ISSUING, f"approved, issuing the grant: {message}")

    # Ready is set from the first visit on (API conventions): False until the grant is live.
    match event:
        case Decided():
            new.policy = event.policy
            new.requester = event.requester
            new.decision = DecisionRecord(allowed=event.outcome != "denied", reason=event.reason, at=now)
            new.permission_rules = list(event.rules) or None
            new.persistence_capable = event.persistence_capable or None
            new.break_glass = event.break_glass or None
            if event.outcome == "allowed":
                approve(c.REASON_POLICY_ALLOWS, event.reason)
            elif event.outcome == "pending":
                await_approval(event.reason)
            else:
                deny(c.REASON_POLICY_DENIES, event.reason)
        case ApprovalsChanged():
            new.approvals = list(event.records)
            if event.denied_by is not None:
                deny(c.REASON_APPROVER_DENIED, event.message)
            elif event.approved:
                approve(c.REASON_APPROVED, event.message)
            else:
                await_approval(event.message)
        case TimedOut():
            deny(c.REASON_TIMED_OUT, event.message)
        case Issued():
            new.grant = event.grant
            new.identity = event.identity
            new.issued_at = event.issued_at
            new.expires_at = event.expires_at
            new.token_credential_id = event.token_credential_id
            put(c.COND_READY, "True", c.REASON_ISSUED, f"grant {event.grant.name} is live")
        case IssueFailed():
            new.end_reason = event.message
            put(c.COND_READY, "False", c.REASON_FAILED, event.message)
        case UsageObserved():
            new.usage = event.summary
            return new  # evidence only: the phase, conditions and generation stay as they were
        case Ended():
            new.revoked_at = event.revoked_at
            new.end_reason = event.message
            new.revocation_lag_seconds = event.lag_seconds
            put(c.COND_READY, "False", event.reason, event.message)
    new.conditions = conds
    new.phase = phase_of(conds)
    new.observed_generation = generation
    return new
