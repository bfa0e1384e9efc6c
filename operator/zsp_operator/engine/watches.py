"""Every kind the operator watches, and which part of the engine hears each event.

- AccessRequests go to the request reconciler: every event brings a request forward (the
  listing too: what changed while the operator was away), a deletion revokes its grant.
- TaskGrants go to the grant tracker, then to the sweeper (a grant that recorded its objects
  or vanished has its bindings judged again).
- AccessPolicies go to the grant tracker: a changed or deleted policy may no longer allow a
  live grant (start-up read them all, so the listing is skipped).
- RBAC objects go into the watch cache first, so the sweeper (and the teardown) judge from
  what the watch last said; bindings, Roles and namespaces then go to the sweeper (once it
  runs). Namespaces and ServiceAccounts also go to the grant tracker: a relabelled namespace
  or a changed grantee can make a live grant wrong, a deleted grantee ends its grants.

Namespaced kinds are watched in the namespaces the operator serves (all when none is set).
A standby watches the policies only, to answer admission (`standby_informers`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zsp_operator.engine.informer import Handler, Informer
from zsp_operator.kube import Body
from zsp_operator.kube.resources import (
    ACCESS_POLICIES,
    ACCESS_REQUESTS,
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    NAMESPACES,
    ROLE_BINDINGS,
    ROLES,
    SERVICE_ACCOUNTS,
    TASK_GRANTS,
    Resource,
)

if TYPE_CHECKING:
    from zsp_operator.engine.controller import Controller


def informers(engine: Controller) -> list[Informer]:
    """One informer per kind, and per served namespace for namespaced kinds."""
    handlers: dict[Resource, Handler] = {
        ACCESS_REQUESTS: _request(engine),
        TASK_GRANTS: _grant(engine),
        ACCESS_POLICIES: _policy(engine),
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


def standby_informers(engine: Controller) -> list[Informer]:
    """What a standby watches: the policies admission judges requests by."""
    view = engine.view

    async def policy(event_type: str | None, body: Body) -> None:
        if event_type == "DELETED":
            view.drop_policy((body.get("metadata") or {}).get("name", ""))
        else:  # the listing too: it may be newer than the start's list
            view.put_policy(body)

    return [Informer(engine.kube, ACCESS_POLICIES, policy)]


def _request(engine: Controller) -> Handler:
    async def request(event_type: str | None, body: Body) -> None:
        if event_type == "DELETED":
            await engine.requests.deleted(body)
        else:  # the listing too: what changed while we were away
            await engine.requests.reconcile(body)

    return request


def _grant(engine: Controller) -> Handler:
    async def grant(event_type: str | None, body: Body) -> None:
        engine.grant_tracker.grant_event(event_type, body)
        if engine.sweeper.running:
            await engine.sweeper.grant_event(event_type, body)

    return grant


def _policy(engine: Controller) -> Handler:
    async def policy(event_type: str | None, body: Body) -> None:
        if event_type is not None:  # start-up read them all, and rechecked every grant
            await engine.grant_tracker.policy_changed(body, deleted=event_type == "DELETED")

    return policy


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
