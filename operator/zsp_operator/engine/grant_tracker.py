"""Live grants and what can make one wrong: its policy, its namespace, its grantee, its task.

Every TaskGrant watch event lands here: a live grant is tracked (armed for expiry, its task
followed), one marked for deletion is finished. Policy and namespace changes re-decide the
grants they concern against the policy that issued them; a grantee deleted, a task ended
or a decision that no longer allows ends the grant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zsp_operator.core import constants as c
from zsp_operator.core.annotations import requester_of
from zsp_operator.core.models import AccessRequest, TaskGrant
from zsp_operator.core.policy import Outcome
from zsp_operator.engine.cache import RequestCache
from zsp_operator.engine.deciding import Decider
from zsp_operator.engine.revoker import Revoker
from zsp_operator.engine.taskfollow import TaskFollower
from zsp_operator.engine.view import ClusterView
from zsp_operator.kube import Kube
from zsp_operator.kube.resources import ACCESS_REQUESTS


class GrantTracker:
    def __init__(
        self,
        kube: Kube,
        view: ClusterView,
        requests: RequestCache,
        decider: Decider,
        revoker: Revoker,
        namespaces: tuple[str, ...] | list[str],
    ) -> None:
        self.kube = kube
        self.view = view
        self.requests = requests
        self.decider = decider
        self.revoker = revoker
        self.expiry = revoker.expiry
        # One shared watch per kind of task object, not one per grant.
        self.tasks = TaskFollower(kube, self.task_ended, namespaces)

    # -- TaskGrant watch events ------------------------------------------------------------------

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
        if grant is not None and not self.revoker.in_progress(uid):
            self.expiry.arm(uid, grant.spec.expires_at)
            self.tasks.follow(grant)

    def _finish(self, body: dict[str, Any]) -> None:
        """A grant marked for deletion (or deleted) that no revocation of ours is ending."""
        grant = TaskGrant.model_validate(body)
        self.expiry.disarm(grant.metadata.uid)
        request = self.requests.get(grant.namespace, grant.spec.request.name, grant.spec.request.uid)
        done = bool(((request or {}).get("spec") or {}).get("done"))
        self.revoker.finish_soon(body, done)

    # -- drift -------------------------------------------------------------------------------

    async def recheck(self, predicate: Callable[[TaskGrant], bool]) -> None:
        """Re-decide live grants against the policy that issued them; revoke what it no longer allows."""
        for grant in self.view.grants_where(predicate):
            policy = self.view.policies.get(grant.spec.policy)
            if policy is None:
                self.revoker.revoke_soon(
                    grant, c.REASON_REVOKED, f"AccessPolicy {grant.spec.policy} was deleted or is invalid"
                )
                continue
            body = self.requests.get(grant.namespace, grant.spec.request.name, grant.spec.request.uid)
            if body is None:  # not in flight as far as the watch knows: ask once
                body = await self.kube.get(ACCESS_REQUESTS, grant.spec.request.name, grant.namespace)
            if body is None or body["metadata"]["uid"] != grant.spec.request.uid:
                self.revoker.revoke_soon(grant, c.REASON_REVOKED, "the AccessRequest was deleted")
                continue
            request = AccessRequest.model_validate(body)
            # Who asked is what the webhook recorded, as when it was first decided (status may
            # not say yet: an allowed decision is written together with its issuance).
            request.status.requester = requester_of(request.metadata.annotations)
            decision = self.decider.decide(request, [policy])
            if decision.outcome is Outcome.DENIED:
                self.revoker.revoke_soon(
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

    def service_account_deleted(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        ns, name = meta.get("namespace"), meta.get("name")
        for grant in self.view.grants_where(
            lambda g: (
                g.spec.identity is not None
                and (g.spec.identity.namespace, g.spec.identity.name) == (ns, name)
            )
        ):
            self.revoker.revoke_soon(
                grant, c.REASON_REVOKED, f"the grantee ServiceAccount {ns}/{name} was deleted"
            )

    async def task_ended(self, grant_uid: str, sentence: str) -> None:
        """The object a grant's taskRef names finished or disappeared."""
        grant = self.view.grants.get(grant_uid)
        if grant is None or self.revoker.has_ended(grant_uid):
            return
        self.revoker.revoke_soon(grant, c.REASON_COMPLETED, sentence)
