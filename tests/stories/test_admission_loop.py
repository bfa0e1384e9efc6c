"""Story: admission never waits behind the engine.

The engine's event loop is held (its request handling made to block) and a pipeline files
a request meanwhile: both admission webhooks still answer, the requester is recorded, and
the engine takes the request up as soon as it is free again. Were the webhooks served on
the engine's loop, the create would wait for the API server's webhook timeout and fail.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from harness import replica, wait_for_phase
from tiers import Cluster
from world import world
from zsp_operator.core import constants as c


async def test_a_request_is_admitted_while_the_engine_is_held(cluster: Cluster) -> None:
    async with world(cluster) as w, replica(cluster) as op:
        requests = op.controller.requests
        reconcile = requests.reconcile
        held, release = threading.Event(), threading.Event()

        async def hold_the_loop(body: dict[str, Any]) -> None:
            if not release.is_set():
                held.set()
                release.wait(timeout=60)  # blocks the engine's loop thread itself
            await reconcile(body)

        requests.reconcile = hold_the_loop  # type: ignore[method-assign]
        try:
            await w.file(w.request("first-1", ttl="10m"))
            assert await asyncio.to_thread(held.wait, 30), "the engine took the first request up"
            second = await w.file(w.request("second-1", ttl="10m"))  # through both webhooks
            annotations = second["metadata"].get("annotations") or {}
            assert annotations.get(c.ANNOTATION_REQUESTER), "the mutating webhook recorded who filed it"
            assert "status" not in second or not second["status"].get("phase"), "the engine has not run"
        finally:
            release.set()
            requests.reconcile = reconcile  # type: ignore[method-assign]
        await wait_for_phase(w.admin, w.target, "first-1", "Active")
        await wait_for_phase(w.admin, w.target, "second-1", "Active")
