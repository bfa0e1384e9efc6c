"""The cluster's own kinds the operator watches itself, and which part hears each event.

RBAC objects go into the watch cache first, so the sweeper (and the teardown) judge from what
the watch last said; bindings, Roles and namespaces then go to the sweeper (once it runs).
Namespaces and ServiceAccounts also go to the grant tracker: a relabelled namespace or a
changed grantee can make a live grant wrong, a deleted grantee ends its grants.

Namespaced kinds are watched in the namespaces the operator serves (all when none is set).
The operator's own kinds (requests, grants, policies) stay with kopf.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zsp_operator.engine.informer import Handler, Informer
from zsp_operator.kube import Body
from zsp_operator.kube.resources import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    NAMESPACES,
    ROLE_BINDINGS,
    ROLES,
    SERVICE_ACCOUNTS,
    Resource,
)

if TYPE_CHECKING:
    from zsp_operator.engine.controller import Controller


def informers(engine: Controller) -> list[Informer]:
    """One informer per kind, and per served namespace for namespaced kinds."""
    handlers: dict[Resource, Handler] = {
        ROLE_BINDINGS: _binding(engine, ROLE_BINDINGS),
        CLUSTER_ROLE_BINDINGS: _binding(engine, CLUSTER_ROLE_BINDINGS),
        ROLES: _role(engine),
        CLUSTER_ROLES: _cluster_role(engine),
        NAMESPACES: _namespace(engine),
        SERVICE_ACCOUNTS: _service_account(engine),
    }
    served: list[str | None] = [*engine.settings.namespaces] or [None]
    made: list[Informer] = []
    for res, handler in handlers.items():
        for namespace in served if res.namespaced else [None]:
            made.append(Informer(engine.kube, res, handler, namespace=namespace))
    return made


def _binding(engine: Controller, res: Resource) -> Handler:
    async def binding(event_type: str | None, body: Body) -> None:
        engine.cache.event(res, event_type, body)
        if engine.sweeper.running:
            await engine.sweeper.binding_event(res, event_type, body)

    return binding


def _role(engine: Controller) -> Handler:
    async def role(event_type: str | None, body: Body) -> None:
        engine.cache.event(ROLES, event_type, body)
        if engine.sweeper.running:
            await engine.sweeper.role_event(event_type, body)

    return role


def _cluster_role(engine: Controller) -> Handler:
    async def cluster_role(event_type: str | None, body: Body) -> None:
        engine.cache.event(CLUSTER_ROLES, event_type, body)

    return cluster_role


def _namespace(engine: Controller) -> Handler:
    async def namespace(event_type: str | None, body: Body) -> None:
        # A listing too: after a lost watch, labels may have changed unheard (unchanged ones
        # recheck nothing).
        await engine.grant_tracker.namespace_changed(body, deleted=event_type == "DELETED")
        if engine.sweeper.running:
            await engine.sweeper.namespace_event(event_type, body)

    return namespace


def _service_account(engine: Controller) -> Handler:
    async def service_account(event_type: str | None, body: Body) -> None:
        engine.cache.event(SERVICE_ACCOUNTS, event_type, body)  # keeps only ours
        if event_type == "DELETED":
            engine.grant_tracker.service_account_deleted(body)
        elif event_type == "MODIFIED":
            await engine.grant_tracker.service_account_changed(body)

    return service_account
