"""What can make a live grant wrong: its policy, its namespace's labels, its grantee vanishing."""

from __future__ import annotations

from typing import Any

import kopf

from zsp_operator.handlers.common import POLICIES, controller_of
from zsp_operator.kube.resources import SERVICE_ACCOUNTS


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.event(*POLICIES, id="policy-drift", registry=registry)
    async def policy(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        if event["type"] is not None:
            await controller_of(memo).grant_tracker.policy_changed(
                dict(event["object"]), deleted=event["type"] == "DELETED"
            )

    @kopf.on.event("v1", "namespaces", id="namespace-drift", registry=registry)
    async def namespace(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        if event["type"] is not None:
            await controller_of(memo).grant_tracker.namespace_changed(
                dict(event["object"]), deleted=event["type"] == "DELETED"
            )

    @kopf.on.event("v1", "serviceaccounts", id="grantee-deleted", registry=registry)
    async def service_account(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        controller = controller_of(memo)
        controller.cache.event(SERVICE_ACCOUNTS, event["type"], event["object"])  # keeps only ours
        if event["type"] == "DELETED":
            controller.grant_tracker.service_account_deleted(dict(event["object"]))
        elif event["type"] == "MODIFIED":
            await controller.grant_tracker.service_account_changed(dict(event["object"]))
