"""Object storage: one global resourceVersion counter, a bounded event log, watchers.

The store knows nothing about API semantics (validation, admission, finalizers); it
keeps objects, stamps each write with the next resourceVersion and fans the change
out to watchers and in-process listeners (the garbage collector and controllers).
Everything runs on one event loop, so no locking is needed.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

StorageKey = tuple[str, str]  # (group, plural)
Obj = dict[str, Any]

EVENT_LOG_SIZE = 5000


@dataclass(frozen=True)
class Change:
    """One write: what a watch event is made from."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    key: StorageKey
    obj: Obj
    old: Obj | None


@dataclass
class Watcher:
    """A live watch: changes of one storage key that pass its filter land in `queue`."""

    key: StorageKey
    namespace: str | None
    matches: Callable[[Obj], bool]
    queue: asyncio.Queue[tuple[str, Obj] | None] = field(default_factory=asyncio.Queue)

    def offer(self, change: Change) -> None:
        if change.key != self.key:
            return
        if self.namespace is not None and namespace_of(change.obj) != self.namespace:
            return
        event = self.translate(change)
        if event is not None:
            self.queue.put_nowait(event)

    def translate(self, change: Change) -> tuple[str, Obj] | None:
        """Selector-aware event type: leaving the filter looks like DELETED, entering like ADDED."""
        now = self.matches(change.obj)
        before = change.old is not None and self.matches(change.old)
        if change.type == "DELETED":
            return ("DELETED", change.obj) if now or before else None
        if change.type == "ADDED":
            return ("ADDED", change.obj) if now else None
        if now and before:
            return ("MODIFIED", change.obj)
        if now:
            return ("ADDED", change.obj)
        if before:
            return ("DELETED", change.obj)
        return None


def namespace_of(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("namespace") or "")


def name_of(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("name") or "")


def uid_of(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("uid") or "")


def etcd_key(namespace: str, name: str) -> str:
    """Where etcd would keep the object below its resource prefix; lists come in this order."""
    return f"{namespace}/{name}" if namespace else name


def _ordered(bucket: dict[tuple[str, str], Obj], namespace: str | None) -> list[Obj]:
    chosen = [
        (etcd_key(*where), obj) for where, obj in bucket.items() if namespace is None or where[0] == namespace
    ]
    return [copy.deepcopy(obj) for _, obj in sorted(chosen, key=lambda pair: pair[0])]


class TooOld(Exception):
    """The requested resourceVersion fell out of the event log."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")


class Store:
    def __init__(self, log_size: int = EVENT_LOG_SIZE) -> None:
        self._objects: dict[StorageKey, dict[tuple[str, str], Obj]] = {}
        self._by_uid: dict[str, tuple[StorageKey, str, str]] = {}
        self._rv = 0
        self._log: deque[Change] = deque(maxlen=log_size)
        self._compacted_rv = 0  # every change up to this rv has left the log
        self._watchers: list[Watcher] = []
        self._listeners: list[Callable[[Change], None]] = []

    # --- reads ------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, key: StorageKey, namespace: str, name: str) -> Obj | None:
        obj = self._objects.get(key, {}).get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, key: StorageKey, namespace: str | None = None) -> list[Obj]:
        """Current objects of `key`, in etcd key order (`namespace/name`)."""
        return _ordered(self._objects.get(key, {}), namespace)

    def snapshot(self, key: StorageKey, namespace: str | None, rv: int) -> builtins.list[Obj]:
        """The objects of `key` as they were at resourceVersion `rv`, by undoing the logged changes
        after it; TooOld when the log no longer reaches back that far."""
        if rv < self._compacted_rv:
            raise TooOld(rv, self._compacted_rv + 1)
        state = dict(self._objects.get(key, {}))
        for change in reversed(self._log):
            if change.rv <= rv:
                break
            if change.key != key:
                continue
            where = (namespace_of(change.obj), name_of(change.obj))
            if change.type == "ADDED":
                state.pop(where, None)
            elif change.old is not None:
                state[where] = change.old
        return _ordered(state, namespace)

    def keys(self) -> builtins.list[StorageKey]:
        return [key for key, bucket in self._objects.items() if bucket]

    def by_uid(self, uid: str) -> tuple[StorageKey, Obj] | None:
        where = self._by_uid.get(uid)
        if where is None:
            return None
        key, namespace, name = where
        obj = self.get(key, namespace, name)
        return (key, obj) if obj is not None else None

    def dependents_of(self, uid: str) -> builtins.list[tuple[StorageKey, Obj]]:
        """Objects with an ownerReference to this uid."""
        found = []
        for key, bucket in self._objects.items():
            for obj in bucket.values():
                refs = obj.get("metadata", {}).get("ownerReferences") or []
                if any(ref.get("uid") == uid for ref in refs):
                    found.append((key, copy.deepcopy(obj)))
        return found

    def in_namespace(self, namespace: str) -> builtins.list[tuple[StorageKey, Obj]]:
        return [
            (key, copy.deepcopy(obj))
            for key, bucket in self._objects.items()
            for (ns, _), obj in bucket.items()
            if ns == namespace
        ]

    # --- writes -----------------------------------------------------------------------------

    def put(self, key: StorageKey, obj: Obj) -> Obj:
        """Create or replace; stamps the next resourceVersion and returns a copy."""
        meta = obj.setdefault("metadata", {})
        where = (str(meta.get("namespace") or ""), str(meta["name"]))
        bucket = self._objects.setdefault(key, {})
        old = bucket.get(where)
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        stored = copy.deepcopy(obj)
        bucket[where] = stored
        self._by_uid[str(meta["uid"])] = (key, *where)
        self._emit(Change(self._rv, "MODIFIED" if old else "ADDED", key, copy.deepcopy(stored), old))
        return copy.deepcopy(stored)

    def remove(self, key: StorageKey, namespace: str, name: str, final: Obj | None = None) -> Obj | None:
        """Delete for good; the DELETED event carries `final` (default: the stored object)
        stamped with the deletion's resourceVersion."""
        old = self._objects.get(key, {}).pop((namespace, name), None)
        if old is None:
            return None
        self._by_uid.pop(uid_of(old), None)
        self._rv += 1
        final = copy.deepcopy(final if final is not None else old)
        final["metadata"]["resourceVersion"] = str(self._rv)
        self._emit(Change(self._rv, "DELETED", key, final, old))
        return copy.deepcopy(final)

    def _emit(self, change: Change) -> None:
        if len(self._log) == self._log.maxlen:
            self._compacted_rv = self._log[0].rv
        self._log.append(change)
        for watcher in self._watchers:
            watcher.offer(change)
        for listener in self._listeners:
            listener(change)

    # --- watching ---------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[Change], None]) -> None:
        self._listeners.append(listener)

    def watch(self, watcher: Watcher, since: int | None) -> None:
        """Register a watcher; with `since`, first replay the logged changes after it."""
        if since is not None:
            if since < self._compacted_rv:
                raise TooOld(since, self._compacted_rv + 1)
            for change in self._log:
                if change.rv > since:
                    watcher.offer(change)
        self._watchers.append(watcher)

    def unwatch(self, watcher: Watcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)

    def close_watchers(self) -> None:
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)
        self._watchers.clear()
