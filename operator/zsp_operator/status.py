"""Writing an AccessRequest's status: one lifecycle event at a time, never over a newer write."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from zsp_operator.core import lifecycle
from zsp_operator.core.lifecycle import Event
from zsp_operator.core.models import AccessRequest, AccessRequestStatus
from zsp_operator.kube import Conflict, Kube, KubeError
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
    def __init__(self, kube: Kube, clock: Callable[[], datetime]) -> None:
        self.kube = kube
        self.clock = clock

    async def transition(
        self, request: AccessRequest | RequestRef, event: Event
    ) -> AccessRequestStatus | None:
        """Apply one lifecycle event to the live status; None if the request is gone.

        Read, apply, write with the read's resourceVersion: a conflict means someone wrote
        in between, so the event is applied again to what they wrote.
        """
        ref = request if isinstance(request, RequestRef) else RequestRef.of(request)
        for _ in range(10):
            body = await self.kube.get(ACCESS_REQUESTS, ref.name, ref.namespace)
            if body is None or body["metadata"]["uid"] != ref.uid:
                return None
            current = AccessRequestStatus.model_validate(body.get("status") or {})
            new = lifecycle.apply(current, event, self.clock(), body["metadata"].get("generation"))
            if new == current:
                return current
            try:
                await self.write(body["metadata"], new)
            except Conflict:
                continue
            return new
        raise KubeError(409, "Conflict", f"status of {ref.name} kept changing under us")

    async def write(self, meta: dict[str, Any], status: AccessRequestStatus) -> None:
        patch = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": status.to_wire()}
        await self.kube.patch(ACCESS_REQUESTS, meta["name"], patch, meta.get("namespace"), status=True)
