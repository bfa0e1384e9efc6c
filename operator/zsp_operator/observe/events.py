"""Kubernetes Events about our objects (core/v1), posted best-effort."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from datetime import datetime
from typing import Any, Literal

from zsp_operator.core import constants as c
from zsp_operator.core.models import format_time
from zsp_operator.kube import Kube, KubeError
from zsp_operator.kube.resources import EVENTS

log = logging.getLogger(__name__)
EventType = Literal["Normal", "Warning"]
_MAX_MESSAGE = 1024  # the API server truncates longer messages anyway
DRAIN_SECONDS = 2.0  # how long a stopping operator keeps posting queued Events


def event_body(
    involved: dict[str, Any], type_: EventType, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    meta = involved.get("metadata", {})
    namespace = meta.get("namespace") or "default"
    stamp = format_time(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta.get('name', 'zsp')}.{secrets.token_hex(8)}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message[:_MAX_MESSAGE],
        "type": type_,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": None,
        "count": 1,
        "source": {"component": c.OPERATOR_NAME},
        "reportingComponent": c.OPERATOR_NAME,
        "reportingInstance": c.OPERATOR_NAME,
    }


class EventQueue:
    """Events posted in the background, so no transition waits for one.

    Bounded: when the API server cannot keep up, the newest Events are dropped (and logged)
    rather than holding memory or the lifecycle; the audit record is the record. One worker
    by default, so Events are posted in the order they happened.
    """

    def __init__(self, kube: Kube, *, limit: int = 10_000, workers: int = 1) -> None:
        self.kube = kube
        self.limit = limit
        self.workers = workers
        self.dropped = 0
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def put(self, body: dict[str, Any]) -> None:
        queue = self._ready()
        try:
            queue.put_nowait(body)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("event queue full, dropping event %s: %s", body.get("reason"), body.get("message"))

    def _ready(self) -> asyncio.Queue[dict[str, Any]]:
        if self._queue is None or not self._tasks or all(t.done() for t in self._tasks):
            # (Re)started on the running loop: an operator may be restarted on a new loop.
            self._queue = asyncio.Queue(self.limit)
            self._tasks = [
                asyncio.create_task(self._post_forever(self._queue), name=f"zsp-events-{i}")
                for i in range(self.workers)
            ]
        return self._queue

    async def _post_forever(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            body = await queue.get()
            try:
                await self.kube.create(EVENTS, body)
            except KubeError as err:
                involved = body.get("involvedObject") or {}
                log.warning("could not post event %s on %s: %s", body.get("reason"), involved.get("name"), err)
            finally:
                queue.task_done()

    async def close(self) -> None:
        """Post what is queued (for at most `DRAIN_SECONDS`), then stop."""
        if self._queue is not None and self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), DRAIN_SECONDS)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._queue = None
