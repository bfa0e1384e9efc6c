"""Following the objects that grants' `taskRef`s name, with one list and watch per task kind.

Every grant that follows an object of a kind (apiVersion and kind; per namespace when the
operator serves only some namespaces) shares one `_Watch`: it discovers the kind once,
lists it once, then watches from the list's resourceVersion, listing again only when the
server says that resourceVersion expired (410 Gone). It keeps no bodies, only whether the
followed objects still run, and a bounded memory of objects it saw finish or disappear.
The watch exists while some grant follows that kind and stops when none does.

A grant ends once, through `on_end(grant_uid, sentence)`, when its object finishes (the
sentence of `core.tasks.task_finished`) or is deleted ("task Job ns/name was deleted").
A grant issued before its task exists (a GitOps PreSync request naming its Sync Job) is
followed with `await_creation`: the object's absence does not end it until the object has
been seen; its TTL bounds the wait. A grant found at start-up is followed without it, so an
object deleted while the operator was away still ends its grant.
While it runs, `on_change(grant_uid, object)` (if given) hears every version of it, so
conditions that read the task can be decided again; the body is passed on, never kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from zsp_operator.core.models import TaskGrant
from zsp_operator.core.tasks import task_finished
from zsp_operator.engine.listwatch import ListThenWatch, key_of
from zsp_operator.kube import Body, Kube, KubeError
from zsp_operator.kube.resources import Resource
from zsp_operator.kube.retry import backoff

log = logging.getLogger(__name__)

OnEnd = Callable[[str, str], Awaitable[None]]
OnChange = Callable[[str, Body], Awaitable[None]]
# Where an object is: (namespace, name); the namespace is "" for cluster-scoped kinds.
Key = tuple[str, str]
# One shared watch: (apiVersion, kind, namespace); None watches every namespace.
WatchKey = tuple[str, str, str | None]

_PAGE = 500  # objects per list page
_ENDED_KEPT = 1_000  # per watch: finished or vanished objects remembered for late followers
_DONE_KEPT = 10_000  # grants already ended, so a late follow() cannot end one twice
_LOOKUPS = 16  # GETs at once for objects followed after the list


@dataclass(frozen=True)
class TaskTarget:
    """The object a grant follows: its taskRef, the namespace defaulting to the grant's."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, grant: TaskGrant) -> TaskTarget | None:
        ref = grant.spec.task_ref
        if ref is None:
            return None
        return cls(ref.api_version, ref.kind, ref.namespace or grant.namespace, ref.name)

    def key(self, res: Resource) -> Key:
        return (self.namespace if res.namespaced else "", self.name)


def gone_sentence(kind: str, key: Key) -> str:
    namespace, name = key
    return f"task {kind} {namespace + '/' if namespace else ''}{name} was deleted"


