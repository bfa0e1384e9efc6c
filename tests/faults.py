"""A client that misbehaves once, on one call: the operator's way to meet a fault or a crash.

`fail` raises an API error (the operator must roll back); `hang` never returns, so stopping
the operator leaves its work half done exactly as a crash between two steps would.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from zsp_operator.kube import Kube, KubeError
from zsp_operator.kube.resources import Resource


class FaultyKube(Kube):
    def __init__(self, inner: Kube, kind: str, verb: str, mode: Literal["fail", "hang"] = "fail") -> None:
        super().__init__(inner.api)
        self.kind, self.verb, self.mode = kind, verb, mode
        self.tripped = asyncio.Event()

    async def _maybe(self, verb: str, res: Resource) -> None:
        if self.tripped.is_set() or verb != self.verb or res.kind != self.kind:
            return
        self.tripped.set()
        if self.mode == "fail":
            raise KubeError(500, "InternalError", f"injected failure: {verb} {res.kind}")
        await asyncio.Event().wait()  # the process "dies" here: nothing after this runs

    async def create(
        self, res: Resource, body: dict[str, Any], namespace: str | None = None, *, dry_run: bool = False
    ) -> dict[str, Any]:
        if not dry_run:
            await self._maybe("create", res)
        return await super().create(res, body, namespace, dry_run=dry_run)

    async def post(
        self, res: Resource, name: str, sub: str, body: dict[str, Any], namespace: str | None
    ) -> dict[str, Any]:
        await self._maybe(f"create/{sub}", res)
        return await super().post(res, name, sub, body, namespace)

    async def patch(
        self, res: Resource, name: str, patch: Any, namespace: str | None = None, *, status: bool = False
    ) -> dict[str, Any]:
        await self._maybe("patch/status" if status else "patch", res)
        return await super().patch(res, name, patch, namespace, status=status)

    async def delete_returning(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation: str = "Background",
    ) -> dict[str, Any] | None:
        # Every delete goes through here (`Kube.delete` too).
        await self._maybe("delete", res)
        return await super().delete_returning(
            res, name, namespace, uid=uid, resource_version=resource_version, propagation=propagation
        )
