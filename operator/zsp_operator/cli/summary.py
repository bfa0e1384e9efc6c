"""One AccessRequest as the verbs show it: phase, grantee, permission, rows, outcome; no I/O.

Bodies come straight from the API server, so reading them never fails: a part that does
not parse is shown as unknown rather than stopping a listing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from zsp_operator.cli.output import NONE, age, human_duration, object_name, until
from zsp_operator.core import constants as c
from zsp_operator.core.annotations import approvals_of, requester_of
from zsp_operator.core.approvals import is_eligible, tally
from zsp_operator.core.lifecycle import condition, phase_of
from zsp_operator.core.models import (
    TERMINAL_PHASES,
    AccessPolicySpec,
    AccessRequestStatus,
    ApprovalRecord,
    Phase,
    UserInfo,
    format_time,
    parse_time,
)

Body = Mapping[str, Any]

# Phases `zsp request --wait` stops at, and which of them mean "not granted" (exit 1).
GRANTED_PHASES = frozenset({Phase.ACTIVE, Phase.COMPLETED, Phase.EXPIRED, Phase.REVOKED})
NOT_GRANTED_PHASES = frozenset({Phase.DENIED, Phase.TIMED_OUT, Phase.FAILED})
OUTCOME_PHASES = GRANTED_PHASES | NOT_GRANTED_PHASES

LIST_HEADERS = ("NAME", "PHASE", "GRANTEE", "PERMISSION", "EXPIRES IN", "AGE")
WIDE_HEADERS = ("REQUESTER", "POLICY", "REASON")
PENDING_HEADERS = ("NAME", "REQUESTER", "GRANTEE", "PERMISSION", "APPROVALS", "AGE")


def _meta(body: Body) -> Mapping[str, Any]:
    return body.get("metadata") or {}


def _spec(body: Body) -> Mapping[str, Any]:
    return body.get("spec") or {}


def _annotations(body: Body) -> Mapping[str, str]:
    return _meta(body).get("annotations") or {}


def status_of(body: Body) -> AccessRequestStatus:
    try:
        return AccessRequestStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return AccessRequestStatus()


def phase(body: Body) -> Phase:
    """The phase, derived from the conditions as the operator derives it."""
    return phase_of(status_of(body).conditions)


def created_at(body: Body) -> datetime | None:
    return parse_time(_meta(body).get("creationTimestamp"))


def requester(body: Body) -> UserInfo | None:
    """The authenticated requester: the webhook's annotation, else what status recorded."""
    return requester_of(_annotations(body)) or status_of(body).requester


def approval_records(body: Body) -> list[ApprovalRecord]:
    """Every approve/deny so far: the webhook's annotation is ahead of status, so it wins."""
    return approvals_of(_annotations(body)) or list(status_of(body).approvals)


def grantee(body: Body) -> str:
    """`ci/deployer` for a bound ServiceAccount; the minted one (or `ephemeral`) otherwise."""
    spec_grantee = _spec(body).get("grantee") or {}
    account = spec_grantee.get("serviceAccount")
    if account:
        return f"{account.get('namespace')}/{account.get('name')}"
    identity = status_of(body).identity
    if identity is not None:
        return f"{identity.namespace}/{identity.name}"
    return "ephemeral" if "ephemeral" in spec_grantee else NONE


def permission(body: Body) -> str:
    spec = _spec(body)
    if spec.get("permission"):
        return str(spec["permission"])
    rules = spec.get("rules") or []
    return f"({len(rules)} rule{'s' if len(rules) != 1 else ''})" if rules else NONE


def expires_in(body: Body, now: datetime) -> str:
    """Time left on a live grant; `<none>` for anything not Active."""
    if phase(body) is not Phase.ACTIVE:
        return NONE
    return until(status_of(body).expires_at, now)


def _user(info: UserInfo | None) -> str:
    return info.username if info is not None else NONE


def list_row(body: Body, now: datetime, *, wide: bool = False, namespace: bool = False) -> list[str]:
    row = [
        str(_meta(body).get("name", "")),
        phase(body).value,
        grantee(body),
        permission(body),
        expires_in(body, now),
        age(created_at(body), now),
    ]
    if wide:
        status = status_of(body)
        row += [
            _user(requester(body)),
            status.policy or str(_spec(body).get("policy") or NONE),
            _reason(body),
        ]
    return [str(_meta(body).get("namespace", "")), *row] if namespace else row


