"""TaskGrant handlers: track live grants, finish deleted ones, end grants whose task finished."""

from __future__ import annotations

from typing import Any

import kopf

from zsp_operator.handlers.common import GRANTS, controller_of, retry_on_api_errors


def _has_task(spec: kopf.Spec, **_: Any) -> bool:
    return bool(spec.get("taskRef"))


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.event(*GRANTS, id="track", registry=registry)
    async def track(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        if event["type"] in ("ADDED", "MODIFIED"):
            controller_of(memo).grant_seen(dict(event["object"]))
        elif event["type"] == "DELETED":
            await controller_of(memo).grant_gone(dict(event["object"]))

    @kopf.on.delete(*GRANTS, id="teardown", registry=registry)
    @retry_on_api_errors
    async def teardown(body: kopf.Body, memo: Any, **_: Any) -> None:
        await controller_of(memo).grant_deleted(dict(body))

    @kopf.daemon(*GRANTS, id="task", when=_has_task, cancellation_timeout=5, registry=registry)
    async def watch_task(body: kopf.Body, memo: Any, stopped: kopf.DaemonStopped, **_: Any) -> None:
        await controller_of(memo).follow_task(dict(body), stopped)
