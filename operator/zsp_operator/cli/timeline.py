"""The story of one AccessRequest, in time order, from its status and its Events; no I/O.

Status is the record (the operator writes every transition there), so the timeline is
built from it: created, decided, each approval, quorum or denial, issued, failed, ended,
and when a live grant will expire. Events that only repeat a status transition are left
out; the others (edits ignored, break-glass warnings, anything new) are woven in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from zsp_operator.cli.summary import created_at, grantee, permission, requester, status_of
from zsp_operator.core import constants as c
from zsp_operator.core.lifecycle import condition
from zsp_operator.core.models import Phase, format_time

Body = Mapping[str, Any]

# Event reasons the operator posts for transitions status already records.
MIRRORED_EVENT_REASONS = frozenset(
    {
        "RequestReceived",
        "RequestAllowed",
        "ApprovalRequired",
        "DenialRecorded",
        "ApprovalTimedOut",
        c.EVENT_REQUEST_DECIDED,
        c.EVENT_REQUEST_DENIED,
        c.EVENT_APPROVAL_RECORDED,
        c.EVENT_GRANT_ISSUED,
        c.EVENT_GRANT_REVOKED,
        c.EVENT_GRANT_FAILED,
        c.REASON_TIMED_OUT,
    }
)

_END_TITLES = {
    c.REASON_COMPLETED: Phase.COMPLETED.value,
    c.REASON_EXPIRED: Phase.EXPIRED.value,
    c.REASON_REVOKED: Phase.REVOKED.value,
}


@dataclass(frozen=True)
class Entry:
    at: datetime
    what: str
    detail: str
    warning: bool = False
    future: bool = False  # a deadline still ahead (a live grant's expiry)


def _parse_time(raw: Any) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None


def event_time(event: Body) -> datetime | None:
    """When an Event last happened: core/v1 events carry it in one of several fields."""
    for raw in (
        event.get("lastTimestamp"),
        event.get("eventTime"),
        event.get("firstTimestamp"),
        (event.get("metadata") or {}).get("creationTimestamp"),
    ):
        at = _parse_time(raw)
        if at is not None:
            return at
    return None


def _status_entries(body: Body) -> list[Entry]:
    status = status_of(body)
    entries: list[Entry] = []
    created = created_at(body)
    if created is not None:
        who = requester(body)
        by = f"by {who.username}" if who is not None else "requester not recorded yet"
        entries.append(Entry(created, "Requested", f"{by}: {permission(body)} for {grantee(body)}"))
    approved = condition(status.conditions, c.COND_APPROVED)
    denied = condition(status.conditions, c.COND_DENIED)
    ready = condition(status.conditions, c.COND_READY)
    decision = status.decision
    if decision is not None:
        policy = f" (policy {status.policy})" if status.policy else ""
        if not decision.allowed:
            entries.append(Entry(decision.at, "Denied", f"{decision.reason}{policy}", warning=True))
        elif approved is not None and approved.reason == c.REASON_POLICY_ALLOWS:
            entries.append(Entry(decision.at, "Allowed", f"{decision.reason}{policy}"))
        else:
            entries.append(Entry(decision.at, "Needs approval", f"{decision.reason}{policy}"))
    for record in status.approvals:
        verb = "Approved" if record.decision == "approve" else "Denied"
        comment = f": {record.comment}" if record.comment else ""
        entries.append(
            Entry(record.at, f"{verb} by", f"{record.username}{comment}", warning=record.decision == "deny")
        )
    if approved is not None and approved.status == "True" and approved.reason == c.REASON_APPROVED:
        entries.append(Entry(approved.last_transition_time, "Quorum reached", approved.message))
    if denied is not None and denied.status == "True" and denied.reason != c.REASON_POLICY_DENIES:
        title = "Timed out" if denied.reason == c.REASON_TIMED_OUT else "Denied"
        entries.append(Entry(denied.last_transition_time, title, denied.message, warning=True))
    if status.issued_at is not None:
        name = status.grant.name if status.grant else "?"
        until = f" until {format_time(status.expires_at)}" if status.expires_at else ""
        to = f"{status.identity.namespace}/{status.identity.name}" if status.identity else grantee(body)
        entries.append(Entry(status.issued_at, "Issued", f"grant {name}: {permission(body)} for {to}{until}"))
    if ready is not None and ready.status == "False" and ready.reason == c.REASON_FAILED:
        entries.append(Entry(ready.last_transition_time, "Failed", ready.message, warning=True))
    if status.revoked_at is not None:
        title = _END_TITLES.get(ready.reason if ready is not None else "", "Ended")
        lag = status.revocation_lag_seconds
        late = f" ({lag:.3f}s after expiresAt)" if lag is not None and title == "Expired" else ""
        entries.append(Entry(status.revoked_at, title, f"{status.end_reason or 'grant ended'}{late}"))
    elif ready is not None and ready.status == "True" and status.expires_at is not None:
        entries.append(Entry(status.expires_at, "Expires", "the grant is revoked by then", future=True))
    return entries


def _event_entries(events: Sequence[Body]) -> list[Entry]:
    entries = []
    for event in events:
        reason = str(event.get("reason") or "")
        at = event_time(event)
        if reason in MIRRORED_EVENT_REASONS or at is None:
            continue
        count = int(event.get("count") or 1)
        times = f" (x{count})" if count > 1 else ""
        entries.append(
            Entry(
                at,
                f"Event {reason}",
                f"{event.get('message', '')}{times}",
                warning=event.get("type") == "Warning",
            )
        )
    return entries


def timeline(body: Body, events: Sequence[Body]) -> list[Entry]:
    """Every step so far (and a live grant's expiry), oldest first."""
    entries = _status_entries(body) + _event_entries(events)
    # sorted() is stable: steps at the same instant keep the order they happen in.
    return sorted(entries, key=lambda entry: entry.at)
