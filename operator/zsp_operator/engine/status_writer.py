"""Writing an AccessRequest's status: one lifecycle event at a time, never over a newer write.

The status is computed from the newest body the operator has seen (its watch, or the answer
to its own last write) and written with that body's resourceVersion: one call per
transition. Only a conflict, someone else's write in between, costs a fresh read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from zsp_operator.core import lifecycle
from zsp_operator.core.lifecycle import Event
from zsp_operator.core.models import AccessRequest, AccessRequestStatus
from zsp_operator.engine.cache import RequestCache
from zsp_operator.kube import Conflict, Kube, KubeError, NotFound
from zsp_operator.kube.resources import ACCESS_REQUESTS


@dataclass(frozen=True)
class RequestRef:
    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, request: AccessRequest) -> RequestRef:
        return cls(request.name, request.namespace, request.metadata.uid)


class StatusWriter:
    def __init__(self, kube: Kube, clock: Callable[[], datetime], requests: RequestCache | None = None) -> None:
        self.kube = kube
        self.clock = clock
        self.requests = requests if requests is not None else RequestCache()

    async def transition(
        self, request: AccessRequest | RequestRef, event: Event
    ) -> AccessRequestStatus | None:
        """Apply one lifecycle event to the live status; None if the request is gone.

        Apply to the newest body known, write with its resourceVersion: a conflict means
        someone wrote in between, so the event is applied again to a fresh read.
        """
        return await self.transitions(request, (event,))

    async def transitions(
        self, request: AccessRequest | RequestRef, events: tuple[Event, ...]
    ) -> AccessRequestStatus | None:
        """Apply several lifecycle events in order and write the result once."""
        ref = request if isinstance(request, RequestRef) else RequestRef.of(request)
        body = self.requests.get(ref.namespace, ref.name, ref.uid)
        for _ in range(10):
            if body is None:
                body = await self.kube.get(ACCESS_REQUESTS, ref.name, ref.namespace)
            if body is None or body["metadata"]["uid"] != ref.uid:
                return None
            current = AccessRequestStatus.model_validate(body.get("status") or {})
            new = current
            for event in events:
                new = lifecycle.apply(new, event, self.clock(), body["metadata"].get("generation"))
            if new == current:
                return current
            try:
                await self.write(body["metadata"], new)
            except Conflict:
                body = None
                continue
            except NotFound:
                self.requests.drop(ref.namespace, ref.name)
                return None
            return new
        raise KubeError(409, "Conflict", f"status of {ref.name} kept changing under us")

    async def write(self, meta: dict[str, Any], status: AccessRequestStatus) -> None:
        patch = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": status.to_wire()}
        written = await self.kube.patch(
            ACCESS_REQUESTS, meta["name"], patch, meta.get("namespace"), status=True
        )
        self.requests.put(written)
