"""One policy decision for a request, from what the watches last saw: policies, grants, namespaces, roles.

Reads nothing, unless a policy's conditions read the grantee ServiceAccount or the task
object: those are fetched for the decision (one GET each), and only then.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from zsp_operator.core.models import AccessPolicy, AccessRequest, PolicyRule
from zsp_operator.core.policy import ConditionObjects, Decision, decide, next_condition_change, reads
from zsp_operator.engine.cache import ObjectCache
from zsp_operator.engine.clock import Clock
from zsp_operator.engine.view import ClusterView
from zsp_operator.kube import Kube, KubeError
from zsp_operator.kube.resources import CLUSTER_ROLES, SERVICE_ACCOUNTS
from zsp_operator.settings import Settings


class Decider:
    """Gives the pure `decide` the cluster as the operator knows it."""

    def __init__(
        self, kube: Kube, view: ClusterView, cache: ObjectCache, settings: Settings, clock: Clock
    ) -> None:
        self.kube = kube
        self.view = view
        self.cache = cache
        self.settings = settings
        self.clock = clock

    async def decide(
        self,
        request: AccessRequest,
        policies: Sequence[AccessPolicy] | None = None,
        objects: ConditionObjects | None = None,
    ) -> Decision:
        """Against every policy, or only `policies` (a live grant is re-checked against its own).

        `objects`: the grantee or task object as a watch event just delivered it; what the
        conditions need beyond that is fetched.
        """
        candidates = list(self.view.policies.values()) if policies is None else list(policies)
        return decide(
            request,
            candidates,
            self.view.grant_index,
            self.view.namespace_labels,
            self.clock(),
            catalog=self.catalog(),
            break_glass_max_ttl=self.settings.break_glass_max_ttl,
            objects=await self.objects_for(request, candidates, objects),
        )

    async def next_condition_change(
        self, request: AccessRequest, policy: AccessPolicy, until: datetime
    ) -> datetime | None:
        """When the grant's time-dependent conditions could next stop holding (None: never before `until`)."""
        if not reads(policy, "now"):
            return None
        return next_condition_change(
            request,
            policy,
            self.view.grant_index,
            self.view.namespace_labels,
            self.clock(),
            until,
            objects=await self.objects_for(request, [policy]),
        )

    async def objects_for(
        self, request: AccessRequest, policies: Sequence[AccessPolicy], known: ConditionObjects | None = None
    ) -> ConditionObjects | None:
        """The grantee and task objects the policies' conditions read, `known` ones first."""
        known = known or ConditionObjects()
        grantee, task = known.grantee, known.task
        account = request.spec.grantee.service_account
        if grantee is None and account is not None and any(reads(p, "grantee") for p in policies):
            grantee = await self.kube.get(SERVICE_ACCOUNTS, account.name, account.namespace)
        ref = request.spec.task_ref
        if task is None and ref is not None and any(reads(p, "task") for p in policies):
            try:
                res = await self.kube.resource_of(ref.api_version, ref.kind)
            except KubeError:
                res = None  # an unknown kind: the condition sees no task, and cannot be met by one
            if res is not None:
                namespace = (ref.namespace or request.namespace) if res.namespaced else None
                task = await self.kube.get(res, ref.name, namespace)
        if grantee is None and task is None:
            return None
        return ConditionObjects(grantee=grantee, task=task)

    def catalog(self) -> dict[str, Sequence[PolicyRule]]:
        """The trusted ClusterRoles and their current rules, as the watch last saw them."""
        catalog: dict[str, Sequence[PolicyRule]] = {}
        for name in self.settings.catalog:
            body = self.cache.get(CLUSTER_ROLES, None, name)
            if body is not None:
                catalog[name] = [PolicyRule.model_validate(r) for r in body.get("rules") or []]
        return catalog
