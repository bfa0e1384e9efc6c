"""What the operator tells the world about each transition: audit record, Event, metric.

Every transition goes through one `Observer` method, so the three channels never drift:
the audit line is the record (docs/audit.md), the Event is for `kubectl describe`, the
metric for alerts (docs/metrics.md). Break-glass makes every Event a Warning. With a
notification routes file, the same call queues the notifications its routes ask for
(`observe/notify.py`, docs/notifications.md) without waiting for their delivery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from zsp_operator.core import constants as c
from zsp_operator.core import notify as n
from zsp_operator.core.approvals import Tally
from zsp_operator.core.bindings import Binding, Verdict
from zsp_operator.core.durations import format_duration
from zsp_operator.core.lifecycle import end_phase, policy_outcome
from zsp_operator.core.models import (
    AccessPolicy,
    AccessRequest,
    AccessRequestStatus,
    ApprovalRecord,
    CreatedObject,
    Phase,
    TaskGrant,
    UsageSummary,
    format_time,
)
from zsp_operator.core.policy import Decision
from zsp_operator.kube import Kube
from zsp_operator.observe import auditlog as a
from zsp_operator.observe import reasons as r
from zsp_operator.observe import records
from zsp_operator.observe.auditlog import AuditLog
from zsp_operator.observe.events import EventQueue, EventType, event_body
from zsp_operator.observe.metrics import Metrics
from zsp_operator.observe.notify import Notifier

__all__ = ["AuditLog", "Metrics", "Observer", "involved"]

_OUTCOME_PHASE = {"allowed": Phase.APPROVED, "pending": Phase.PENDING, "denied": Phase.DENIED}


def involved(
    kind: str, name: str, namespace: str | None, uid: str, api_version: str = c.API_VERSION
) -> dict[str, Any]:
    """The minimal object body an Event's involvedObject is built from."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
    }


def _request_target(request: AccessRequest) -> dict[str, Any]:
    return involved(c.KIND_REQUEST, request.name, request.namespace, request.metadata.uid)


def _grant_targets(grant: TaskGrant) -> list[dict[str, Any]]:
    """The request and, while it exists, the TaskGrant: `kubectl describe` on either tells the story."""
    spec = grant.spec
    return [
        involved(c.KIND_REQUEST, spec.request.name, grant.namespace, spec.request.uid),
        involved(c.KIND_GRANT, grant.name, grant.namespace, grant.metadata.uid),
    ]


def _who(request: AccessRequest) -> str:
    identity = request.status.identity or request.spec.grantee.service_account
    return f"{identity.namespace}/{identity.name}" if identity else "an ephemeral ServiceAccount"


