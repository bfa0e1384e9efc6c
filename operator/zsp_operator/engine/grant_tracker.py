"""Live grants and what can make one wrong: its policy, its namespace, its grantee, its task.

Every TaskGrant watch event lands here: a live grant is tracked (armed for expiry, its task
followed), one marked for deletion is finished. Policy and namespace changes re-decide the
grants they concern against the policy that issued them; so do changes of the grantee
ServiceAccount or the task object when the policy's conditions read them, and the moment a
condition that reads the clock would next stop holding. A grantee deleted, a task ended or
a decision that no longer allows ends the grant.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from zsp_operator.core import constants as c
from zsp_operator.core.annotations import requester_of
from zsp_operator.core.models import AccessRequest, TaskGrant
from zsp_operator.core.policy import ConditionObjects, Decision, Outcome, reads
from zsp_operator.engine.cache import RequestCache
from zsp_operator.engine.clock import Clock
from zsp_operator.engine.deciding import Decider
from zsp_operator.engine.revoker import Revoker
from zsp_operator.engine.scheduler import DeadlineScheduler
from zsp_operator.engine.taskfollow import TaskFollower
from zsp_operator.engine.view import ClusterView
from zsp_operator.kube import Kube
from zsp_operator.kube.resources import ACCESS_REQUESTS
from zsp_operator.observe.observer import Observer, involved

log = logging.getLogger(__name__)


class GrantTracker:
    def __init__(
        self,
        kube: Kube,
        view: ClusterView,
        requests: RequestCache,
        decider: Decider,
        revoker: Revoker,
        observer: Observer,
        clock: Clock,
        namespaces: tuple[str, ...] | list[str],
        issuing: Callable[[str], bool] = lambda _request_uid: False,
    ) -> None:
        self.kube = kube
        # Whether this operator is issuing the grant of a request right now (by request uid).
        self.issuing = issuing
        self.view = view
        self.requests = requests
        self.decider = decider
        self.revoker = revoker
        self.observer = observer
        self.expiry = revoker.expiry
        # One shared watch per kind of task object, not one per grant.
        self.tasks = TaskFollower(kube, self.task_ended, namespaces, on_change=self.task_changed)
        # When a condition that reads the clock could next stop holding, per grant.
        self.condition_checks = DeadlineScheduler(self._condition_due, clock)
        self._arming: set[str] = set()

    def start(self) -> None:
        self.tasks.start()
        self.condition_checks.start()

    async def stop(self) -> None:
        await self.tasks.stop()
        await self.condition_checks.stop()

    # -- TaskGrant watch events ------------------------------------------------------------------

    def grant_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Every TaskGrant watch event: track live grants, finish ones marked for deletion."""
        meta = body.get("metadata") or {}
        uid = meta.get("uid", "")
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            self.tasks.unfollow(uid)
            self.condition_checks.disarm(uid)
        if event_type == "DELETED":
            # Normally our revocation released it; if someone stripped the finalizer, finish
            # it now so nothing it made outlives it.
            self.view.drop_grant(uid)
            if not self.revoker.has_ended(uid) and not self.revoker.in_progress(uid):
                self._finish(body)
        elif meta.get("deletionTimestamp"):
            ours = c.FINALIZER in (meta.get("finalizers") or [])
            # An ended grant was released by its revocation: this is a late event of that.
            if ours and not self.revoker.in_progress(uid) and not self.revoker.has_ended(uid):
                self._finish(body)
        else:
            self._track_live(body)

    def _track_live(self, body: dict[str, Any]) -> None:
        uid = body.get("metadata", {}).get("uid", "")
        if self.revoker.has_ended(uid):
            return  # a late event of a grant that ended
        grant = self.view.put_grant(body)
        if grant is None or self.revoker.in_progress(uid):
            return
        if grant.status.issued_at is None and self.issuing(grant.spec.request.uid):
            # Still being issued here: the issuance arms it once complete. Armed now, a TTL
            # shorter than a burst's lead would be revoked mid-issuance and end Failed.
            return
        self.expiry.arm(uid, grant.spec.expires_at)
        # Issued while we run: its task may not exist yet (a GitOps PreSync request naming
        # its Sync Job). Grants found at start-up are followed by `startup` first, without.
        self.tasks.follow(grant, await_creation=True)
        self.arm_condition_check(grant)

    def arm_condition_check(self, grant: TaskGrant) -> None:
        """Once per grant whose policy reads the clock: find when its conditions could stop holding."""
        uid = grant.metadata.uid
        policy = self.view.policies.get(grant.spec.policy)
        if policy is None or not reads(policy, "now") or uid in self._arming:
            return
        if self.condition_checks.deadline(uid) is not None:
            return
        self._arming.add(uid)
        task = asyncio.create_task(self._arm(grant), name=f"zsp-condition-timer-{uid}")
        task.add_done_callback(lambda _t: self._arming.discard(uid))

    async def _arm(self, grant: TaskGrant) -> None:
        policy = self.view.policies.get(grant.spec.policy)
        request = await self._request_of(grant)
        if policy is None or request is None:
            return
        try:
            at = await self.decider.next_condition_change(request, policy, grant.spec.expires_at)
        except Exception:  # a condition the runtime chokes on: the next re-decision says so
            log.exception("could not tell when the conditions of grant %s change", grant.name)
            return
        if at is not None and grant.metadata.uid in self.view.grants:
            self.condition_checks.arm(grant.metadata.uid, at)

    async def _condition_due(self, grant_uid: str) -> None:
        await self.recheck(self._live(grant_uid))

    def _live(self, grant_uid: str) -> list[TaskGrant]:
        """The grant, while it is live (not being deleted): a recheck of one, without a scan."""
        grant = self.view.grants.get(grant_uid)
        return [grant] if grant is not None and grant.metadata.deletion_timestamp is None else []

    def _finish(self, body: dict[str, Any]) -> None:
        """A grant marked for deletion (or deleted) that no revocation of ours is ending."""
        grant = TaskGrant.model_validate(body)
        self.expiry.disarm(grant.metadata.uid)
        request = self.requests.get(grant.namespace, grant.spec.request.name, grant.spec.request.uid)
        done = bool(((request or {}).get("spec") or {}).get("done"))
        self.revoker.finish_soon(body, done)

    # -- drift -------------------------------------------------------------------------------

    async def recheck(self, grants: Iterable[TaskGrant], objects: ConditionObjects | None = None) -> None:
        """Re-decide live grants against the policy that issued them; revoke what it no longer allows.

        `objects`: the grantee or task object a watch event just delivered.
        """
        for grant in grants:
            policy = self.view.policies.get(grant.spec.policy)
            if policy is None:
                self.revoker.revoke_soon(
                    grant, c.REASON_REVOKED, f"AccessPolicy {grant.spec.policy} was deleted or is invalid"
                )
                continue
            request = await self._request_of(grant)
            if request is None:
                self.revoker.revoke_soon(grant, c.REASON_REVOKED, "the AccessRequest was deleted")
                continue
            decision = await self.decider.decide(request, [policy], objects)
            if decision.outcome is not Outcome.DENIED:
                self.condition_checks.disarm(grant.metadata.uid)
                self.arm_condition_check(grant)  # the inputs changed: so may the next moment
            elif decision.unmet is not None and len(decision.mismatches) == 1:
                await self._condition_no_longer_holds(grant, request, policy.name, decision)
            else:
                self.revoker.revoke_soon(
                    grant,
                    c.REASON_REVOKED,
                    f"AccessPolicy {policy.name} no longer allows it: {decision.reason}",
                )

    async def _condition_no_longer_holds(
        self, grant: TaskGrant, request: AccessRequest, policy: str, decision: Decision
    ) -> None:
        unmet = decision.unmet
        assert unmet is not None
        message = (
            f'{c.EVENT_CONDITION_NO_LONGER_HOLDS}: condition "{unmet.name}" of AccessPolicy {policy} no longer '
            f"holds: {unmet.message}"
        )
        self.revoker.revoke_soon(grant, c.REASON_REVOKED, message)
        ref = involved(c.KIND_REQUEST, request.name, request.namespace, request.metadata.uid)
        await self.observer.warn(ref, c.EVENT_CONDITION_NO_LONGER_HOLDS, message)

    async def _request_of(self, grant: TaskGrant) -> AccessRequest | None:
        """The grant's request as first decided, or None if it is gone (or replaced)."""
        body = self.requests.get(grant.namespace, grant.spec.request.name, grant.spec.request.uid)
        if body is None:  # not in flight as far as the watch knows: ask once
            body = await self.kube.get(ACCESS_REQUESTS, grant.spec.request.name, grant.namespace)
        if body is None or body["metadata"]["uid"] != grant.spec.request.uid:
            return None
        request = AccessRequest.model_validate(body)
        # Who asked is what the webhook recorded, as when it was first decided (status may
        # not say yet: an allowed decision is written together with its issuance).
        request.status.requester = requester_of(request.metadata.annotations)
        return request

    async def policy_changed(self, body: dict[str, Any], deleted: bool) -> None:
        name = body.get("metadata", {}).get("name", "")
        if deleted:
            self.view.drop_policy(name)
        else:
            self.view.put_policy(body)
        await self.recheck(self.view.grants_where(lambda g: g.spec.policy == name))

    async def namespace_changed(self, body: dict[str, Any], deleted: bool) -> None:
        name = body.get("metadata", {}).get("name", "")
        if deleted:
            self.view.drop_namespace(name)
            return
        before = self.view.namespace_labels.get(name)
        self.view.put_namespace(body)
        if before is not None and before != self.view.namespace_labels[name]:
            await self.recheck(self.view.grants_where(lambda g: g.namespace == name))

    async def service_account_changed(self, body: dict[str, Any]) -> None:
        """A ServiceAccount changed: grants it holds under policies whose conditions read it are re-decided."""
        reading = [
            g
            for g in self._held_by(body)
            if g.spec.mode == "bind"
            and (policy := self.view.policies.get(g.spec.policy))
            and reads(policy, "grantee")
        ]
        await self.recheck(reading, ConditionObjects(grantee=body))

    def _held_by(self, body: dict[str, Any]) -> list[TaskGrant]:
        """The live grants a ServiceAccount holds, from the index the limits keep (no scan)."""
        meta = body.get("metadata", {})
        return self.view.grant_index.holding((meta.get("namespace", ""), meta.get("name", "")))

    async def task_changed(self, grant_uid: str, body: dict[str, Any]) -> None:
        """The object a grant's taskRef names changed: re-decided if its policy's conditions read it."""
        grant = self.view.grants.get(grant_uid)
        policy = self.view.policies.get(grant.spec.policy) if grant is not None else None
        if policy is None or not reads(policy, "task") or self.revoker.has_ended(grant_uid):
            return
        await self.recheck(self._live(grant_uid), ConditionObjects(task=body))

    def service_account_deleted(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        for grant in self._held_by(body):
            self.revoker.revoke_soon(
                grant,
                c.REASON_REVOKED,
                f"the grantee ServiceAccount {meta.get('namespace')}/{meta.get('name')} was deleted",
            )

    async def task_ended(self, grant_uid: str, sentence: str) -> None:
        """The object a grant's taskRef names finished or disappeared."""
        grant = self.view.grants.get(grant_uid)
        if grant is None or self.revoker.has_ended(grant_uid):
            return
        self.revoker.revoke_soon(grant, c.REASON_COMPLETED, sentence)
