"""The loop under every watch the operator keeps itself: list, then watch from there, forever.

It lists once, watches from the list's resourceVersion, and opens the watch again from the
last resourceVersion it saw (bookmarks included) each time the server closes it. It lists
again only when the server says that resourceVersion expired (410 Gone): at once the first
time, by the retry policy if it keeps happening. Any other failure waits by the retry policy
(its transient steps, even for a 403 or 404) and never ends the loop, since grants end and
privilege is judged through these watches.
What a listing and the events mean is the subclass's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator
from typing import Any, cast

from zsp_operator.kube import Body, Gone, Kube, KubeError
from zsp_operator.kube.resources import Resource
from zsp_operator.kube.retry import backoff, pause

log = logging.getLogger(__name__)

WATCH_SECONDS = 300  # the server closes a watch after about this long; it is opened again
_QUIET = 1.0  # a watch closed sooner than this with no event counts as a failure (backs off)


class ListThenWatch(ABC):
    """One list-then-watch loop of one kind (in one namespace, or all of them)."""

    def __init__(self, kube: Kube, namespace: str | None, *, label_selector: str | None = None) -> None:
        self.kube = kube
        self.namespace = namespace
        self.label_selector = label_selector
        self.closed = False
        self.task: asyncio.Task[None] | None = None

    # -- what a subclass says --------------------------------------------------------------------

    @property
    @abstractmethod
    def label(self) -> str:
        """What the logs call this watch."""

    @abstractmethod
    async def _prepare(self) -> Resource:
        """The kind to list and watch (found by discovery, for some)."""

    @abstractmethod
    async def _list(self, res: Resource) -> str:
        """List once; return the resourceVersion the watch picks up from."""

    @abstractmethod
    def _event(self, kind: str, obj: Body, res: Resource) -> None:
        """One watch event (bookmarks included: ignore what is not ADDED, MODIFIED or DELETED)."""

    # -- the loop --------------------------------------------------------------------------------

    def _start(self, name: str) -> None:
        if self.closed or (self.task is not None and not self.task.done()):
            return
        self.task = asyncio.create_task(self._run(), name=name)

    async def _run(self) -> None:
        failures = 0
        version: str | None = None
        while not self.closed:
            try:
                res = await self._prepare()
                if self.closed:
                    return
                if version is None:
                    version = await self._list(res)
                    failures = 0
                    if self.closed:
                        return
                started = asyncio.get_running_loop().time()
                version, events = await self._watch(res, version)
                if events or asyncio.get_running_loop().time() - started >= _QUIET:
                    failures = 0
                    continue
                failures += 1  # closed at once and empty: do not spin
                log.debug("watch of %s closed at once; again", self.label)
            except Gone as err:
                log.info("the resourceVersion of %s expired (%s): listing again", self.label, err.message)
                version = None
                failures += 1
                if failures == 1:
                    continue  # list again at once; back off only if it keeps happening
            except KubeError as err:
                delay = backoff(failures)
                failures += 1
                log.warning(
                    "watching %s: %s %s (%s); retrying in %.1fs",
                    self.label,
                    err.status,
                    err.reason,
                    err.message,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            except Exception as err:  # a broken stream or a strange answer must not end the loop
                failures += 1
                log.warning("watching %s failed (%r); retrying", self.label, err)
            await pause(failures - 1)

    async def _watch(self, res: Resource, version: str) -> tuple[str, int]:
        """Watch until the server closes the stream; the last resourceVersion and how many events."""
        events = 0
        stream = self.kube.watch(
            res,
            self.namespace,
            label_selector=self.label_selector,
            resource_version=version,
            timeout_seconds=WATCH_SECONDS,
        )
        # Closed on the way out, so leaving early ends the request at once.
        async with contextlib.aclosing(cast("AsyncGenerator[tuple[str, Body], None]", stream)) as changes:
            async for kind, obj in changes:
                events += 1
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                self._event(kind, obj, res)
                if self.closed:
                    break
        return version, events


def key_of(obj: dict[str, Any], res: Resource) -> tuple[str, str]:
    """(namespace, name); the namespace is "" for cluster-scoped kinds."""
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or "") if res.namespaced else "", str(meta.get("name") or ""))
