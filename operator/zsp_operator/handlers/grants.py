"""TaskGrant handlers: track live grants and finish ones marked for deletion.

Task objects (`taskRef`) are followed by the grant tracker's TaskFollower, one watch per kind.

The teardown finalizer is the operator's own (set at creation, released by the revocation),
not kopf's: a kopf deletion handler would cost a write to add it and keep state in annotations.
"""

from __future__ import annotations

from typing import Any

import kopf

from zsp_operator.handlers.common import GRANTS, controller_of


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.event(*GRANTS, id="track", registry=registry)
    async def track(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        controller_of(memo).grant_tracker.grant_event(event["type"], dict(event["object"]))
