"""A `Kube` over a dict that records every call, for unit tests of the engine's API use.

It answers like the API server where the engine depends on it: a merge patch carrying
`metadata.resourceVersion` is refused with 409 when the object moved on; a delete with a
uid precondition that no longer holds finds nothing (as `Kube.delete_returning` reports
it); a delete of an object with finalizers marks it, and removing the last finalizer of a
marked object removes it; a JSON patch whose `test` fails is refused with 422.
Failures are scripted per (verb, kind); a gate holds one kind of call until it is opened.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from zsp_operator.kube import Conflict, Invalid, Kube, KubeError, NotFound
from zsp_operator.kube.resources import Resource

Body = dict[str, Any]
Key = tuple[str, str, str]  # kind, namespace or "", name
WRITES = ("create", "patch", "patch/status", "delete")


@dataclass
class Gate:
    reached: asyncio.Event = field(default_factory=asyncio.Event)  # a held call arrived
    opened: asyncio.Event = field(default_factory=asyncio.Event)  # held calls go on


@dataclass(frozen=True)
class Call:
    verb: str  # get, patch, patch/status, delete
    kind: str
    name: str
    namespace: str
    at: float  # loop time when it was sent
    uid: str | None = None  # a delete's uid precondition
    resource_version: str | None = None  # a delete's precondition, or the one a merge patch carries
    patch: Any = None
    error: KubeError | None = None  # what it raised, scripted or not

    @property
    def step(self) -> tuple[str, str]:
        return (self.verb, self.kind)


class RecordingKube(Kube):
    def __init__(self, on_write: Callable[[Call], None] | None = None) -> None:
        # No API client: nothing here leaves the process.
        self.objects: dict[Key, Body] = {}
        self.calls: list[Call] = []
        self.on_write = on_write
        self._failures: dict[tuple[str, str], deque[KubeError]] = {}
        self._gates: dict[tuple[str, str], Gate] = {}
        self._version = 100

    # -- test controls -----------------------------------------------------------------------

    def add(self, res: Resource, body: Body) -> Body:
        """Store an object as if created earlier (not recorded), with a fresh resourceVersion."""
        body = copy.deepcopy(body)
        body.setdefault("apiVersion", res.api_version)
        body.setdefault("kind", res.kind)
        body["metadata"]["resourceVersion"] = self._next_version()
        self.objects[self._key(res.kind, body["metadata"].get("namespace"), body["metadata"]["name"])] = body
        return copy.deepcopy(body)

    def stored(self, res: Resource, name: str, namespace: str | None) -> Body | None:
        return self.objects.get(self._key(res.kind, namespace, name))

    def fail(self, verb: str, kind: str, *errors: KubeError) -> None:
        """The next calls of `verb` on `kind` raise these errors, one each, in order."""
        self._failures.setdefault((verb, kind), deque()).extend(errors)

    def hold(self, verb: str, kind: str) -> Gate:
        """Calls of `verb` on `kind` wait, once recorded, until the gate is opened."""
        return self._gates.setdefault((verb, kind), Gate())

    def writes(self) -> list[Call]:
        return [call for call in self.calls if call.verb in WRITES]

    def steps(self, *, failed: bool | None = None) -> list[tuple[str, str]]:
        """(verb, kind) of every write, in order; only failed or only answered ones if asked."""
        return [call.step for call in self.writes() if failed is None or (call.error is not None) == failed]

    # -- the Kube interface the engine uses ----------------------------------------------------

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> Body | None:
        await self._record(Call("get", res.kind, name, namespace or "", self._now()))
        found = self.stored(res, name, namespace)
        return copy.deepcopy(found) if found is not None else None

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: Body | list[Body],
        namespace: str | None = None,
        *,
        status: bool = False,
    ) -> Body:
        verb = "patch/status" if status else "patch"
        version = patch.get("metadata", {}).get("resourceVersion") if isinstance(patch, dict) else None
        call = Call(verb, res.kind, name, namespace or "", self._now(), resource_version=version, patch=patch)
        at = await self._record(call)
        key = self._key(res.kind, namespace, name)
        current = self.objects.get(key)
        if current is None:
            raise self._error(at, NotFound(404, "NotFound", f"{res.kind} {name} not found"))
        if version is not None and version != current["metadata"]["resourceVersion"]:
            raise self._error(at, Conflict(409, "Conflict", "the object has been modified"))
        new = copy.deepcopy(current)
        if isinstance(patch, list):
            try:
                for op in patch:
                    _apply_op(new, op)
            except (KeyError, IndexError, ValueError) as err:
                raise self._error(at, Invalid(422, "Invalid", f"the patch was not applied: {err}")) from None
        elif status:
            new["status"] = _merge(new.get("status"), patch.get("status"))
        else:
            # The resourceVersion a merge patch carries is a precondition, not a change.
            new = _merge(new, _merge(patch, {"metadata": {"resourceVersion": None}}))
        new["metadata"]["resourceVersion"] = self._next_version()
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            del self.objects[key]
        else:
            self.objects[key] = new
        self._written(call)
        return copy.deepcopy(new)

    async def delete_returning(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation: str = "Background",
    ) -> Body | None:
        call = Call(
            "delete", res.kind, name, namespace or "", self._now(), uid=uid, resource_version=resource_version
        )
        at = await self._record(call)
        key = self._key(res.kind, namespace, name)
        current = self.objects.get(key)
        if current is None or (uid and current["metadata"].get("uid") != uid):
            return None  # gone, or a same-named replacement the precondition protects
        if resource_version and current["metadata"]["resourceVersion"] != resource_version:
            raise self._error(at, Conflict(409, "Conflict", "the object has been modified"))
        if current["metadata"].get("finalizers"):
            current["metadata"].setdefault("deletionTimestamp", "2026-01-01T00:00:00Z")
            current["metadata"]["resourceVersion"] = self._next_version()
            answer = copy.deepcopy(current)
        else:
            answer = self.objects.pop(key)
        self._written(call)
        return answer

    # -- internals ---------------------------------------------------------------------------

    async def _record(self, call: Call) -> int:
        """Record the call; wait at its gate, raise its scripted failure; its index in `calls`."""
        at = len(self.calls)
        self.calls.append(call)
        gate = self._gates.get(call.step)
        if gate is not None:
            gate.reached.set()
            await gate.opened.wait()
        failures = self._failures.get(call.step)
        if failures:
            raise self._error(at, failures.popleft())
        return at

    def _error(self, at: int, error: KubeError) -> KubeError:
        self.calls[at] = replace(self.calls[at], error=error)
        return error

    def _written(self, call: Call) -> None:
        if self.on_write is not None:
            self.on_write(call)

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    @staticmethod
    def _key(kind: str, namespace: str | None, name: str) -> Key:
        return (kind, namespace or "", name)

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge(merged.get(key), value)
    return merged


def _apply_op(body: Body, op: Body) -> None:
    """One RFC 6902 operation of the kinds the engine sends: test, add, remove."""
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    node: Any = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    index: Any = int(last) if isinstance(node, list) and last != "-" else last
    if op["op"] == "test":
        if node[index] != op["value"]:
            raise ValueError(f"test of {op['path']} failed")
    elif op["op"] == "remove":
        del node[index]
    elif op["op"] == "add":
        if isinstance(node, list):
            node.insert(len(node) if index == "-" else index, op["value"])
        else:
            node[index] = op["value"]
    else:
        raise ValueError(f"unsupported op {op['op']}")


class ManualClock:
    """The engine's `clock`: a time that moves only when the test (or a write) moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
