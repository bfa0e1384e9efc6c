"""Standing-privilege handlers: every binding, Role, namespace and grant event goes to the sweeper.

RBAC objects go into the controller's watch cache first, so the sweeper (and the teardown)
judge from what the watch last said.
"""

from __future__ import annotations

from typing import Any

import kopf

from zsp_operator.engine.sweeper import Sweeper
from zsp_operator.handlers.common import GRANTS, controller_of
from zsp_operator.kube.resources import CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES, ROLE_BINDINGS, ROLES, Resource

RBAC = ("rbac.authorization.k8s.io", "v1")


def sweeper_of(memo: Any) -> Sweeper | None:
    """The engine's sweeper once it has started (it needs the operator's own identity first)."""
    sweeper = controller_of(memo).sweeper
    return sweeper if sweeper.running else None


def register(registry: kopf.OperatorRegistry) -> None:
    def on_bindings(res: Resource, handler_id: str) -> None:
        @kopf.on.event(*RBAC, res.plural, id=handler_id, registry=registry)
        async def binding(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
            controller_of(memo).cache.event(res, event["type"], event["object"])
            sweeper = sweeper_of(memo)
            if sweeper is not None:
                await sweeper.binding_event(res, event["type"], dict(event["object"]))

    on_bindings(ROLE_BINDINGS, "sweep-rolebindings")
    on_bindings(CLUSTER_ROLE_BINDINGS, "sweep-clusterrolebindings")

    @kopf.on.event(*RBAC, "roles", id="sweep-roles", registry=registry)
    async def role(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        controller_of(memo).cache.event(ROLES, event["type"], event["object"])
        sweeper = sweeper_of(memo)
        if sweeper is not None:
            await sweeper.role_event(event["type"], dict(event["object"]))

    @kopf.on.event(*RBAC, "clusterroles", id="cache-clusterroles", registry=registry)
    async def cluster_role(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        controller_of(memo).cache.event(CLUSTER_ROLES, event["type"], event["object"])

    @kopf.on.event("v1", "namespaces", id="sweep-namespaces", registry=registry)
    async def namespace(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        sweeper = sweeper_of(memo)
        if sweeper is not None:
            await sweeper.namespace_event(event["type"], dict(event["object"]))

    @kopf.on.event(*GRANTS, id="sweep-grants", registry=registry)
    async def grant(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        sweeper = sweeper_of(memo)
        if sweeper is not None:
            await sweeper.grant_event(event["type"], dict(event["object"]))
