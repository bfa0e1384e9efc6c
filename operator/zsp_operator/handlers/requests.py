"""AccessRequest handlers: every watch event brings the request forward; deletion revokes its grant.

Raw events rather than kopf's change handlers: those keep their state in annotations on
each request, two extra writes per request. The engine keeps its own state (the
request's status and the grants it knows) and its own retries.
"""

from __future__ import annotations

from typing import Any

import kopf

from zsp_operator.handlers.common import REQUESTS, controller_of


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.event(*REQUESTS, id="reconcile", registry=registry)
    async def reconcile(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        controller = controller_of(memo)
        body = dict(event["object"])
        if event["type"] == "DELETED":
            await controller.requests.deleted(body)
        else:  # the initial listing (no type) too: what changed while we were away
            await controller.requests.reconcile(body)