class Observer:
    def __init__(
        self,
        kube: Kube | None,
        audit: AuditLog,
        metrics: Metrics,
        clock: Callable[[], datetime],
        notifier: Notifier | None = None,
    ) -> None:
        self.kube = kube
        self.audit = audit
        self.metrics = metrics
        self._clock = clock
        self.events = EventQueue(kube) if kube is not None else None
        self.notifier = notifier
        # A policy by its name (its `spec.notify` routes, its approval quorum); the engine points
        # this at its view. The last one seen of each name is kept, so a grant that ends because
        # its policy was deleted is still told to the policy's routes.
        self.policy_of: Callable[[str], AccessPolicy | None] = lambda _name: None
        self._policies_seen: dict[str, AccessPolicy] = {}
        # Told of every grant once its privilege is gone (the usage tracker, when it runs).
        self.grant_ended_hooks: list[Callable[[TaskGrant, AccessRequestStatus | None], None]] = []
        if notifier is not None:
            notifier.warn = self._notification_failed

    def _notify(self, event: str, about: n.Subject) -> None:
        """Queue the notifications of one transition; delivery never holds the lifecycle up."""
        if self.notifier is None:
            return
        policy = None
        if about.policy:
            policy = self.policy_of(about.policy) or self._policies_seen.get(about.policy)
            if policy is not None:
                self._policies_seen[about.policy] = policy
        if policy is not None and not about.approvals_needed and event in n.APPROVAL_EVENTS:
            about = dataclasses.replace(about, approvals_needed=policy.spec.approval.required)
        self.notifier.notify(event, about, policy.spec.notify if policy is not None else ())

    async def _notification_failed(self, msg: n.Message, reason: str, text: str) -> None:
        ref = msg.data.get("request") or {}
        target = involved(c.KIND_REQUEST, ref.get("name", ""), ref.get("namespace"), ref.get("uid", ""))
        await self._event(target, "Warning", reason, text)

    async def _event(self, obj: dict[str, Any], type_: EventType, reason: str, message: str) -> None:
        """Queue the Event: it is posted off the lifecycle's path (Events are not the record)."""
        if self.events is not None:
            self.events.put(event_body(obj, type_, reason, message, self._clock()))

    async def close(self) -> None:
        if self.notifier is not None:
            await self.notifier.close()
        if self.events is not None:
            await self.events.close()

    async def _tell(
        self,
        targets: Sequence[dict[str, Any]],
        reason: str,
        message: str,
        *,
        warning: bool,
        break_glass: bool,
    ) -> None:
        """Post one Event on each target; break-glass turns it into a Warning that says so."""
        type_: EventType = "Warning" if warning or break_glass else "Normal"
        text = f"break-glass: {message}" if break_glass else message
        for target in targets:
            await self._event(target, type_, reason, text)

    # -- requests ----------------------------------------------------------------------------

    async def requested(self, request: AccessRequest, *, break_glass: bool = False) -> None:
        """The operator saw a new request (audit `requested`, Event RequestReceived)."""
        spec = request.spec
        fields = records.of_request(request, Phase.PENDING)
        if break_glass:
            fields["breakGlass"] = True
        self.audit.write(
            a.REQUESTED,
            **fields,
            reason=spec.reason,
            ttl=format_duration(spec.ttl) if spec.ttl is not None else None,
            taskRef=spec.task_ref.to_wire() if spec.task_ref else None,
            delivery=spec.delivery.to_wire() if spec.delivery else None,
        )
        who = request.status.requester.username if request.status.requester else "an unrecorded requester"
        message = (
            f"AccessRequest {request.namespace}/{request.name} filed by {who}: "
            f"{spec.permission or 'inline rules'} for {_who(request)}"
        )
        await self._tell(
            [_request_target(request)], r.REQUEST_RECEIVED, message, warning=False, break_glass=break_glass
        )

    async def decided(self, request: AccessRequest, decision: Decision) -> None:
        """Policy evaluated (audit `decided`); `request.status` is the status before this decision."""
        outcome = decision.outcome.value
        if policy_outcome(request.status) != outcome:
            self.metrics.requests.labels(outcome, decision.policy or "").inc()
        fields = records.of_request(request, _OUTCOME_PHASE.get(outcome))
        fields.update(
            policy=decision.policy,
            rules=records.rules(decision.rules) or fields["rules"],
            clusterRole=decision.cluster_role,
            breakGlass=records.flag(decision.break_glass),
            persistenceCapable=records.flag(decision.persistence_capable),
        )
        self.audit.write(
            a.DECIDED,
            **fields,
            outcome=outcome,
            reason=decision.reason,
            ttl=format_duration(decision.ttl) if decision.ttl is not None else None,
            approvalsRequired=decision.approvals_required or None,
            mismatches=list(decision.mismatches) or None,
            persistence=list(decision.persistence) or None,
        )
        if outcome == "denied":
            reason, message = r.REQUEST_DENIED, decision.reason
            # Only a policy the request named hears of its denial: a closest miss is not its business.
            named = (
                decision
                if request.spec.policy == decision.policy
                else dataclasses.replace(decision, policy=None)
            )
            self._notify(n.DENIED, n.about_request(request, named, outcome=decision.reason))
        elif outcome == "pending":
            needed = decision.approvals_required
            reason = r.APPROVAL_REQUIRED
            message = f"policy {decision.policy} requires {needed} approval(s): {decision.reason}"
            self._notify(n.APPROVAL_NEEDED, n.about_request(request, decision))
        else:
            reason, message = r.REQUEST_ALLOWED, f"allowed by policy {decision.policy}: {decision.reason}"
        await self._tell(
            [_request_target(request)],
            reason,
            message,
            warning=outcome == "denied",
            break_glass=decision.break_glass,
        )

    async def malformed(self, meta: Mapping[str, Any], reason: str) -> None:
        """A request that does not parse is denied: the same chain as a policy denial."""
        ref = records.request_ref(meta.get("name", ""), meta.get("namespace"), meta.get("uid", ""))
        self.metrics.requests.labels("denied", "").inc()
        self.audit.write(a.REQUESTED, request=ref, phase=Phase.PENDING.value)
        self.audit.write(a.DECIDED, request=ref, phase=Phase.DENIED.value, outcome="denied", reason=reason)
        target = involved(c.KIND_REQUEST, ref["name"], ref["namespace"], ref["uid"])
        await self._tell([target], r.REQUEST_DENIED, reason, warning=True, break_glass=False)

    async def approval_recorded(
        self, request: AccessRequest, record: ApprovalRecord, counted: bool, tally: Tally | None = None
    ) -> None:
        """One approver's decision (audit `approved` or `denied`); `tally` is the count it is part of."""
        why_not = dict(tally.ignored).get(record.username) if tally is not None else None
        if record.decision == "deny":
            # One eligible deny ends the request; an ineligible one is recorded and ignored.
            counted = why_not is None if tally is not None else counted
            after = Phase.DENIED if counted else Phase.PENDING
        else:
            after = Phase.APPROVED if tally is not None and tally.approved else Phase.PENDING
        policy = request.status.policy or ""
        self.metrics.approvals.labels(record.decision, str(counted).lower(), policy).inc()
        denial = record.decision == "deny"
        self.audit.write(
            a.DENIED if denial else a.APPROVED,
            **records.of_request(request, after if tally is not None or denial else None),
            by="approver",
            approver={"username": record.username, "groups": record.groups},
            at=format_time(record.at),
            comment=record.comment,
            counted=counted,
            ignoredBecause=None if counted else why_not,
            approvalsMissing=tally.missing if tally is not None and not denial else None,
            final=True if denial and counted else None,
        )
        if denial and counted:
            self._notify(
                n.DENIED, n.about_request(request, tally=tally, outcome=f"denied by {record.username}")
            )
        elif tally is not None and tally.approved:
            self._notify(
                n.APPROVED,
                n.about_request(request, tally=tally, outcome=f"approved by {', '.join(tally.counted)}"),
            )
        verb = "denied" if denial else "approved"
        message = f"AccessRequest {request.namespace}/{request.name} {verb} by {record.username}"
        if record.comment:
            message += f": {record.comment}"
        if not counted:
            message += f" (not counted: {why_not})" if why_not else " (not counted)"
        await self._tell(
            [_request_target(request)],
            r.DENIAL_RECORDED if denial else r.APPROVAL_RECORDED,
            message,
            warning=denial,
            break_glass=bool(request.status.break_glass),
        )

    async def timed_out(self, request: AccessRequest, message: str) -> None:
        """No approval quorum in time (audit `denied` by timeout, Event ApprovalTimedOut)."""
        self.metrics.requests.labels("timed-out", request.status.policy or "").inc()
        self.audit.write(
            a.DENIED,
            **records.of_request(request, Phase.TIMED_OUT),
            by="timeout",
            reason=c.REASON_TIMED_OUT,
            message=message,
            final=True,
        )
        self._notify(n.TIMED_OUT, n.about_request(request, outcome=message))
        await self._tell(
            [_request_target(request)],
            r.APPROVAL_TIMED_OUT,
            message,
            warning=True,
            break_glass=bool(request.status.break_glass),
        )

    # -- grants ------------------------------------------------------------------------------

    async def issued(
        self,
        request: AccessRequest,
        grant: TaskGrant,
        objects: Sequence[CreatedObject],
        token_credential_id: str | None,
        latency: float | None,
    ) -> None:
        """The privilege is live (audit `issued` with object uids and the token's credential id)."""
        spec = grant.spec
        self.metrics.grant_live(grant.metadata.uid, spec.policy, spec.mode)
        if latency is not None:
            self.metrics.issue_latency.observe(latency)
        if spec.persistence_capable:
            self.metrics.persistence_grants.labels(spec.policy).inc()
        if spec.break_glass:
            self.metrics.break_glass_grants.labels(spec.policy).inc()
        fields = records.of_grant(grant, request.status)
        fields["phase"] = Phase.ACTIVE.value
        self.audit.write(
            a.ISSUED,
            **fields,
            objects=[o.to_wire() for o in objects],
            tokenCredentialId=token_credential_id,
            issuedAt=format_time(grant.status.issued_at) if grant.status.issued_at else None,
            latencySeconds=round(latency, 6) if latency is not None else None,
        )
        about = n.about_grant(grant, request.status, None)
        about = dataclasses.replace(about, reason=request.spec.reason, ttl=request.spec.ttl)
        self._notify(n.ISSUED, about)
        if spec.break_glass:
            self._notify(n.BREAK_GLASS, about)
        if spec.persistence_capable:
            self._notify(n.PERSISTENCE_GRANTED, about)
        who = f"{spec.identity.namespace}/{spec.identity.name}" if spec.identity else "?"
        message = (
            f"TaskGrant {grant.name} live: {spec.permission or spec.cluster_role or 'rules'} for {who} "
            f"until {format_time(spec.expires_at)}"
        )
        if token_credential_id:
            message += f"; token credential id JTI={token_credential_id}"
        await self._tell(
            _grant_targets(grant), r.GRANT_ISSUED, message, warning=False, break_glass=spec.break_glass
        )

    async def revoked(
        self,
        grant: TaskGrant,
        reason: str,
        message: str,
        lag: float | None,
        token_credential_id: str | None,
        request_status: AccessRequestStatus | None = None,
    ) -> None:
        """The privilege is gone (audit `revoked`: reason, lag behind expiresAt, credential id)."""
        spec = grant.spec
        self.metrics.grant_ended(grant.metadata.uid)
        self.metrics.revocations.labels(reason).inc()
        if lag is not None:
            self.metrics.revocation_lag.observe(lag)
        fields = records.of_grant(grant, request_status)
        phase = end_phase(reason)
        if phase is not None:
            fields["phase"] = phase.value
        revoked_at = request_status.revoked_at if request_status is not None else None
        self.audit.write(
            a.REVOKED,
            **fields,
            endReason=reason,
            message=message,
            revokedAt=format_time(revoked_at) if revoked_at else None,
            lagSeconds=round(lag, 6) if lag is not None else None,
            tokenCredentialId=token_credential_id or grant.status.token_credential_id,
        )
        for hook in self.grant_ended_hooks:
            hook(grant, request_status)
        self._notify(n.ENDED, n.about_grant(grant, request_status, f"{reason}: {message}"))
        text = f"TaskGrant {grant.name} revoked ({reason}): {message}"
        if lag is not None:
            text += f"; binding removed {lag:.3f}s after expiresAt"
        await self._tell(
            _grant_targets(grant), r.GRANT_REVOKED, text, warning=False, break_glass=spec.break_glass
        )

    def usage_observed(
        self, grant: TaskGrant, summary: UsageSummary, request_status: AccessRequestStatus | None
    ) -> None:
        """What an ended grant was used for (audit `used`; metrics for unused rules and denials)."""
        policy = grant.spec.policy
        if summary.unused:
            self.metrics.grants_with_unused_rules.labels(policy).inc()
        denied = sum(entry.count for entry in summary.denied)
        if denied:
            self.metrics.denied_during_grants.labels(policy).inc(denied)
        self.audit.write(a.USED, **records.of_grant(grant, request_status), usage=summary.to_wire())

    async def failed(self, request: AccessRequest, step: str, message: str) -> None:
        """Issuance failed at `step` and was rolled back (audit `failed`, Event GrantFailed)."""
        self.metrics.issue_failures.labels(step).inc()
        self.audit.write(a.FAILED, **records.of_request(request, Phase.FAILED), step=step, message=message)
        self._notify(n.ISSUE_FAILED, n.about_request(request, outcome=f"failed at {step}: {message}"))
        await self._tell(
            [_request_target(request)],
            r.GRANT_FAILED,
            f"AccessRequest {request.namespace}/{request.name} failed at {step}: {message}",
            warning=True,
            break_glass=bool(request.status.break_glass),
        )

    def resumed(self, grant: TaskGrant) -> None:
        """A grant found live at start: counted as active, no record (its `issued` was written then)."""
        self.metrics.grant_live(grant.metadata.uid, grant.spec.policy, grant.spec.mode)

    async def warn(self, obj: dict[str, Any], reason: str, message: str) -> None:
        await self._event(obj, "Warning", reason, message)

    def error(self, kind: str) -> None:
        self.metrics.reconcile_errors.labels(kind).inc()

    # -- standing privilege (the sweeper) --------------------------------------------------

    def swept(self, mode: str) -> None:
        """A full sweep judged every binding (the start sweep and each resync)."""
        self.metrics.sweeps.labels(mode).inc()

    async def standing_binding_found(self, binding: Binding, verdict: Verdict, mode: str) -> None:
        """A binding without a live grant, reported and left in place (audit mode)."""
        self.metrics.standing_found.labels(mode).inc()
        self.audit.write("standing-binding-found", **_standing_fields(binding, verdict, mode))
        await self._event(
            _standing_target(binding, verdict), "Warning", c.EVENT_STANDING_BINDING, verdict.message
        )

    async def standing_binding_removed(self, binding: Binding, verdict: Verdict, mode: str) -> None:
        """A binding without a live grant, deleted; it was found too, so both counters move."""
        self.metrics.standing_found.labels(mode).inc()
        self.metrics.standing_removed.labels(mode).inc()
        self.audit.write("standing-binding-removed", **_standing_fields(binding, verdict, mode))
        message = f"removed: {verdict.message}" + ("; the grant is revoked" if verdict.revoke else "")
        await self._event(
            _standing_target(binding, verdict), "Warning", c.EVENT_STANDING_BINDING_REMOVED, message
        )


