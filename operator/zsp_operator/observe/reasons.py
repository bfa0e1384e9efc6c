"""Reasons of the Kubernetes Events the operator posts, and the audit event each one mirrors.

Reasons are specific (`GrantIssued`, not `Started`) so `kubectl get events
--field-selector reason=GrantRevoked` finds exactly one kind of step. Readers that rebuild a
request's story from status (`observe.chain`, `zsp describe`) use `AUDIT_EVENT_OF` to tell
which Events only repeat a transition status already records.
"""

from __future__ import annotations

from typing import Final

from zsp_operator.core import constants as c
from zsp_operator.observe import auditlog

REQUEST_RECEIVED: Final = "RequestReceived"
REQUEST_ALLOWED: Final = "RequestAllowed"
APPROVAL_REQUIRED: Final = "ApprovalRequired"
REQUEST_DENIED: Final = c.EVENT_REQUEST_DENIED
APPROVAL_RECORDED: Final = c.EVENT_APPROVAL_RECORDED
DENIAL_RECORDED: Final = "DenialRecorded"
APPROVAL_TIMED_OUT: Final = "ApprovalTimedOut"
GRANT_ISSUED: Final = c.EVENT_GRANT_ISSUED
GRANT_REVOKED: Final = c.EVENT_GRANT_REVOKED
GRANT_FAILED: Final = c.EVENT_GRANT_FAILED
EDIT_IGNORED: Final = c.EVENT_EDIT_IGNORED

# Event reason -> the audit event of the same transition.
AUDIT_EVENT_OF: Final = {
    REQUEST_RECEIVED: auditlog.REQUESTED,
    REQUEST_ALLOWED: auditlog.DECIDED,
    APPROVAL_REQUIRED: auditlog.DECIDED,
    REQUEST_DENIED: auditlog.DECIDED,
    APPROVAL_RECORDED: auditlog.APPROVED,
    DENIAL_RECORDED: auditlog.DENIED,
    APPROVAL_TIMED_OUT: auditlog.DENIED,
    GRANT_ISSUED: auditlog.ISSUED,
    GRANT_REVOKED: auditlog.REVOKED,
    GRANT_FAILED: auditlog.FAILED,
    c.EVENT_STANDING_BINDING: auditlog.STANDING_FOUND,
    c.EVENT_STANDING_BINDING_REMOVED: auditlog.STANDING_REMOVED,
}
TRANSITION_REASONS: Final = frozenset(AUDIT_EVENT_OF)
