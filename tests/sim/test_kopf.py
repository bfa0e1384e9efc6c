"""kopf, unmodified, runs against the in-memory API server: watches, handlers, status, finalizers, events.

The server runs in its own thread (`serve_in_thread`): on exit kopf cancels every task
that appeared in its event loop while it ran, which would include the server's own
request handlers if both shared a loop (and it first waits 5 s for them).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import kopf
from simkit import GADGET_CRD, GADGETS, GROUP, Raw, gadget

from zsp_operator.sim import serve_in_thread


async def eventually(check: Any, within: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_a_kopf_operator_handles_creation_and_deletion() -> None:
    with serve_in_thread(crds=[GADGET_CRD]) as sim:
        async with aiohttp.ClientSession() as session:
            await _run_kopf_story(Raw(sim, session))


async def _run_kopf_story(raw: Raw) -> None:
    sim = raw.sim
    registry = kopf.OperatorRegistry()
    deleted: list[str] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=sim.url, token=sim.admin_token, scheme="Bearer")

    @kopf.on.create(GROUP, "v1", "gadgets", registry=registry)
    def created(body: kopf.Body, spec: dict[str, Any], patch: kopf.Patch, **_: Any) -> None:
        kopf.info(body, reason="Handled", message=f"gadget of size {spec['size']}")
        patch.status["phase"] = f"Handled-{spec['size']}"

    @kopf.on.delete(GROUP, "v1", "gadgets", registry=registry)
    def removed(name: str, **_: Any) -> None:
        deleted.append(name)

    stop = asyncio.Event()
    task = asyncio.create_task(kopf.operator(registry=registry, standalone=True, clusterwide=True, stop_flag=stop))
    try:
        await raw.ok("POST", GADGETS, gadget("watched", size=4))

        async def handled() -> Any:
            body = await raw.ok("GET", f"{GADGETS}/watched")
            return body if (body.get("status") or {}).get("phase") == "Handled-4" else None

        body = await eventually(handled)
        assert body["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]

        async def event_posted() -> bool:
            events = await raw.ok("GET", "/api/v1/namespaces/default/events")
            return any("gadget of size 4" in event.get("message", "") for event in events["items"])

        await eventually(event_posted)

        await raw.ok("DELETE", f"{GADGETS}/watched")

        async def gone() -> bool:
            return (await raw.call("GET", f"{GADGETS}/watched"))[0] == 404

        await eventually(gone)
        assert deleted == ["watched"]
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
