"""Watch streams: newline-delimited JSON events over a chunked HTTP response."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from zsp_operator.sim import errors as E
from zsp_operator.sim.objects import present
from zsp_operator.sim.resources import ResourceType
from zsp_operator.sim.store import Obj, Store, TooOld, Watcher

_TRUE = ("1", "t", "T", "true", "TRUE", "True")  # Go's strconv.ParseBool


def _line(event_type: str, obj: Obj) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _bookmark(rtype: ResourceType, resource_version: int, initial_end: bool = False) -> Obj:
    metadata: dict[str, Any] = {"resourceVersion": str(resource_version)}
    if initial_end:
        metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": metadata}


async def serve_watch(
    request: web.Request,
    store: Store,
    rtype: ResourceType,
    namespace: str | None,
    matches: Callable[[Obj], bool],
    bookmark_interval: float,
    transform: Callable[[Obj], Obj] | None = None,
) -> web.StreamResponse:
    """Stream changes of `rtype` until `timeoutSeconds`, the client leaves or the server stops.

    Without a resourceVersion (or with "0") the stream starts with synthetic ADDED
    events for the current objects; with one, it replays the logged changes after it
    (410 Gone as an ERROR event if they are no longer logged). `transform` turns each
    event's object into what was asked for (a Table for `kubectl get -w`).
    """

    def shown(obj: Obj) -> Obj:
        obj = present(rtype, copy.deepcopy(obj))
        return transform(obj) if transform is not None else obj

    query = request.query
    since_text = query.get("resourceVersion", "")
    bookmarks = query.get("allowWatchBookmarks") in _TRUE
    initial_end = query.get("sendInitialEvents") in _TRUE
    timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
    deadline = time.monotonic() + timeout if timeout else None

    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)

    watcher = Watcher(rtype.storage_key, namespace, matches)
    initial: list[Obj] = []
    try:
        if since_text in ("", "0") or initial_end:
            initial = [obj for obj in store.list(rtype.storage_key, namespace) if matches(obj)]
            store.watch(watcher, None)
        else:
            store.watch(watcher, int(since_text))
    except (TooOld, ValueError) as error:
        status = E.gone(
            str(error) if isinstance(error, TooOld) else f"invalid resourceVersion {since_text!r}"
        )
        await response.write(_line("ERROR", status.status()))
        await response.write_eof()
        return response

    try:
        for obj in initial:
            await response.write(_line("ADDED", shown(obj)))
        if initial_end:
            await response.write(_line("BOOKMARK", _bookmark(rtype, store.resource_version, True)))
        await _pump(response, watcher, rtype, store, deadline, bookmarks, bookmark_interval, shown)
        await response.write_eof()
    except ConnectionResetError:
        return response  # the client went away: nothing is left to send
    finally:
        store.unwatch(watcher)
    return response


async def _pump(
    response: web.StreamResponse,
    watcher: Watcher,
    rtype: ResourceType,
    store: Store,
    deadline: float | None,
    bookmarks: bool,
    bookmark_interval: float,
    shown: Callable[[Obj], Obj],
) -> None:
    while True:
        wait = bookmark_interval
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                return
        try:
            event = await asyncio.wait_for(watcher.queue.get(), timeout=wait)
        except TimeoutError:
            if bookmarks and (deadline is None or time.monotonic() < deadline):
                await response.write(_line("BOOKMARK", _bookmark(rtype, store.resource_version)))
            continue
        if event is None:
            return  # the server is stopping
        event_type, obj = event
        await response.write(_line(event_type, shown(obj)))