class TaskFollower:
    """Ends grants when the objects their `taskRef`s name finish or disappear."""

    def __init__(
        self,
        kube: Kube,
        on_end: OnEnd,
        namespaces: Sequence[str] = (),
        *,
        page_size: int = _PAGE,
        on_change: OnChange | None = None,
    ) -> None:
        self.kube = kube
        self.on_end = on_end
        self.on_change = on_change
        self.namespaces = tuple(namespaces)
        self.page_size = page_size
        self._watches: dict[WatchKey, _Watch] = {}
        self._following: dict[str, tuple[_Watch, TaskTarget]] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self._resources: dict[tuple[str, str], Resource] = {}
        self._discovering: dict[tuple[str, str], asyncio.Lock] = {}
        self._lookups = asyncio.Semaphore(_LOOKUPS)
        self._callbacks: set[asyncio.Task[None]] = set()
        self._awaiting: set[str] = set()  # grants whose task has not been seen to exist yet
        self._started = False

    # -- what the controller calls -------------------------------------------------------------

    def follow(self, grant: TaskGrant, *, await_creation: bool = False) -> None:
        """Follow the grant's taskRef object (idempotent; grants without one are ignored).

        `await_creation`: the object may not exist yet; its absence ends the grant only once
        it has been seen to exist.
        """
        target = TaskTarget.of(grant)
        uid = grant.metadata.uid
        if target is None or not uid or uid in self._done:
            return
        current = self._following.get(uid)
        if current is not None:
            if current[1] == target:
                return
            self.unfollow(uid)
        if await_creation:
            self._awaiting.add(uid)
        scope = target.namespace if self.namespaces else None
        wkey = (target.api_version, target.kind, scope)
        watch = self._watches.get(wkey)
        if watch is None:
            watch = self._watches[wkey] = _Watch(self, wkey)
        self._following[uid] = (watch, target)
        watch.add(uid, target)
        if self._started and uid in self._following:
            watch.start()

    def unfollow(self, grant_uid: str) -> None:
        """Stop following; no callback for this grant comes after this (unless it is followed again)."""
        self._done.pop(grant_uid, None)
        self._awaiting.discard(grant_uid)
        entry = self._following.pop(grant_uid, None)
        if entry is not None:
            watch, target = entry
            watch.remove(grant_uid, target)
            self._retire_if_idle(watch)

    def following(self, grant_uid: str) -> bool:
        return grant_uid in self._following

    @property
    def watches(self) -> list[WatchKey]:
        """The shared watches that exist now (one per kind, or per kind and namespace)."""
        return list(self._watches)

    def start(self) -> None:
        self._started = True
        for watch in list(self._watches.values()):
            watch.start()

    async def stop(self) -> None:
        """Close every watch and cancel callbacks not yet done; everything followed is forgotten."""
        self._started = False
        tasks: list[asyncio.Task[Any]] = []
        for watch in self._watches.values():
            tasks += watch.halt()
        self._watches.clear()
        self._following.clear()
        self._done.clear()
        tasks += self._callbacks
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- what the watches call -----------------------------------------------------------------

    def awaiting(self, grant_uid: str) -> bool:
        return grant_uid in self._awaiting

    def _ended(self, grant_uid: str, sentence: str) -> None:
        self._awaiting.discard(grant_uid)
        if self._following.pop(grant_uid, None) is None:
            return
        self._done[grant_uid] = None
        while len(self._done) > _DONE_KEPT:
            self._done.popitem(last=False)
        task = asyncio.create_task(self._deliver(grant_uid, sentence), name=f"zsp-task-ended-{grant_uid}")
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    def _changed(self, grant_uid: str, obj: Body) -> None:
        if self.on_change is None or grant_uid not in self._following:
            return
        task = asyncio.create_task(self._deliver_change(grant_uid, obj), name=f"zsp-task-changed-{grant_uid}")
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    async def _deliver_change(self, grant_uid: str, obj: Body) -> None:
        assert self.on_change is not None
        try:
            await self.on_change(grant_uid, obj)
        except Exception:
            log.exception("re-checking grant %s after its task changed failed", grant_uid)

    async def _deliver(self, grant_uid: str, sentence: str) -> None:
        try:
            await self.on_end(grant_uid, sentence)
        except Exception:
            log.exception("ending grant %s (%s) failed", grant_uid, sentence)

    def _retire_if_idle(self, watch: _Watch) -> None:
        if watch.grants or self._watches.get(watch.wkey) is not watch:
            return
        del self._watches[watch.wkey]
        current = asyncio.current_task()
        for task in watch.halt():
            if task is not current:
                task.cancel()

    async def _resource(self, api_version: str, kind: str) -> Resource:
        """Discovery, once per kind."""
        kind_key = (api_version, kind)
        lock = self._discovering.setdefault(kind_key, asyncio.Lock())
        async with lock:
            res = self._resources.get(kind_key)
            if res is None:
                res = self._resources[kind_key] = await self.kube.resource_of(api_version, kind)
            return res


