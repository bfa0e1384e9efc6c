"""Rebuild one request's audit chain from its status and its Events; no I/O.

Status is the record the operator writes at every transition, so it gives the chain; Events
fill in what status cannot say (a step whose status was lost, edits that were ignored,
standing-binding warnings). Each step is named with the audit vocabulary of docs/audit.md,
so `zsp describe` output lines up with the audit log record for record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import ValidationError

from zsp_operator.core import constants as c
from zsp_operator.core.lifecycle import condition, policy_outcome
from zsp_operator.core.models import AccessRequestStatus, format_time, parse_time
from zsp_operator.observe import auditlog as a
from zsp_operator.observe.reasons import AUDIT_EVENT_OF

Body = Mapping[str, Any]
NOTE: Final = "event"  # a step from an Event that mirrors no transition (EditIgnored, ...)
# Lifecycle order: breaks ties between steps written in the same instant.
_ORDER: Final = {name: i for i, name in enumerate((*a.EVENTS, NOTE))}
_NEVER: Final = datetime.max.replace(tzinfo=UTC)  # steps without a time go last


@dataclass(frozen=True)
class ChainStep:
    """One step of a request's chain, as the audit record of the same name would tell it."""

    event: str  # one of audit.EVENTS, or NOTE
    at: datetime | None
    summary: str
    warning: bool = False
    source: Literal["status", "event"] = "status"
    reason: str | None = None  # the condition's or the Event's reason
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for `zsp describe -o json`."""
        body: dict[str, Any] = {
            "event": self.event,
            "at": format_time(self.at) if self.at else None,
            "summary": self.summary,
            "source": self.source,
        }
        if self.warning:
            body["warning"] = True
        if self.reason:
            body["reason"] = self.reason
        if self.details:
            body["details"] = dict(self.details)
        return body


def _status(body: Body) -> AccessRequestStatus:
    try:
        return AccessRequestStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return AccessRequestStatus()


def _grantee(spec: Body, status: AccessRequestStatus) -> str:
    if status.identity is not None:
        return f"{status.identity.namespace}/{status.identity.name}"
    account = (spec.get("grantee") or {}).get("serviceAccount")
    if account:
        return f"{account.get('namespace')}/{account.get('name')}"
    return "an ephemeral ServiceAccount"


def _from_status(body: Body) -> list[ChainStep]:
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, _status(body)
    steps: list[ChainStep] = []
    who = status.requester.username if status.requester else None
    steps.append(
        ChainStep(
            a.REQUESTED,
            parse_time(meta.get("creationTimestamp")),
            f"filed by {who or 'an unrecorded requester'}: "
            f"{spec.get('permission') or 'inline rules'} for {_grantee(spec, status)}",
            details={"requester": who} if who else {},
        )
    )
    outcome = policy_outcome(status)
    if status.decision is not None and outcome is not None:
        policy = f" (policy {status.policy})" if status.policy else ""
        steps.append(
            ChainStep(
                a.DECIDED,
                status.decision.at,
                f"{outcome}{policy}: {status.decision.reason}",
                warning=outcome == "denied",
                details={"outcome": outcome, "policy": status.policy}
                if status.policy
                else {"outcome": outcome},
            )
        )
    for record in status.approvals:
        deny = record.decision == "deny"
        comment = f": {record.comment}" if record.comment else ""
        steps.append(
            ChainStep(
                a.DENIED if deny else a.APPROVED,
                record.at,
                f"{'denied' if deny else 'approved'} by {record.username}{comment}",
                warning=deny,
                details={"by": "approver", "approver": record.username},
            )
        )
    denied = condition(status.conditions, c.COND_DENIED)
    if denied is not None and denied.status == "True" and denied.reason == c.REASON_TIMED_OUT:
        steps.append(
            ChainStep(
                a.DENIED,
                denied.last_transition_time,
                f"timed out: {denied.message}",
                warning=True,
                reason=denied.reason,
                details={"by": "timeout"},
            )
        )
    if status.issued_at is not None:
        details: dict[str, Any] = {}
        if status.grant is not None:
            details["grant"] = status.grant.to_wire()
        if status.expires_at is not None:
            details["expiresAt"] = format_time(status.expires_at)
        if status.token_credential_id:
            details["tokenCredentialId"] = status.token_credential_id
        until = f" until {format_time(status.expires_at)}" if status.expires_at else ""
        name = status.grant.name if status.grant else "?"
        steps.append(
            ChainStep(
                a.ISSUED,
                status.issued_at,
                f"grant {name} live for {_grantee(spec, status)}{until}",
                reason=c.REASON_ISSUED,
                details=details,
            )
        )
    ready = condition(status.conditions, c.COND_READY)
    if ready is not None and ready.status == "False" and ready.reason == c.REASON_FAILED:
        steps.append(
            ChainStep(a.FAILED, ready.last_transition_time, ready.message, warning=True, reason=ready.reason)
        )
    if status.revoked_at is not None:
        end = ready.reason if ready is not None else None
        details = {"endReason": end} if end else {}
        if status.revocation_lag_seconds is not None:
            details["lagSeconds"] = status.revocation_lag_seconds
        if status.token_credential_id:
            details["tokenCredentialId"] = status.token_credential_id
        steps.append(
            ChainStep(
                a.REVOKED,
                status.revoked_at,
                f"{end or 'ended'}: {status.end_reason or 'grant ended'}",
                reason=end,
                details=details,
            )
        )
    return steps


def _from_events(events: Sequence[Body], known: set[str]) -> list[ChainStep]:
    steps: list[ChainStep] = []
    seen: set[tuple[str, str, str]] = set()
    for event in events:
        reason = str(event.get("reason") or "")
        message = str(event.get("message") or "")
        name = AUDIT_EVENT_OF.get(reason, NOTE)
        if name in known or (name, reason, message) in seen:
            continue  # status already tells this step; or the same Event on the TaskGrant too
        seen.add((name, reason, message))
        at = parse_time(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp"))
        count = int(event.get("count") or 1)
        steps.append(
            ChainStep(
                name,
                at,
                message + (f" (x{count})" if count > 1 else ""),
                warning=event.get("type") == "Warning",
                source="event",
                reason=reason,
            )
        )
    return steps


def chain_from(request_body: Body, events: Sequence[Body] = ()) -> list[ChainStep]:
    """The request's chain, oldest first: every step status records, plus what only Events tell.

    Parameters:
        request_body: the AccessRequest as the API server returns it (status may be missing).
        events: core/v1 Events whose involvedObject is the request (or its TaskGrant).
    """
    steps = _from_status(request_body)
    steps += _from_events(events, {step.event for step in steps})

    def key(step: ChainStep) -> tuple[datetime, int]:
        at = step.at.astimezone(UTC) if step.at is not None else _NEVER
        return (at, _ORDER.get(step.event, len(_ORDER)))

    # sorted() is stable: steps at the same instant keep lifecycle order.
    return sorted(steps, key=key)
