"""The operator's behaviour, independent of kopf: decide, issue, schedule and revoke.

kopf handlers are one-line calls into this class. Decisions and issuance run under one
lock so limits (`activePerGrantee`...) hold exactly; revocations run as their own tasks,
one per grant, and retry until they succeed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

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
from zsp_operator.engine.cache import OWNED, ObjectCache, RequestCache, is_terminal_body
from zsp_operator.engine.grant_objects import GrantService, IssueError
from zsp_operator.engine.revoker import END_REASONS, Revoker
from zsp_operator.engine.scheduler import DeadlineScheduler
from zsp_operator.engine.status_writer import StatusWriter
from zsp_operator.engine.taskfollow import TaskFollower
from zsp_operator.engine.view import ClusterView
from zsp_operator.kube import Kube, KubeError
from zsp_operator.kube.resources import (
    ACCESS_POLICIES,
    ACCESS_REQUESTS,
    CLUSTER_ROLES,
    NAMESPACES,
    ROLE_BINDINGS,
    TASK_GRANTS,
)
from zsp_operator.kube.retry import backoff
from zsp_operator.observe.observer import Observer, involved
from zsp_operator.settings import Settings

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
        self.cache = ObjectCache()
        self.requests = RequestCache()
        self.grants = grants or GrantService(kube, settings, clock, self.cache)
        self.status = StatusWriter(kube, clock, self.requests)
        self.revoker = Revoker(
            self.grants, self.status, observer, self.view, clock, concurrency=settings.revoke_concurrency
        )
        self.expiry = self.revoker.expiry
        self.approval_timeouts = DeadlineScheduler(self._time_out, clock)
        # One shared watch per kind of task object, not one per grant.
        self.tasks = TaskFollower(kube, self._task_ended, settings.namespaces)
        self._decide_lock = asyncio.Lock()
        self._retries: dict[str, asyncio.Task[None]] = {}
        self._issuing: set[str] = set()  # request uids between decision and status write
        self.identity: str | None = None  # our own username, from the API server

    # -- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        """Prime the view, revoke what expired while we were away, re-arm the rest, sweep orphans.

        The lists here (one per kind) are the only ones outside a resync: from now on the
        watches keep the view and the cache current, and the operator's own writes go in
        as they are answered.
        """
        self.identity = (await self.kube.whoami()).get("username")
        policies = await self.kube.list(ACCESS_POLICIES)
        namespaces = await self.kube.list(NAMESPACES)
        grants = await self.kube.list(TASK_GRANTS)
        self.view.replace_all(policies, namespaces, grants)
        started = self.clock()
        # Privilege that outlived its grant goes first, before anything else is read: the
        # bindings the overdue grants recorded, deleted by uid; their revocations follow.
        await self._cut_overdue(started)
        self.requests.replace(await self.kube.list(ACCESS_REQUESTS))
        self.cache.replace(CLUSTER_ROLES, await self.kube.list(CLUSTER_ROLES))
        for res in OWNED:
            self.cache.replace(res, await self.kube.list(res, label_selector=MANAGED_SELECTOR))
        self.expiry.start()
        self.approval_timeouts.start()
        now = self.clock()
        self.revoker.started_at = started
        for grant in list(self.view.grants.values()):
            if grant.metadata.deletion_timestamp is not None:
                continue  # its finalizer handler finishes it
            ending = lifecycle.condition(grant.status.conditions, c.COND_READY)
            if grant.spec.expires_at <= now:
                # Through the expiry scheduler, already due: earliest first, a bounded number
                # at a time, so ten thousand overdue grants do not all start at once.
                self.expiry.arm(grant.metadata.uid, grant.spec.expires_at)
            elif ending is not None and ending.status == "False" and ending.reason in END_REASONS:
                # A revocation was under way when we stopped: finish it, for the same reason.
                self.revoke_soon(grant, ending.reason, ending.message)
            else:
                self.observer.resumed(grant)
                self.expiry.arm(grant.metadata.uid, grant.spec.expires_at)
                self.tasks.follow(grant)
        self.tasks.start()  # after every live grant is followed: one list per kind settles them all
        # Policies and namespaces may have changed while we were away: no event will say so.
        await self.recheck(lambda grant: not self.revoker.in_progress(grant.metadata.uid))
        await self.remove_orphans()

    async def _cut_overdue(self, now: datetime) -> None:
        overdue = [
            grant
            for grant in self.view.grants.values()
            if grant.metadata.deletion_timestamp is None and grant.spec.expires_at <= now
        ]
        slots = asyncio.Semaphore(self.settings.revoke_concurrency)

        async def cut(grant: TaskGrant) -> None:
            async with slots:
                try:
                    await self.grants.cut_bindings(grant)
                except KubeError as err:
                    log.warning("cutting the binding of overdue grant %s failed: %s", grant.name, err)
                    return  # its revocation cuts it again
                self.revoker.mark_cut(grant.metadata.uid)

        await asyncio.gather(*(cut(grant) for grant in overdue))

    async def start_standby(self) -> None:
        """What a standby needs to answer admission: who we are, and the policies. Nothing else runs."""
        self.identity = (await self.kube.whoami()).get("username")
        self.view.replace_all(await self.kube.list(ACCESS_POLICIES), [], [])

    async def stop(self) -> None:
        await self.tasks.stop()
        retries = list(self._retries.values())
        for task in retries:
            task.cancel()
        await asyncio.gather(*retries, return_exceptions=True)
        await self.approval_timeouts.stop()
        await self.revoker.stop()
        await self.observer.close()

    async def remove_orphans(self) -> None:
        """Delete any object carrying our labels whose grant no longer exists.

        RoleBindings are left to the sweeper, which judges them in full and reports what it
        removes. Delivery Secrets are never listed: one is deleted with the grant that
        recorded it, and its token died with the grant's ServiceAccount.
        """
        live = set(self.view.grants)
        for res in OWNED:
            if res is ROLE_BINDINGS:
                continue
            for obj in self.cache.all(res):
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
                    self.cache.drop(res, meta.get("namespace"), meta["name"], meta.get("uid"))

    # -- requests ----------------------------------------------------------------------------

    async def reconcile_request(self, body: dict[str, Any], attempt: int = 0) -> None:
        """Bring one AccessRequest forward from wherever its status says it is.

        Called for every watch event of the request (the operator's own status writes
        included: those find nothing to do and make no call). API trouble is retried
        here, with backoff, from the newest body known by then.
        """
        self.requests.put(body)
        meta = body.get("metadata") or {}
        newest = self.requests.get(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid"))
        if newest is None:
            if self.requests.ended(meta.get("uid", "")) and not is_terminal_body(body):
                return  # an event older than the write that ended it
            newest = body
        try:
            await self._reconcile_request(newest)
        except KubeError as err:
            self.observer.error("request")
            self._reconcile_later(newest, attempt, err)

    def _reconcile_later(self, body: dict[str, Any], attempt: int, err: KubeError) -> None:
        meta = body.get("metadata") or {}
        uid = meta.get("uid", "")
        delay = backoff(attempt, retryable=err.retryable)
        log.warning("request %s/%s: %s; retrying in %.1fs", meta.get("namespace"), meta.get("name"), err, delay)

        async def again() -> None:
            await asyncio.sleep(delay)
            self._retries.pop(uid, None)
            fresh = self.requests.get(meta.get("namespace", ""), meta.get("name", ""), uid)
            if fresh is not None:  # terminal or deleted meanwhile: nothing left to do
                await self.reconcile_request(fresh, attempt + 1)

        previous = self._retries.get(uid)
        if previous is None or previous.done():
            self._retries[uid] = asyncio.create_task(again(), name=f"zsp-request-retry-{uid}")

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
        grant = self._grant_of(request.metadata.uid)
        if request.spec.done:
            if grant is not None:
                await self.revoke(grant, c.REASON_COMPLETED, "spec.done was set: the task is finished")
            return
        if request.status.observed_generation != request.metadata.generation:
            await self._edit_ignored(body, "the request is Active: only spec.done: true may change")

    async def _decide_and_reserve(
        self, request: AccessRequest
    ) -> tuple[AccessRequest, TaskGrant, tuple[lifecycle.Event, ...]] | None:
        """Decide; if allowed, reserve the TaskGrant. Returns what `_complete` needs.

        An allowed first decision is not written on its own: it goes into the status
        together with the issuance (or the failure), one write instead of two.
        """
        fresh = self.requests.get(request.namespace, request.name, request.metadata.uid)
        if fresh is not None:
            request = AccessRequest.model_validate(fresh)  # newer than the event, if anything
        phase = lifecycle.phase_of(request.status.conditions)
        if phase not in (Phase.PENDING, Phase.APPROVED):
            return None
        # Only the webhook-written annotation counts: status could be written by anyone with status access.
        requester = requester_of(request.metadata.annotations)
        request.status.requester = requester
        decision = await self._decide(request)
        deferred: tuple[lifecycle.Event, ...] = ()
        if phase is Phase.PENDING:
            previous = request.status.decision
            if previous is None:
                await self.observer.requested(request, break_glass=decision.break_glass)
            decided = self._decided_event(decision, requester)
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
            self.view.grant_index,
            self.view.namespace_labels,
            self.clock(),
            catalog=catalog,
            break_glass_max_ttl=self.settings.break_glass_max_ttl,
        )

    async def _catalog(self) -> dict[str, Sequence[PolicyRule]]:
        """The trusted ClusterRoles and their current rules, as the watch last saw them."""
        catalog: dict[str, Sequence[PolicyRule]] = {}
        for name in self.settings.catalog:
            body = self.cache.get(CLUSTER_ROLES, None, name)
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

    async def _reserve(
        self, request: AccessRequest, decision: Decision, deferred: tuple[lifecycle.Event, ...]
    ) -> TaskGrant | None:
        try:
            grant = await self.grants.reserve(request, decision)
        except IssueError as err:
            await self._fail(request, err.step, err.message, deferred)
            return None
        self.view.put_grant(grant)  # the next decision counts it, even before its watch event
        return grant

    async def _complete(
        self, request: AccessRequest, grant: TaskGrant, deferred: tuple[lifecycle.Event, ...]
    ) -> None:
        try:
            issued = await self.grants.complete(request, grant)
            await self.grants.record_issued(issued)
        except IssueError as err:
            await self._roll_back(request, grant, err, deferred)
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
        await self.status.transitions(request, (*deferred, event))
        created = request.metadata.creation_timestamp
        latency = (self.clock() - created).total_seconds() if created else None
        await self.observer.issued(request, grant, issued.objects, issued.token_credential_id, latency)

    async def _roll_back(
        self, request: AccessRequest, grant: TaskGrant, err: IssueError, deferred: tuple[lifecycle.Event, ...]
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

    async def _fail(
        self, request: AccessRequest, step: str, message: str, deferred: tuple[lifecycle.Event, ...] = ()
    ) -> None:
        await self.status.transitions(request, (*deferred, IssueFailed(message)))
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
        self.requests.drop(meta.get("namespace", ""), meta.get("name", ""))
        self.approval_timeouts.disarm(_timeout_key(meta.get("namespace", ""), meta.get("name", ""), uid))
        grant = self._grant_of(uid)
        if grant is not None:
            self.revoke_soon(grant, c.REASON_REVOKED, "the AccessRequest was deleted")

    async def _time_out(self, key: str) -> None:
        namespace, name, uid = key.split("/", 2)
        body = self.requests.get(namespace, name, uid) or await self.kube.get(ACCESS_REQUESTS, name, namespace)
        if body is None or body["metadata"]["uid"] != uid:
            return  # deleted or replaced meanwhile
        request = AccessRequest.model_validate(body)
        message = "no approval quorum before the policy's approval.timeout"
        status = await self.status.transition(request, lifecycle.TimedOut(message))
        if status is not None and status != request.status:
            await self.observer.timed_out(request, message)

    # -- revocation (see revoker.py) ---------------------------------------------------------

    def _grant_of(self, request_uid: str) -> TaskGrant | None:
        return self.view.grant_for_request(request_uid)

    def revoke_soon(self, grant: TaskGrant, reason: str, message: str) -> asyncio.Task[None]:
        return self.revoker.revoke_soon(grant, reason, message)

    async def revoke(self, grant: TaskGrant, reason: str, message: str) -> None:
        await self.revoker.revoke(grant, reason, message)

    def grant_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Every TaskGrant watch event: track live grants, finish ones marked for deletion."""
        meta = body.get("metadata") or {}
        uid = meta.get("uid", "")
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            self.tasks.unfollow(uid)
        if event_type == "DELETED":
            # Normally our revocation released it; if someone stripped the finalizer, finish
            # it now so nothing it made outlives it.
            self.view.drop_grant(uid)
            if not self.revoker.has_ended(uid) and not self.revoker.in_progress(uid):
                self._finish_deleted(body)
        elif meta.get("deletionTimestamp"):
            ours = c.FINALIZER in (meta.get("finalizers") or [])
            # An ended grant was released by its revocation: this is a late event of that.
            if ours and not self.revoker.in_progress(uid) and not self.revoker.has_ended(uid):
                self._finish_deleted(body)
        else:
            self.grant_seen(body)

    def _finish_deleted(self, body: dict[str, Any]) -> None:
        grant = TaskGrant.model_validate(body)
        self.expiry.disarm(grant.metadata.uid)
        request = self.requests.get(grant.namespace, grant.spec.request.name, grant.spec.request.uid)
        done = bool(((request or {}).get("spec") or {}).get("done"))
        self.revoker.finish_soon(body, done)

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
            body = self.requests.get(grant.namespace, grant.spec.request.name, grant.spec.request.uid)
            if body is None:  # not in flight as far as the watch knows: ask once
                body = await self.kube.get(ACCESS_REQUESTS, grant.spec.request.name, grant.namespace)
            if body is None or body["metadata"]["uid"] != grant.spec.request.uid:
                self.revoke_soon(grant, c.REASON_REVOKED, "the AccessRequest was deleted")
                continue
            request = AccessRequest.model_validate(body)
            # Who asked is what the webhook recorded, as when it was first decided (status may
            # not say yet: an allowed decision is written together with its issuance).
            request.status.requester = requester_of(request.metadata.annotations)
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

    async def _task_ended(self, grant_uid: str, sentence: str) -> None:
        """The object a grant's taskRef names finished or disappeared."""
        grant = self.view.grants.get(grant_uid)
        if grant is None or self.revoker.has_ended(grant_uid):
            return
        self.revoke_soon(grant, c.REASON_COMPLETED, sentence)

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
            self.tasks.follow(grant)
