"""AccessRequest handlers: any change brings the request forward; deletion revokes its grant."""

from __future__ import annotations

from typing import Any

import kopf

from zsp_operator.handlers.common import REQUESTS, controller_of, retry_on_api_errors


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.resume(*REQUESTS, id="reconcile-resumed", registry=registry)
    @kopf.on.create(*REQUESTS, id="reconcile-created", registry=registry)
    @kopf.on.update(*REQUESTS, id="reconcile-updated", registry=registry)
    @retry_on_api_errors
    async def reconcile(body: kopf.Body, memo: Any, **_: Any) -> None:
        await controller_of(memo).reconcile_request(dict(body))

    @kopf.on.event(*REQUESTS, id="watch-deletions", registry=registry)
    async def deleted(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        if event["type"] == "DELETED":
            await controller_of(memo).request_deleted(dict(event["object"]))