class _Watch(ListThenWatch):
    """One list-then-watch of a kind and the grants that follow objects of it."""

    def __init__(self, follower: TaskFollower, wkey: WatchKey) -> None:
        super().__init__(follower.kube, wkey[2])
        self.follower = follower
        self.wkey = wkey
        self.api_version, self.kind, _ = wkey
        self.res: Resource | None = None
        self.grants: dict[str, TaskTarget] = {}
        self.by_key: dict[Key, set[str]] = {}  # indexed once discovery gave the scope
        self.running: set[Key] = set()  # followed objects that exist and have not finished
        # Finished or gone, how, and whether gone (a grant awaiting creation waits past that).
        self.ended: OrderedDict[Key, tuple[str, bool]] = OrderedDict()
        self.listed = False  # a list completed: what it did not show, a GET resolves
        self.listing = False
        self.lookups: dict[Key, asyncio.Task[None]] = {}

    @property
    def label(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.kind} ({self.api_version}){where}"

    # -- followers -------------------------------------------------------------------------------

    def add(self, uid: str, target: TaskTarget) -> None:
        self.grants[uid] = target
        if self.res is not None:
            self._index(uid, target, self.res)

    def remove(self, uid: str, target: TaskTarget) -> None:
        self.grants.pop(uid, None)
        if self.res is None:
            return
        key = target.key(self.res)
        uids = self.by_key.get(key)
        if uids is None:
            return
        uids.discard(uid)
        if not uids:
            del self.by_key[key]
            self.running.discard(key)
            lookup = self.lookups.pop(key, None)
            if lookup is not None:
                lookup.cancel()

    def _index(self, uid: str, target: TaskTarget, res: Resource) -> None:
        key = target.key(res)
        self.by_key.setdefault(key, set()).add(uid)
        ended = self.ended.get(key)
        if ended is not None:
            self._end(key, *ended)
        if key in self.by_key and key not in self.running and self.listed and not self.listing:
            self._look_up(key)

    def _end(self, key: Key, sentence: str, gone: bool = False) -> None:
        """The object is over: remember how, and end every grant following it.

        When it is gone, grants still awaiting its creation keep waiting for a new one.
        """
        self.running.discard(key)
        self.ended[key] = (sentence, gone)
        self.ended.move_to_end(key)
        while len(self.ended) > _ENDED_KEPT:
            self.ended.popitem(last=False)
        followers = self.by_key.pop(key, set())
        waiting = {uid for uid in followers if gone and self.follower.awaiting(uid)}
        if waiting:
            self.by_key[key] = waiting
        else:
            lookup = self.lookups.pop(key, None)
            if lookup is not None and lookup is not asyncio.current_task():
                lookup.cancel()
        for uid in followers - waiting:
            self.grants.pop(uid, None)
            self.follower._ended(uid, sentence)
        self.follower._retire_if_idle(self)

    # -- what the server says --------------------------------------------------------------------

    def _observe(self, key: Key, obj: dict[str, Any] | None) -> None:
        """The object as it is now (None: it does not exist)."""
        sentence = gone_sentence(self.kind, key) if obj is None else task_finished(obj)
        if obj is not None:
            for uid in self.by_key.get(key, ()):
                self.follower._awaiting.discard(uid)  # seen: from now on its absence ends the grant
        if sentence is not None:
            self._end(key, sentence, gone=obj is None)
        elif key in self.by_key:
            self.ended.pop(key, None)
            self.running.add(key)
            if obj is not None:  # always, here: a missing object has its sentence
                for uid in list(self.by_key[key]):
                    self.follower._changed(uid, obj)
        else:
            self.ended.pop(key, None)  # a new object of that name runs: forget the old one's end

    def _event(self, kind: str, obj: dict[str, Any], res: Resource) -> None:
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return
        key = key_of(obj, res)
        if key in self.by_key or key in self.ended:
            self._observe(key, None if kind == "DELETED" else obj)

    # -- the loop --------------------------------------------------------------------------------

    def start(self) -> None:
        self._start(f"zsp-task-watch-{self.kind}")

    def halt(self) -> list[asyncio.Task[Any]]:
        """Stop for good; the tasks to cancel (the caller cancels them)."""
        self.closed = True
        tasks: list[asyncio.Task[Any]] = list(self.lookups.values())
        self.lookups.clear()
        if self.task is not None:
            tasks.append(self.task)
        return tasks

    async def _prepare(self) -> Resource:
        if self.res is None:
            self.res = await self.follower._resource(self.api_version, self.kind)
            for uid, target in list(self.grants.items()):
                self._index(uid, target, self.res)
        return self.res

    async def _list(self, res: Resource) -> str:
        """List once: the state of every followed object, and where the watch picks up."""
        self.listing = True
        try:
            wanted = set(self.by_key) | set(self.ended)
            seen: set[Key] = set()
            version = ""
            pages = self.follower.kube.list_pages(res, self.namespace, limit=self.follower.page_size)
            async with contextlib.aclosing(pages) as listing:
                async for items, version in listing:
                    for obj in items:
                        key = key_of(obj, res)
                        if key in self.by_key or key in self.ended:
                            seen.add(key)
                            self._observe(key, obj)
                    if self.closed:
                        return version
        finally:
            self.listing = False
        for key in wanted - seen:
            if key in self.by_key or key in self.ended:
                self._observe(key, None)
        self.listed = True
        # Followed while the list ran, on a page already read: ask for each.
        for key in set(self.by_key) - seen - wanted - self.running:
            self._look_up(key)
        return version

    # -- objects followed after the list ---------------------------------------------------------

    def _look_up(self, key: Key) -> None:
        if key in self.lookups or self.closed:
            return
        task = asyncio.create_task(self._get(key), name=f"zsp-task-get-{self.kind}")
        self.lookups[key] = task
        task.add_done_callback(lambda t: self.lookups.pop(key, None) if self.lookups.get(key) is t else None)

    async def _get(self, key: Key) -> None:
        """One GET for an object the cache does not know; the watch may answer first."""
        assert self.res is not None
        namespace, name = key
        failures = 0
        while self._unknown(key):
            try:
                async with self.follower._lookups:
                    if not self._unknown(key):
                        return
                    obj = await self.follower.kube.get(self.res, name, namespace or None)
            except KubeError as err:
                delay = backoff(failures)
                failures += 1
                log.warning(
                    "reading %s %s/%s: %s; retrying in about %.1fs", self.kind, namespace, name, err, delay
                )
                await asyncio.sleep(delay)
                continue
            if self._unknown(key):
                self._observe(key, obj)
            return

    def _unknown(self, key: Key) -> bool:
        return not self.closed and key in self.by_key and key not in self.running
