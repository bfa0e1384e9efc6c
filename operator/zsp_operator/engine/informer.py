"""Informers: every object of a kind handed to a handler, first from a listing, then as it changes.

Each informer lists its kind a page at a time, hands each object to its handler as a listing
event (type None), then hands on every watch event. The events of one object reach the handler
in order, one at a time; different objects are handled at once, each in a task that lives only
while that object has events waiting.

Why not kopf's watching: kopf reads a kind's first listing whole and gives every object a worker
task that keeps its last body, so at ten thousand grants the first listings of requests,
grants, Roles, RoleBindings and ServiceAccounts held several hundred MB at once. Here a listing page is
garbage before the next is read: the listing waits while more than a page of objects still have
events waiting.

After a listing that follows a lost watch (410 Gone), an object the informer knew and the
listing no longer shows gets a DELETED event, as does one replaced under the same name (its
old uid): a deletion missed while the watch was down is still heard. Only (namespace, name)
→ uid is remembered per object for this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from zsp_operator.engine.listwatch import ListThenWatch, key_of
from zsp_operator.kube import Body, Kube
from zsp_operator.kube.resources import Resource

log = logging.getLogger(__name__)

# (event type, object): the type is None for an object of a listing.
Handler = Callable[[str | None, Body], Awaitable[None]]
Key = tuple[str, str]
Event = tuple[str | None, Body]

PAGE = 500  # objects per page of every listing the engine makes (start-up, sweeps, informers)
_EVENTS = ("ADDED", "MODIFIED", "DELETED")


class Informer(ListThenWatch):
    """List then watch one kind (in one namespace, or all), handing every event to `handler`."""

    def __init__(
        self,
        kube: Kube,
        res: Resource,
        handler: Handler,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        page_size: int = PAGE,
    ) -> None:
        super().__init__(kube, namespace if res.namespaced else None, label_selector=label_selector)
        self.res = res
        self.handler = handler
        self.page_size = page_size
        self.listed = asyncio.Event()  # set once the first listing has been handed on whole
        self._uids: dict[Key, str] = {}
        self._waiting: dict[Key, deque[Event]] = {}  # objects with events not yet handled
        self._workers: set[asyncio.Task[None]] = set()
        self._fewer = asyncio.Event()  # an object's events were all handled

    @property
    def label(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.res.plural}{where}"

    def start(self) -> None:
        self._start(f"zsp-informer-{self.res.plural}")

    async def stop(self) -> None:
        """Stop watching and cancel the handlers still running."""
        self.closed = True
        tasks = [*self._workers, *([self.task] if self.task is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def pending(self) -> int:
        """Objects with events not yet handled."""
        return len(self._waiting)

    async def idle(self) -> None:
        """Wait until every event so far has been handled (or the informer stops)."""
        await self._at_most(0)

    # -- ListThenWatch ---------------------------------------------------------------------------

    async def _prepare(self) -> Resource:
        return self.res

    async def _list(self, res: Resource) -> str:
        seen: dict[Key, str] = {}
        version = ""
        pages = self.kube.list_pages(
            res, self.namespace, limit=self.page_size, label_selector=self.label_selector
        )
        async with contextlib.aclosing(pages) as listing:
            async for items, version in listing:
                for obj in items:
                    key, uid = key_of(obj, res), _uid(obj)
                    known = self._uids.get(key)
                    if known is not None and known != uid:
                        self._submit(key, "DELETED", _tombstone(res, key, known))
                    seen[key] = uid
                    self._submit(key, None, obj)
                del items
                await self._at_most(self.page_size)
                if self.closed:
                    return version
        for key in self._uids.keys() - seen.keys():
            self._submit(key, "DELETED", _tombstone(res, key, self._uids[key]))
        self._uids = seen
        self.listed.set()
        return version

    def _event(self, kind: str, obj: Body, res: Resource) -> None:
        if kind not in _EVENTS:
            return  # a bookmark: its resourceVersion is all it says
        key = key_of(obj, res)
        if kind == "DELETED":
            self._uids.pop(key, None)
        else:
            self._uids[key] = _uid(obj)
        self._submit(key, kind, obj)

    # -- handing events on -----------------------------------------------------------------------

    def _submit(self, key: Key, kind: str | None, obj: Body) -> None:
        obj.setdefault("apiVersion", self.res.api_version)
        obj.setdefault("kind", self.res.kind)
        queue = self._waiting.get(key)
        if queue is not None:
            queue.append((kind, obj))  # its worker takes it after the events before it
            return
        queue = self._waiting[key] = deque([(kind, obj)])
        task = asyncio.create_task(self._work(key, queue), name=f"zsp-informer-{self.res.plural}-event")
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    async def _work(self, key: Key, queue: deque[Event]) -> None:
        try:
            while queue:
                kind, obj = queue.popleft()
                try:
                    await self.handler(kind, obj)
                except Exception:
                    log.exception(
                        "handling a %s event of %s %s/%s failed", kind or "listing", self.res.kind, *key
                    )
        finally:
            # No await since the queue was last seen empty: nothing can have joined it.
            del self._waiting[key]
            self._fewer.set()

    async def _at_most(self, limit: int) -> None:
        """Wait until at most `limit` objects have events waiting (or the informer stops)."""
        while len(self._waiting) > limit and not self.closed:
            self._fewer.clear()
            await self._fewer.wait()


def _uid(obj: Body) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _tombstone(res: Resource, key: Key, uid: str) -> Body:
    """What a deletion the watch missed says of the object: its place and uid."""
    namespace, name = key
    metadata: dict[str, Any] = {"name": name, "uid": uid}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": res.api_version, "kind": res.kind, "metadata": metadata}