def _standing_fields(binding: Binding, verdict: Verdict, mode: str) -> dict[str, Any]:
    grant = verdict.grant
    return {
        "binding": {
            "kind": binding.kind,
            "namespace": binding.namespace or None,
            "name": binding.name,
            "uid": binding.uid,
        },
        "roleRef": {"kind": binding.role_ref.kind, "name": binding.role_ref.name},
        "subjects": [
            {"kind": s.kind, "name": s.name, **({"namespace": s.namespace} if s.namespace else {})}
            for s in binding.subjects
        ],
        "state": verdict.state.value,
        "mode": mode,
        "message": verdict.message,
        "grant": {"name": grant.name, "namespace": grant.namespace, "uid": grant.metadata.uid}
        if grant
        else None,
        "request": (
            {"name": grant.spec.request.name, "namespace": grant.namespace, "uid": grant.spec.request.uid}
            if grant
            else None
        ),
        "grantRevoked": True if verdict.revoke else None,
    }


def _standing_target(binding: Binding, verdict: Verdict) -> dict[str, Any]:
    """Where people look: the grant's request, else the binding's namespace, else the binding."""
    grant = verdict.grant
    if grant is not None:
        return involved(c.KIND_REQUEST, grant.spec.request.name, grant.namespace, grant.spec.request.uid)
    if binding.namespace:
        return involved("Namespace", binding.namespace, None, "", api_version="v1")
    return involved(binding.kind, binding.name, None, binding.uid, api_version="rbac.authorization.k8s.io/v1")
