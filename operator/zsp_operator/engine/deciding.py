"""One policy decision for a request, from what the watches last saw: policies, grants, namespaces, roles."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from zsp_operator.core.models import AccessPolicy, AccessRequest, PolicyRule
from zsp_operator.core.policy import Decision, decide
from zsp_operator.engine.cache import ObjectCache
from zsp_operator.engine.view import ClusterView
from zsp_operator.kube.resources import CLUSTER_ROLES
from zsp_operator.settings import Settings


class Decider:
    """Gives the pure `decide` the cluster as the operator knows it, and reads nothing."""

    def __init__(
        self, view: ClusterView, cache: ObjectCache, settings: Settings, clock: Callable[[], datetime]
    ) -> None:
        self.view = view
        self.cache = cache
        self.settings = settings
        self.clock = clock

    def decide(self, request: AccessRequest, policies: Sequence[AccessPolicy] | None = None) -> Decision:
        """Against every policy, or only `policies` (a live grant is re-checked against its own)."""
        return decide(
            request,
            list(self.view.policies.values()) if policies is None else policies,
            self.view.grant_index,
            self.view.namespace_labels,
            self.clock(),
            catalog=self.catalog(),
            break_glass_max_ttl=self.settings.break_glass_max_ttl,
        )

    def catalog(self) -> dict[str, Sequence[PolicyRule]]:
        """The trusted ClusterRoles and their current rules, as the watch last saw them."""
        catalog: dict[str, Sequence[PolicyRule]] = {}
        for name in self.settings.catalog:
            body = self.cache.get(CLUSTER_ROLES, None, name)
            if body is not None:
                catalog[name] = [PolicyRule.model_validate(r) for r in body.get("rules") or []]
        return catalog