def _reason(body: Body) -> str:
    # One line in a table: the first line of the request's reason, cut to a readable width.
    text = str(_spec(body).get("reason") or "").strip().splitlines()
    first = text[0] if text else ""
    return first if len(first) <= 60 else first[:59] + "…"


def list_headers(*, wide: bool = False, namespace: bool = False) -> list[str]:
    headers = [*LIST_HEADERS, *(WIDE_HEADERS if wide else ())]
    return ["NAMESPACE", *headers] if namespace else headers


# --- approvals ------------------------------------------------------------------------------


def awaits_approval_of(body: Body, policy: AccessPolicySpec | None, caller: UserInfo) -> bool:
    """True when the request waits for the caller's decision.

    It is Pending, its policy requires approvals, the caller is one of the policy's approvers,
    has neither approved nor denied it yet, and is not its requester (unless the policy allows
    self-approval).
    """
    if policy is None or policy.approval.required == 0 or phase(body) is not Phase.PENDING:
        return False
    if not is_eligible(caller, policy.approval.approvers):
        return False
    if any(record.username == caller.username for record in approval_records(body)):
        return False
    asked_by = requester(body)
    own = asked_by is not None and asked_by.username == caller.username
    return not own or policy.approval.allow_self_approval


def approvals_progress(body: Body, policy: AccessPolicySpec | None) -> str:
    """`1/2`: approvals that count towards the policy's quorum, of those it requires."""
    if policy is None:
        return NONE
    result = tally(approval_records(body), policy, requester(body))
    return f"{len(result.counted)}/{policy.approval.required}"


def pending_row(body: Body, policy: AccessPolicySpec | None, now: datetime, *, namespace: bool) -> list[str]:
    row = [
        str(_meta(body).get("name", "")),
        _user(requester(body)),
        grantee(body),
        permission(body),
        approvals_progress(body, policy),
        age(created_at(body), now),
    ]
    return [str(_meta(body).get("namespace", "")), *row] if namespace else row


def pending_headers(*, namespace: bool = False) -> list[str]:
    return ["NAMESPACE", *PENDING_HEADERS] if namespace else list(PENDING_HEADERS)


# --- outcome of `zsp request --wait` ----------------------------------------------------------


def why_not(body: Body) -> str:
    """Why a request was not granted (or ended), in the operator's own words."""
    status = status_of(body)
    denied = condition(status.conditions, c.COND_DENIED)
    if denied is not None and denied.status == "True" and denied.message:
        return denied.message
    if status.end_reason:
        return status.end_reason
    if status.decision is not None and not status.decision.allowed:
        return status.decision.reason
    return "no reason recorded"


def waiting_for(body: Body) -> str:
    """What a Pending or Approved request is waiting for, for progress lines."""
    status = status_of(body)
    if status.decision is None:
        return "waiting for the operator's decision"
    approved = condition(status.conditions, c.COND_APPROVED)
    if approved is not None and approved.status == "False" and approved.message:
        return approved.message
    return "approved, waiting for the grant to be issued"


def outcome_line(body: Body, now: datetime) -> str:
    """One line saying how a request ended up, for `zsp request --wait` and `zsp done --wait`."""
    name = object_name(str(_meta(body).get("name", "")))
    current = phase(body)
    status = status_of(body)
    if current is Phase.ACTIVE:
        expires = status.expires_at
        when = f", expires in {until(expires, now)} ({format_time(expires)})" if expires else ""
        return (
            f"{name} Active: {permission(body)} for {grantee(body)} in {_meta(body).get('namespace')}{when}"
        )
    if current in GRANTED_PHASES:
        ended = f" {human_duration(now - status.revoked_at)} ago" if status.revoked_at else ""
        return f"{name} {current.value}{ended}: {why_not(body)}"
    if current in NOT_GRANTED_PHASES:
        return f"{name} {current.value}: {why_not(body)}"
    return f"{name} {current.value}: {waiting_for(body)}"


def is_outcome(body: Body, *, terminal: bool = False) -> bool:
    """Whether waiting can stop: a granted or refused outcome, or only a terminal phase."""
    current = phase(body)
    return current in TERMINAL_PHASES if terminal else current in OUTCOME_PHASES


def names(items: Sequence[Body]) -> list[str]:
    return [object_name(str(_meta(item).get("name", ""))) for item in items]
