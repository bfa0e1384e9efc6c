"""The operator's behaviour, independent of kopf: decide, issue, schedule and revoke.

kopf handlers are one-line calls into this class. Decisions and issuance run under one
lock so limits (`activePerGrantee`...) hold exactly; revocations run as their own tasks,
one per grant, and retry until they succeed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from zsp_operator.config import Settings
from zsp_operator.core import constants as c
from zsp_operator.core import lifecycle
from zsp_operator.core.annotations import approvals_of, requester_of
from zsp_operator.core.approvals import approval_deadline, tally
from zsp_operator.core.errors import describe
from zsp_operator.core.lifecycle import Decided, IssueFailed
from zsp_operator.core.manifests import MANAGED_SELECTOR
from zsp_operator.core.models import (
    AccessPolicy,
    AccessRequest,
    AccessRequestStatus,
    ObjectRef,
    Phase,
    PolicyRule,
    TaskGrant,
    UserInfo,
)
from zsp_operator.core.policy import Decision, Outcome, decide
from zsp_operator.grants import TEARDOWN_ORDER, GrantService, IssueError
from zsp_operator.kube import Kube, KubeError
from zsp_operator.kube.resources import (
    ACCESS_POLICIES,
    ACCESS_REQUESTS,
    CLUSTER_ROLES,
    NAMESPACES,
    ROLE_BINDINGS,
    TASK_GRANTS,
)
from zsp_operator.observe import Observer, involved
from zsp_operator.revoker import END_REASONS, Revoker
from zsp_operator.scheduler import DeadlineScheduler
from zsp_operator.status import StatusWriter
from zsp_operator.taskwatch import task_end
from zsp_operator.view import ClusterView

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _timeout_key(namespace: str, name: str, uid: str) -> str:
    """Approval deadlines are keyed by where the request lives, so firing needs no search."""
    return f"{namespace}/{name}/{uid}"


class Controller:
    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        observer: Observer,
        *,
        clock: Clock = utcnow,
        grants: GrantService | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.observer = observer
        self.clock = clock
        self.view = ClusterView()
        self.grants = grants or GrantService(kube, settings, clock)
        self.status = StatusWriter(kube, clock)
        self.revoker = Revoker(self.grants, self.status, observer, self.view, clock)
        self.expiry = self.revoker.expiry
        self.approval_timeouts = DeadlineScheduler(self._time_out, clock)
        self._decide_lock = asyncio.Lock()
        self.identity: str | None = None  # our own username, from the API server

    # -- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        """Prime the view, revoke what expired while we were away, re-arm the rest, sweep orphans."""
        self.identity = (await self.kube.whoami()).get("username")
        policies = await self.kube.list(ACCESS_POLICIES)
        namespaces = await self.kube.list(NAMESPACES)
        grants = await self.kube.list(TASK_GRANTS)
        self.view.replace_all(policies, namespaces, grants)
        self.expiry.start()
        self.approval_timeouts.start()
        now = self.clock()
        for grant in list(self.view.grants.values()):
            if grant.metadata.deletion_timestamp is not None:
                continue  # its finalizer handler finishes it
            ending = lifecycle.condition(grant.status.conditions, c.COND_READY)
            if grant.spec.expires_at <= now:
                self.revoke_soon(grant, c.REASON_EXPIRED, "expired while the operator was not running")
            elif ending is not None and ending.status == "False" and ending.reason in END_REASONS:
                # A revocation was under way when we stopped: finish it, for the same reason.
                self.revoke_soon(grant, ending.reason, ending.message)
            else:
                self.observer.resumed(grant)
                self.expiry.arm(grant.metadata.uid, grant.spec.expires_at)
        # Policies and namespaces may have changed while we were away: no event will say so.
        await self.recheck(lambda grant: not self.revoker.in_progress(grant.metadata.uid))
        await self.remove_orphans()

    async def start_standby(self) -> None:
        """What a standby needs to answer admission: who we are, and the policies. Nothing else runs."""
        self.identity = (await self.kube.whoami()).get("username")
        self.view.replace_all(await self.kube.list(ACCESS_POLICIES), [], [])

    async def stop(self) -> None:
        await self.approval_timeouts.stop()
        await self.revoker.stop()

    async def remove_orphans(self) -> None:
        """Delete any object carrying our labels whose grant no longer exists.

        RoleBindings are left to the sweeper, which judges them in full and reports what it removes.
        """
        live = set(self.view.grants)
        for res in TEARDOWN_ORDER:
            if res is ROLE_BINDINGS:
                continue
            for obj in await self.kube.list(res, label_selector=MANAGED_SELECTOR):
                meta = obj["metadata"]
                owner = (meta.get("labels") or {}).get(c.LABEL_GRANT_UID)
                if owner and owner not in live:
                    log.warning(
                        "removing %s %s/%s left by a vanished grant",
                        res.kind,
                        meta.get("namespace"),
                        meta["name"],
                    )
                    await self.kube.delete(res, meta["name"], meta.get("namespace"), uid=meta.get("uid"))

    # -- requests ----------------------------------------------------------------------------

    async def reconcile_request(self, body: dict[str, Any]) -> None:
        """Bring one AccessRequest forward from wherever its status says it is."""
        try:
            await self._reconcile_request(body)
        except KubeError:
            self.observer.error("request")
            raise

    async def _reconcile_request(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        status = AccessRequestStatus.model_validate(body.get("status") or {})
        phase = lifecycle.phase_of(status.conditions)
        generation = meta.get("generation")
        if lifecycle.is_terminal(status):
            if status.observed_generation is not None and generation != status.observed_generation:
                await self._edit_ignored(
                    body,
                    f"the request is {phase.value}: a request is one-shot, "
                    "file a new AccessRequest instead of editing this one",
                )
            return
        try:
            request = AccessRequest.model_validate(body)
        except ValidationError as err:
            await self._reject_malformed(body, status, err)
            return
        if phase is Phase.ACTIVE:
            await self._reconcile_active(request, body)
            return
        # Deciding and reserving the TaskGrant are serialized, so limits see every grant;
        # creating the rest of a reserved grant is not, so issuances overlap.
        async with self._decide_lock:
            reserved = await self._decide_and_reserve(request)
        if reserved is not None:
            await self._complete(*reserved)

    async def _reconcile_active(self, request: AccessRequest, body: dict[str, Any]) -> None:
        grant = self._grant_of(request.metadata.uid)
        if request.spec.done:
            if grant is not None:
                await self.revoke(grant, c.REASON_COMPLETED, "spec.done was set: the task is finished")
            return
        if request.status.observed_generation != request.metadata.generation:
            await self._edit_ignored(body, "the request is Active: only spec.done: true may change")

    async def _decide_and_reserve(self, request: AccessRequest) -> tuple[AccessRequest, TaskGrant] | None:
        # Re-read under the lock: another handler run may have moved it on.
        fresh = await self.kube.get(ACCESS_REQUESTS, request.name, request.namespace)
        if fresh is None or fresh["metadata"]["uid"] != request.metadata.uid:
            return None
        request = AccessRequest.model_validate(fresh)
        phase = lifecycle.phase_of(request.status.conditions)
        if phase not in (Phase.PENDING, Phase.APPROVED):
            return None
        # Only the webhook-written annotation counts: status could be written by anyone with status access.
        requester = requester_of(request.metadata.annotations)
        request.status.requester = requester
        decision = await self._decide(request)
        if phase is Phase.PENDING:
            previous = request.status.decision
            if previous is None:
                await self.observer.requested(request, break_glass=decision.break_glass)
            if previous is None or decision.outcome is Outcome.DENIED or decision.reason != previous.reason:
                status = await self.status.transition(request, self._decided_event(decision, requester))
                await self.observer.decided(request, decision)
                if status is None:
                    return None
                request.status = status
            if decision.outcome is Outcome.PENDING:
                status = await self._tally_approvals(request, decision)
                if status is None or lifecycle.phase_of(status.conditions) is not Phase.APPROVED:
                    return None
                request.status = status
            elif decision.outcome is not Outcome.ALLOWED:
                return None
        elif decision.outcome is Outcome.DENIED:
            # Approved before a restart, but the policy no longer allows it: never issue.
            await self._fail(request, "decision", f"no longer allowed: {decision.reason}")
            return None
        grant = await self._reserve(request, decision)
        return None if grant is None else (request, grant)

    def _decided_event(self, decision: Decision, requester: UserInfo | None) -> Decided:
        return Decided(
            outcome=decision.outcome.value,
            reason=decision.reason,
            policy=decision.policy,
            requester=requester,
            rules=decision.rules,
            persistence_capable=decision.persistence_capable,
            break_glass=decision.break_glass,
        )

    async def _decide(
        self, request: AccessRequest, policies: Sequence[AccessPolicy] | None = None
    ) -> Decision:
        catalog = await self._catalog()
        return decide(
            request,
            list(self.view.policies.values()) if policies is None else policies,
            self.view.live_grants(),
            self.view.namespace_labels,
            self.clock(),
            catalog=catalog,
            break_glass_max_ttl=self.settings.break_glass_max_ttl,
        )

    async def _catalog(self) -> dict[str, Sequence[PolicyRule]]:
        """The trusted ClusterRoles and their current rules."""
        catalog: dict[str, Sequence[PolicyRule]] = {}
        for name in self.settings.catalog:
            body = await self.kube.get(CLUSTER_ROLES, name)
            if body is not None:
                catalog[name] = [PolicyRule.model_validate(r) for r in body.get("rules") or []]
        return catalog

    async def _tally_approvals(
        self, request: AccessRequest, decision: Decision
    ) -> AccessRequestStatus | None:
        policy = self.view.policies.get(decision.policy or "")
        if policy is None:
            return request.status
        records = approvals_of(request.metadata.annotations)
        result = tally(records, policy.spec, request.status.requester)
        created = request.metadata.creation_timestamp or self.clock()
        key = _timeout_key(request.namespace, request.name, request.metadata.uid)
        self.approval_timeouts.arm(key, approval_deadline(created, policy.spec))
        if result.denied_by:
            message = f"denied by {result.denied_by}"
        elif result.approved:
            message = f"approved by {', '.join(result.counted)}"
        else:
            message = f"waiting for {result.missing} more approval(s) from eligible approvers"
        known = len(request.status.approvals)
        for record in records[known:]:
            await self.observer.approval_recorded(request, record, record.username in result.counted, result)
        event = lifecycle.ApprovalsChanged(tuple(records), result.approved, result.denied_by, message)
        status = await self.status.transition(request, event)
        if status is not None and lifecycle.phase_of(status.conditions) is not Phase.PENDING:
            self.approval_timeouts.disarm(_timeout_key(request.namespace, request.name, request.metadata.uid))
        return status

    async def _reserve(self, request: AccessRequest, decision: Decision) -> TaskGrant | None:
        try:
            grant = await self.grants.reserve(request, decision)
        except IssueError as err:
            await self._fail(request, err.step, err.message)
            return None
        self.view.put_grant(grant)  # the next decision counts it, even before its watch event
        return grant

    async def _complete(self, request: AccessRequest, grant: TaskGrant) -> None:
        try:
            issued = await self.grants.complete(request, grant)
        except IssueError as err:
            await self._roll_back(request, grant, err)
            return
        grant = issued.grant
        self.view.put_grant(grant)
        self.expiry.arm(grant.metadata.uid, grant.spec.expires_at)
        identity = grant.spec.identity
        assert identity is not None
        event = lifecycle.Issued(
            grant=ObjectRef(name=grant.name, uid=grant.metadata.uid),
            identity=identity,
            issued_at=self.clock(),
            expires_at=grant.spec.expires_at,
            token_credential_id=issued.token_credential_id,
        )
        await self.status.transition(request, event)
        created = request.metadata.creation_timestamp
        latency = (self.clock() - created).total_seconds() if created else None
        await self.observer.issued(request, grant, issued.objects, issued.token_credential_id, latency)

    async def _roll_back(self, request: AccessRequest, grant: TaskGrant, err: IssueError) -> None:
        # Marked never-live before the first delete: the watch events of our own deletions
        # (the minted ServiceAccount, the TaskGrant) can arrive before the rollback returns,
        # and must not read as a grantee deleted or a grant revoked from outside.
        self.view.drop_grant(grant.metadata.uid)
        self.revoker.never_live(grant.metadata.uid)
        try:
            await self.grants.remove_everything(grant)
        except KubeError as rollback_err:
            # The revoker keeps at it until nothing is left; the request records the failure.
            self.revoker.discard_soon(grant)
            await self._fail(
                request, "rollback", f"{err.message}; rolling back is retrying: {rollback_err.message}"
            )
            return
        await self._fail(request, err.step, err.message)

    async def _fail(self, request: AccessRequest, step: str, message: str) -> None:
        await self.status.transition(request, IssueFailed(message))
        await self.observer.failed(request, step, message)

    async def _reject_malformed(
        self, body: dict[str, Any], status: AccessRequestStatus, err: ValidationError
    ) -> None:
        meta = body.get("metadata", {})
        messages = describe(err, f"AccessRequest {meta.get('namespace')}/{meta.get('name')}")
        reason = "the request is malformed: " + "; ".join(messages)
        event = Decided(outcome="denied", reason=reason, policy=None, requester=None)
        new = lifecycle.apply(status, event, self.clock(), meta.get("generation"))
        if new != status:
            await self.status.write(meta, new)
        await self.observer.malformed(meta, reason)

    async def _edit_ignored(self, body: dict[str, Any], message: str) -> None:
        meta = body.get("metadata", {})
        ref = involved(c.KIND_REQUEST, meta.get("name", ""), meta.get("namespace"), meta.get("uid", ""))
        await self.observer.warn(ref, c.EVENT_EDIT_IGNORED, message)
        # Acknowledge the generation so the warning is given once per edit.
        patch = {"status": {"observedGeneration": meta.get("generation")}}
        try:
            await self.kube.patch(ACCESS_REQUESTS, meta["name"], patch, meta.get("namespace"), status=True)
        except KubeError as err:
            log.warning("could not acknowledge edit of %s: %s", meta.get("name"), err)

    async def request_deleted(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        uid = meta.get("uid", "")
        self.approval_timeouts.disarm(_timeout_key(meta.get("namespace", ""), meta.get("name", ""), uid))
        grant = self._grant_of(uid)
        if grant is not None:
            self.revoke_soon(grant, c.REASON_REVOKED, "the AccessRequest was deleted")

    async def _time_out(self, key: str) -> None:
        namespace, name, uid = key.split("/", 2)
        body = await self.kube.get(ACCESS_REQUESTS, name, namespace)
        if body is None or body["metadata"]["uid"] != uid:
            return  # deleted or replaced meanwhile
        request = AccessRequest.model_validate(body)
        message = "no approval quorum before the policy's approval.timeout"
        status = await self.status.transition(request, lifecycle.TimedOut(message))
        if status is not None and status != request.status:
            await self.observer.timed_out(request, message)

    # -- revocation (see revoker.py) ---------------------------------------------------------

    def _grant_of(self, request_uid: str) -> TaskGrant | None:
        return next((g for g in self.view.grants.values() if g.spec.request.uid == request_uid), None)

    def revoke_soon(self, grant: TaskGrant, reason: str, message: str) -> asyncio.Task[None]:
        return self.revoker.revoke_soon(grant, reason, message)

    async def revoke(self, grant: TaskGrant, reason: str, message: str) -> None:
        await self.revoker.revoke(grant, reason, message)

    async def grant_deleted(self, body: dict[str, Any]) -> None:
        await self.revoker.grant_deleted(body)

    async def grant_gone(self, body: dict[str, Any]) -> None:
        """A TaskGrant vanished. Normally its finalizer already finished it; if someone
        stripped the finalizer, finish it now so nothing it made outlives it."""
        if not self.revoker.has_ended(body.get("metadata", {}).get("uid", "")):
            await self.revoker.grant_deleted(body)

    # -- drift: policies, namespaces, identities, tasks ------------------------------------

    async def recheck(self, predicate: Callable[[TaskGrant], bool]) -> None:
        """Re-decide live grants against the policy that issued them; revoke what it no longer allows."""
        for grant in self.view.grants_where(predicate):
            policy = self.view.policies.get(grant.spec.policy)
            if policy is None:
                self.revoke_soon(
                    grant, c.REASON_REVOKED, f"AccessPolicy {grant.spec.policy} was deleted or is invalid"
                )
                continue
            body = await self.kube.get(ACCESS_REQUESTS, grant.spec.request.name, grant.namespace)
            if body is None or body["metadata"]["uid"] != grant.spec.request.uid:
                self.revoke_soon(grant, c.REASON_REVOKED, "the AccessRequest was deleted")
                continue
            request = AccessRequest.model_validate(body)
            decision = await self._decide(request, [policy])
            if decision.outcome is Outcome.DENIED:
                self.revoke_soon(
                    grant,
                    c.REASON_REVOKED,
                    f"AccessPolicy {policy.name} no longer allows it: {decision.reason}",
                )

    async def policy_changed(self, body: dict[str, Any], deleted: bool) -> None:
        name = body.get("metadata", {}).get("name", "")
        if deleted:
            self.view.drop_policy(name)
        else:
            self.view.put_policy(body)
        await self.recheck(lambda g: g.spec.policy == name)

    async def namespace_changed(self, body: dict[str, Any], deleted: bool) -> None:
        name = body.get("metadata", {}).get("name", "")
        if deleted:
            self.view.drop_namespace(name)
            return
        before = self.view.namespace_labels.get(name)
        self.view.put_namespace(body)
        if before is not None and before != self.view.namespace_labels[name]:
            await self.recheck(lambda g: g.namespace == name)

    async def service_account_deleted(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        ns, name = meta.get("namespace"), meta.get("name")
        for grant in self.view.grants_where(
            lambda g: (
                g.spec.identity is not None
                and (g.spec.identity.namespace, g.spec.identity.name) == (ns, name)
            )
        ):
            self.revoke_soon(grant, c.REASON_REVOKED, f"the grantee ServiceAccount {ns}/{name} was deleted")

    async def follow_task(self, body: dict[str, Any], stopped: Any) -> None:
        """End the grant when its taskRef object finishes or disappears."""
        grant = TaskGrant.model_validate(body)
        ended = await task_end(self.kube, grant, stopped)
        if ended is not None:
            await self.revoke(grant, c.REASON_COMPLETED, ended)

    def grant_seen(self, body: dict[str, Any]) -> None:
        uid = body.get("metadata", {}).get("uid", "")
        if self.revoker.has_ended(uid) or body.get("metadata", {}).get("deletionTimestamp"):
            return  # ending or ended: its finalizer handler finishes it
        grant = self.view.put_grant(body)
        if (
            grant is not None
            and grant.metadata.deletion_timestamp is None
            and not self.revoker.in_progress(grant.metadata.uid)
        ):
            self.expiry.arm(grant.metadata.uid, grant.spec.expires_at)
