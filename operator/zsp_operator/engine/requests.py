"""AccessRequests, from filed to Active or refused: decide, wait for approvals, issue.

Deciding and reserving the TaskGrant run under one lock, so limits (`activePerGrantee`...)
hold exactly; creating the rest of a reserved grant does not, so issuances overlap. API
trouble is retried with the one backoff policy, from the newest body known by then.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from pydantic import ValidationError

from zsp_operator.core import constants as c
from zsp_operator.core import lifecycle
from zsp_operator.core.annotations import approvals_of, requester_of
from zsp_operator.core.approvals import approval_deadline, tally
from zsp_operator.core.errors import describe
from zsp_operator.core.lifecycle import Decided, IssueFailed
from zsp_operator.core.models import AccessRequest, AccessRequestStatus, ObjectRef, Phase, TaskGrant, UserInfo
from zsp_operator.core.policy import Decision, Outcome
from zsp_operator.engine.cache import RequestCache, is_terminal_body
from zsp_operator.engine.clock import Clock
from zsp_operator.engine.deciding import Decider
from zsp_operator.engine.grant_objects import GrantService, IssueError
from zsp_operator.engine.revoker import Revoker
from zsp_operator.engine.scheduler import DeadlineScheduler
from zsp_operator.engine.status_writer import StatusWriter
from zsp_operator.engine.view import ClusterView
from zsp_operator.kube import Kube, KubeError
from zsp_operator.kube.resources import ACCESS_REQUESTS
from zsp_operator.kube.retry import backoff
from zsp_operator.observe.observer import Observer, involved

log = logging.getLogger(__name__)
Deferred = tuple[lifecycle.Event, ...]


def _timeout_key(namespace: str, name: str, uid: str) -> str:
    """Approval deadlines are keyed by where the request lives, so firing needs no search."""
    return f"{namespace}/{name}/{uid}"


class RequestReconciler:
    def __init__(
        self,
        kube: Kube,
        observer: Observer,
        clock: Clock,
        view: ClusterView,
        cache: RequestCache,
        decider: Decider,
        grants: GrantService,
        status: StatusWriter,
        revoker: Revoker,
    ) -> None:
        self.kube = kube
        self.observer = observer
        self.clock = clock
        self.view = view
        self.cache = cache
        self.decider = decider
        self.grants = grants
        self.status = status
        self.revoker = revoker
        self.approval_timeouts = DeadlineScheduler(self._time_out, clock)
        self._decide_lock = asyncio.Lock()
        self._retries: dict[str, asyncio.Task[None]] = {}
        self._issuing: set[str] = set()  # request uids between decision and status write

    def start(self) -> None:
        self.approval_timeouts.start()

    async def stop(self) -> None:
        retries = list(self._retries.values())
        for task in retries:
            task.cancel()
        await asyncio.gather(*retries, return_exceptions=True)
        await self.approval_timeouts.stop()

    def is_issuing(self, request_uid: str) -> bool:
        return request_uid in self._issuing

    # -- watch events ------------------------------------------------------------------------

    async def reconcile(self, body: dict[str, Any], attempt: int = 0) -> None:
        """Bring one AccessRequest forward from wherever its status says it is.

        Called for every watch event of the request (the operator's own status writes
        included: those find nothing to do and make no call).
        """
        self.cache.put(body)
        meta = body.get("metadata") or {}
        newest = self.cache.get(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid"))
        if newest is None:
            if self.cache.ended(meta.get("uid", "")) and not is_terminal_body(body):
                return  # an event older than the write that ended it
            newest = body
        try:
            await self._reconcile(newest)
        except KubeError as err:
            self.observer.error("request")
            self._reconcile_later(newest, attempt, err)

    async def deleted(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        uid = meta.get("uid", "")
        self.cache.drop(meta.get("namespace", ""), meta.get("name", ""))
        self.approval_timeouts.disarm(_timeout_key(meta.get("namespace", ""), meta.get("name", ""), uid))
        grant = self.view.grant_for_request(uid)
        if grant is not None:
            self.revoker.revoke_soon(grant, c.REASON_REVOKED, "the AccessRequest was deleted")

    def _reconcile_later(self, body: dict[str, Any], attempt: int, err: KubeError) -> None:
        meta = body.get("metadata") or {}
        uid = meta.get("uid", "")
        delay = backoff(attempt, retryable=err.retryable)
        log.warning(
            "request %s/%s: %s; retrying in %.1fs", meta.get("namespace"), meta.get("name"), err, delay
        )

        async def again() -> None:
            await asyncio.sleep(delay)
            self._retries.pop(uid, None)
            fresh = self.cache.get(meta.get("namespace", ""), meta.get("name", ""), uid)
            if fresh is not None:  # terminal or deleted meanwhile: nothing left to do
                await self.reconcile(fresh, attempt + 1)

        previous = self._retries.get(uid)
        if previous is None or previous.done():
            self._retries[uid] = asyncio.create_task(again(), name=f"zsp-request-retry-{uid}")

    async def _reconcile(self, body: dict[str, Any]) -> None:
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
        uid = request.metadata.uid
        if uid in self._issuing:
            return  # an earlier event of this request is being issued; its status write follows
        self._issuing.add(uid)
        try:
            async with self._decide_lock:
                reserved = await self._decide_and_reserve(request)
            if reserved is not None:
                await self._complete(*reserved)
        finally:
            self._issuing.discard(uid)

    async def _reconcile_active(self, request: AccessRequest, body: dict[str, Any]) -> None:
        grant = self.view.grant_for_request(request.metadata.uid)
        if request.spec.done:
            if grant is not None:
                await self.revoker.revoke(
                    grant, c.REASON_COMPLETED, "spec.done was set: the task is finished"
                )
            return
        if request.status.observed_generation != request.metadata.generation:
            await self._edit_ignored(body, "the request is Active: only spec.done: true may change")

    # -- deciding and issuing ------------------------------------------------------------------

    async def _decide_and_reserve(
        self, request: AccessRequest
    ) -> tuple[AccessRequest, TaskGrant, Deferred] | None:
        """Decide; if allowed, reserve the TaskGrant. Returns what `_complete` needs.

        An allowed first decision is not written on its own: it goes into the status
        together with the issuance (or the failure), one write instead of two.
        """
        fresh = self.cache.get(request.namespace, request.name, request.metadata.uid)
        if fresh is not None:
            request = AccessRequest.model_validate(fresh)  # newer than the event, if anything
        phase = lifecycle.phase_of(request.status.conditions)
        if phase not in (Phase.PENDING, Phase.APPROVED):
            return None
        # Only the webhook-written annotation counts: status could be written by anyone with status access.
        requester = requester_of(request.metadata.annotations)
        request.status.requester = requester
        decision = await self.decider.decide(request)
        deferred: Deferred = ()
        if phase is Phase.PENDING:
            previous = request.status.decision
            if previous is None:
                await self.observer.requested(request, break_glass=decision.break_glass)
            decided = _decided_event(decision, requester)
            if previous is None and decision.outcome is Outcome.ALLOWED:
                deferred = (dataclasses.replace(decided, at=self.clock()),)
                await self.observer.decided(request, decision)
            elif previous is None or decision.outcome is Outcome.DENIED or decision.reason != previous.reason:
                status = await self.status.transition(request, decided)
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
        grant = await self._reserve(request, decision, deferred)
        return None if grant is None else (request, grant, deferred)

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
            self.approval_timeouts.disarm(key)
        return status

    async def _reserve(
        self, request: AccessRequest, decision: Decision, deferred: Deferred
    ) -> TaskGrant | None:
        try:
            grant = await self.grants.reserve(request, decision)
        except IssueError as err:
            await self._fail(request, err.step, err.message, deferred)
            return None
        self.view.put_grant(grant)  # the next decision counts it, even before its watch event
        return grant

    async def _complete(self, request: AccessRequest, grant: TaskGrant, deferred: Deferred) -> None:
        try:
            issued = await self.grants.complete(request, grant)
            await self.grants.record_issued(issued)
        except IssueError as err:
            await self._roll_back(request, grant, err, deferred)
            return
        grant = issued.grant
        self.view.put_grant(grant)
        self.revoker.expiry.arm(grant.metadata.uid, grant.spec.expires_at)
        identity = grant.spec.identity
        assert identity is not None
        event = lifecycle.Issued(
            grant=ObjectRef(name=grant.name, uid=grant.metadata.uid),
            identity=identity,
            issued_at=self.clock(),
            expires_at=grant.spec.expires_at,
            token_credential_id=issued.token_credential_id,
        )
        await self.status.transitions(request, (*deferred, event))
        created = request.metadata.creation_timestamp
        latency = (self.clock() - created).total_seconds() if created else None
        await self.observer.issued(request, grant, issued.objects, issued.token_credential_id, latency)

    async def _roll_back(
        self, request: AccessRequest, grant: TaskGrant, err: IssueError, deferred: Deferred
    ) -> None:
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
                request,
                "rollback",
                f"{err.message}; rolling back is retrying: {rollback_err.message}",
                deferred,
            )
            return
        await self._fail(request, err.step, err.message, deferred)

    async def _fail(self, request: AccessRequest, step: str, message: str, deferred: Deferred = ()) -> None:
        await self.status.transitions(request, (*deferred, IssueFailed(message)))
        await self.observer.failed(request, step, message)

    # -- requests that will not be issued --------------------------------------------------------

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

    async def _time_out(self, key: str) -> None:
        namespace, name, uid = key.split("/", 2)
        body = self.cache.get(namespace, name, uid) or await self.kube.get(ACCESS_REQUESTS, name, namespace)
        if body is None or body["metadata"]["uid"] != uid:
            return  # deleted or replaced meanwhile
        request = AccessRequest.model_validate(body)
        message = "no approval quorum before the policy's approval.timeout"
        status = await self.status.transition(request, lifecycle.TimedOut(message))
        if status is not None and status != request.status:
            await self.observer.timed_out(request, message)


def _decided_event(decision: Decision, requester: UserInfo | None) -> Decided:
    return Decided(
        outcome=decision.outcome.value,
        reason=decision.reason,
        policy=decision.policy,
        requester=requester,
        rules=decision.rules,
        persistence_capable=decision.persistence_capable,
        break_glass=decision.break_glass,
    )
