"""What the operator tells the world about each transition: audit record, Event, metric.

Every transition goes through one `Observer` method, so the three channels never drift:
the audit line is the record, the Event is for `kubectl describe`, the metric for alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from zsp_operator.core import constants as c
from zsp_operator.core.models import (
    AccessRequest,
    ApprovalRecord,
    CreatedObject,
    TaskGrant,
    format_time,
)
from zsp_operator.core.policy import Decision
from zsp_operator.core.sweep import Binding, Verdict
from zsp_operator.kube import Kube
from zsp_operator.observe.audit import AuditLog
from zsp_operator.observe.events import EventType, post_event
from zsp_operator.observe.metrics import Metrics

__all__ = ["AuditLog", "Metrics", "Observer", "involved"]


def involved(
    kind: str, name: str, namespace: str | None, uid: str, api_version: str = c.API_VERSION
) -> dict[str, Any]:
    """The minimal object body an Event's involvedObject is built from."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
    }


def _request_ref(request: AccessRequest) -> dict[str, Any]:
    return involved(c.KIND_REQUEST, request.name, request.namespace, request.metadata.uid)


def _grant_fields(grant: TaskGrant) -> dict[str, Any]:
    spec = grant.spec
    return {
        "request": {"name": spec.request.name, "uid": spec.request.uid, "namespace": grant.namespace},
        "grant": {"name": grant.name, "uid": grant.metadata.uid},
        "policy": spec.policy,
        "requester": spec.requester.to_wire() if spec.requester else None,
        "mode": spec.mode,
        "grantee": spec.identity.to_wire() if spec.identity else None,
        "permission": spec.permission,
        "rules": [rule.to_wire() for rule in spec.rules] or None,
        "clusterRole": spec.cluster_role,
        "expiresAt": format_time(spec.expires_at),
        "persistenceCapable": spec.persistence_capable or None,
        "breakGlass": spec.break_glass or None,
    }


class Observer:
    def __init__(
        self, kube: Kube | None, audit: AuditLog, metrics: Metrics, clock: Callable[[], datetime]
    ) -> None:
        self.kube = kube
        self.audit = audit
        self.metrics = metrics
        self._clock = clock

    async def _event(self, obj: dict[str, Any], type_: EventType, reason: str, message: str) -> None:
        if self.kube is not None:
            await post_event(self.kube, obj, type_, reason, message, self._clock())

    async def requested(self, request: AccessRequest) -> None:
        self.audit.write(
            "requested",
            request={"name": request.name, "namespace": request.namespace, "uid": request.metadata.uid},
            requester=request.status.requester.to_wire() if request.status.requester else None,
            grantee=request.spec.grantee.to_wire(),
            permission=request.spec.permission,
            rules=[r.to_wire() for r in request.spec.rules] if request.spec.rules else None,
            reason=request.spec.reason,
        )

    async def decided(self, request: AccessRequest, decision: Decision) -> None:
        self.metrics.requests.labels(decision.outcome.value, decision.policy or "").inc()
        self.audit.write(
            "decided" if decision.outcome.value != "denied" else "denied",
            request={"name": request.name, "namespace": request.namespace, "uid": request.metadata.uid},
            outcome=decision.outcome.value,
            policy=decision.policy,
            reason=decision.reason,
            mismatches=list(decision.mismatches) or None,
            persistence=list(decision.persistence) or None,
            breakGlass=decision.break_glass or None,
            requester=request.status.requester.to_wire() if request.status.requester else None,
        )
        denied = decision.outcome.value == "denied"
        reason = c.EVENT_REQUEST_DENIED if denied else c.EVENT_REQUEST_DECIDED
        type_: EventType = "Warning" if denied or decision.break_glass else "Normal"
        await self._event(_request_ref(request), type_, reason, decision.reason)

    async def approval_recorded(self, request: AccessRequest, record: ApprovalRecord, counted: bool) -> None:
        self.audit.write(
            "approved" if record.decision == "approve" else "denied",
            request={"name": request.name, "namespace": request.namespace, "uid": request.metadata.uid},
            approver={"username": record.username, "groups": record.groups},
            decision=record.decision,
            counted=counted,
            comment=record.comment,
        )
        message = f"{record.decision} by {record.username}" + ("" if counted else " (not counted)")
        await self._event(_request_ref(request), "Normal", c.EVENT_APPROVAL_RECORDED, message)

    async def issued(
        self,
        request: AccessRequest,
        grant: TaskGrant,
        objects: Sequence[CreatedObject],
        token_credential_id: str | None,
        latency: float | None,
    ) -> None:
        spec = grant.spec
        self.metrics.active_grants.labels(spec.policy, spec.mode).inc()
        if latency is not None:
            self.metrics.issue_latency.observe(latency)
        if spec.persistence_capable:
            self.metrics.persistence_grants.labels(spec.policy).inc()
        if spec.break_glass:
            self.metrics.break_glass_grants.labels(spec.policy).inc()
        self.audit.write(
            "issued",
            **_grant_fields(grant),
            approvers=[a.username for a in request.status.approvals if a.decision == "approve"] or None,
            objects=[o.to_wire() for o in objects],
            tokenCredentialId=token_credential_id,
        )
        who = f"{spec.identity.namespace}/{spec.identity.name}" if spec.identity else "?"
        message = f"granted {spec.permission or 'rules'} to {who} until {format_time(spec.expires_at)}"
        type_: EventType = "Warning" if spec.break_glass else "Normal"
        await self._event(_request_ref(request), type_, c.EVENT_GRANT_ISSUED, message)

    async def revoked(
        self, grant: TaskGrant, reason: str, message: str, lag: float | None, token_credential_id: str | None
    ) -> None:
        spec = grant.spec
        self.metrics.active_grants.labels(spec.policy, spec.mode).dec()
        self.metrics.revocations.labels(reason).inc()
        if lag is not None:
            self.metrics.revocation_lag.observe(lag)
        self.audit.write(
            "revoked",
            **_grant_fields(grant),
            endReason=reason,
            message=message,
            lagSeconds=lag,
            tokenCredentialId=token_credential_id,
        )
        ref = involved(c.KIND_REQUEST, spec.request.name, grant.namespace, spec.request.uid)
        type_: EventType = "Warning" if spec.break_glass else "Normal"
        await self._event(ref, type_, c.EVENT_GRANT_REVOKED, f"{reason}: {message}")

    async def failed(self, request: AccessRequest, step: str, message: str) -> None:
        self.metrics.issue_failures.labels(step).inc()
        self.audit.write(
            "failed",
            request={"name": request.name, "namespace": request.namespace, "uid": request.metadata.uid},
            step=step,
            message=message,
        )
        await self._event(_request_ref(request), "Warning", c.EVENT_GRANT_FAILED, message)

    async def warn(self, obj: dict[str, Any], reason: str, message: str) -> None:
        await self._event(obj, "Warning", reason, message)

    def error(self, kind: str) -> None:
        self.metrics.reconcile_errors.labels(kind).inc()

    # -- standing privilege (the sweeper) --------------------------------------------------

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
