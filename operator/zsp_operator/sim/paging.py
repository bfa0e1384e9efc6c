"""Lists in chunks (`limit`, `continue`) and at a resourceVersion, as etcd-backed lists are.

A page holds up to `limit` matching objects in etcd key order (`namespace/name`). When
more keys follow, `metadata.continue` carries an opaque token (base64 of the snapshot's
resourceVersion and the key to resume after) and, without selectors, `remainingItemCount`.
Every page of one list shows the objects as they were when the first page was read; when
the event log no longer reaches back that far the answer is 410 Expired with a token that
continues at the latest state, as the real server does after an etcd compaction.
`resourceVersionMatch=Exact` lists at the given resourceVersion the same way; the other
resourceVersion forms answer with the current state.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any

from zsp_operator.sim import errors as E
from zsp_operator.sim.objects import present
from zsp_operator.sim.resources import ResourceType
from zsp_operator.sim.store import Obj, Store, TooOld, etcd_key, name_of, namespace_of

TOKEN_VERSION = "meta.k8s.io/v1"
LATEST = -1  # a continue token's resourceVersion that means "whatever is current"
_EXPIRED_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a "
    "new list without the continue parameter, or use the continue token in this response to retrieve "
    "the remainder of the results. Continuing with the provided token results in an inconsistent "
    "list - objects that were created, modified, or deleted between the time the first chunk was "
    "returned and now may show up in the list."
)
_EXPIRED_RV = "The resourceVersion for the provided list is too old."


def encode_continue(rv: int, start: str) -> str:
    token = json.dumps({"v": TOKEN_VERSION, "rv": rv, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    """(resourceVersion, start key); 400 Bad Request for a token this server did not make."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = json.loads(raw)
    except (binascii.Error, ValueError) as error:
        raise _bad_token(
            f"continue key is not valid: incorrect encoded start resourceVersion "
            f"(version {TOKEN_VERSION}): {error}"
        ) from None
    if not isinstance(decoded, dict) or decoded.get("v") != TOKEN_VERSION:
        version = decoded.get("v") if isinstance(decoded, dict) else None
        raise _bad_token(
            f"continue key is not valid: server does not recognize this encoded version {version}"
        )
    rv, start = decoded.get("rv"), decoded.get("start")
    if not isinstance(rv, int) or rv == 0:
        raise _bad_token(
            f"continue key is not valid: incorrect encoded start resourceVersion (version {TOKEN_VERSION})"
        )
    if not isinstance(start, str) or not start:
        raise _bad_token(f"continue key is not valid: encoded start key empty (version {TOKEN_VERSION})")
    if ".." in start.split("/") or start.startswith("/"):
        raise _bad_token("continue key is not valid")
    return rv, start


def _bad_token(why: str) -> E.ApiError:
    return E.bad_request(f"invalid continue token: {why}")


def _list_options_invalid(field: str, why: str) -> E.ApiError:
    return E.invalid_object("ListOptions", "meta.k8s.io", "", [E.forbidden_field(field, why)])


def _limit(text: str | None) -> int:
    if not text:
        return 0
    try:
        return max(int(text), 0)
    except ValueError:
        raise E.bad_request(
            f'invalid value for "limit": strconv.ParseInt: parsing "{text}": invalid syntax'
        ) from None


def _start_rv(query: Mapping[str, str], current: int) -> tuple[int, str]:
    """The resourceVersion to read at and the key to start from."""
    token, rv_text, match = (
        query.get("continue", ""),
        query.get("resourceVersion", ""),
        query.get("resourceVersionMatch", ""),
    )
    if match and not rv_text:
        raise _list_options_invalid(
            "resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided"
        )
    if token:
        if match:
            raise _list_options_invalid(
                "resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"
            )
        if rv_text not in ("", "0"):
            raise E.bad_request("specifying resource version is not allowed when using continue")
        return decode_continue(token)
    if match == "Exact":
        if rv_text == "0":
            raise _list_options_invalid(
                "resourceVersionMatch", 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'
            )
        try:
            return int(rv_text), ""
        except ValueError:
            raise E.bad_request(f"invalid resource version: {rv_text}") from None
    return current, ""


def list_objects(
    store: Store,
    rtype: ResourceType,
    namespace: str | None,
    matches: Callable[[Obj], bool],
    query: Mapping[str, str],
    *,
    selective: bool,
) -> Obj:
    """The `<Kind>List` answer to a list request, one page of it when `limit` is set."""
    limit = _limit(query.get("limit"))
    current = store.resource_version
    rv, start = _start_rv(query, current)
    read_at = current if rv in (LATEST, current) or rv > current else rv
    try:
        objects = (
            store.list(rtype.storage_key, namespace)
            if read_at == current
            else store.snapshot(rtype.storage_key, namespace, read_at)
        )
    except TooOld:
        if query.get("continue"):
            expired = E.gone(_EXPIRED_CONTINUE)
            expired.metadata["continue"] = encode_continue(LATEST, start)
            raise expired from None
        raise E.gone(_EXPIRED_RV) from None

    # Keys below the list's prefix: `name` in one namespace, `namespace/name` across them.
    keyed = [(etcd_key("" if namespace else namespace_of(obj), name_of(obj)), obj) for obj in objects]
    keyed = [(key, obj) for key, obj in keyed if key >= start]
    metadata: dict[str, Any] = {"resourceVersion": str(read_at)}
    items: list[Obj] = []
    last_key = ""
    for key, obj in keyed:
        if limit and len(items) >= limit:  # a full page, and more keys follow
            metadata["continue"] = encode_continue(read_at, last_key + "\x00")
            if not selective:
                metadata["remainingItemCount"] = len(keyed) - limit
            break
        last_key = key
        if matches(obj):
            items.append(present(rtype, obj))
    return {
        "apiVersion": rtype.api_version,
        "kind": f"{rtype.kind}List",
        "metadata": metadata,
        "items": items,
    }
