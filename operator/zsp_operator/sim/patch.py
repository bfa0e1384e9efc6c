"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902) over plain JSON values."""

from __future__ import annotations

import copy
from typing import Any

from zsp_operator.sim import errors as E

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class PatchError(Exception):
    """The patch cannot be applied; the message is shown to the client."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"JSON pointer must start with '/': {pointer!r}")
    return [_unescape(token) for token in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool) -> int:
    if for_add and token == "-":
        return len(container)
    if not token.isdigit():
        raise PatchError(f"invalid array index {token!r}")
    index = int(token)
    upper = len(container) if for_add else len(container) - 1
    if index > upper:
        raise PatchError(f"array index {index} out of bounds")
    return index


def _walk(document: Any, tokens: list[str], pointer: str) -> Any:
    node = document
    for token in tokens:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_add=False)]
        else:
            raise PatchError(f"doc is missing path: {pointer!r}")
    return node


def _parent(document: Any, tokens: list[str], pointer: str) -> Any:
    return _walk(document, tokens[:-1], pointer)


def _get(document: Any, pointer: str) -> Any:
    return _walk(document, _split_pointer(pointer), pointer)


def _add(document: Any, pointer: str, value: Any) -> Any:
    tokens = _split_pointer(pointer)
    if not tokens:
        return value
    parent = _parent(document, tokens, pointer)
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, tokens[-1], for_add=True), value)
    else:
        raise PatchError(f"doc is missing path: {pointer!r}")
    return document


def _remove(document: Any, pointer: str) -> Any:
    tokens = _split_pointer(pointer)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(document, tokens, pointer)
    if isinstance(parent, dict):
        if tokens[-1] not in parent:
            raise PatchError(f"Unable to remove nonexistent key: {tokens[-1]}: missing value")
        del parent[tokens[-1]]
    elif isinstance(parent, list):
        del parent[_index(parent, tokens[-1], for_add=False)]
    else:
        raise PatchError(f"doc is missing path: {pointer!r}")
    return document


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902 over a copy of `document`; a failing `test` raises PatchError."""
    if not isinstance(operations, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError(f"invalid JSON patch operation: {operation!r}")
        op, path = operation["op"], operation["path"]
        if op in ("add", "replace", "test") and "value" not in operation:
            raise PatchError(f"missing value for {op} operation on {path}")
        if op == "add":
            result = _add(result, path, copy.deepcopy(operation["value"]))
        elif op == "remove":
            result = _remove(result, path)
        elif op == "replace":
            _get(result, path)  # replace requires the target to exist
            if _split_pointer(path):
                result = _remove(result, path)
            result = _add(result, path, copy.deepcopy(operation["value"]))
        elif op in ("move", "copy"):
            value = copy.deepcopy(_get(result, operation.get("from", "")))
            if op == "move":
                result = _remove(result, operation["from"])
            result = _add(result, path, value)
        elif op == "test":
            try:
                actual = _get(result, path)
            except PatchError:
                actual = None
            if actual != operation["value"]:
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"Unexpected kind: {op}")
    return result


def apply_patch(current: dict[str, Any], content_type: str, patch: Any, *, custom: bool) -> dict[str, Any]:
    """Apply a PATCH body by its media type, failing like the API server does.

    Strategic merge patch (built-in kinds only, as in Kubernetes) is applied as a merge
    patch: lists are replaced rather than merged by key, which is what our clients rely on.
    Server-side apply is not supported (415).
    """
    media = content_type.split(";")[0].strip().lower()
    try:
        if media == JSON_PATCH:
            patched = json_patch(current, patch)
        elif media == MERGE_PATCH or (media == STRATEGIC_PATCH and not custom):
            patched = merge_patch(current, patch)
        elif media == APPLY_PATCH:
            raise E.not_acceptable_media(
                "server-side apply (application/apply-patch+yaml) is not supported by the in-memory API server"
            )
        else:
            accepted = f"{JSON_PATCH}, {MERGE_PATCH}" + ("" if custom else f", {STRATEGIC_PATCH}")
            raise E.not_acceptable_media(
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{accepted}, {APPLY_PATCH}"
            )
    except PatchError as error:
        if media == JSON_PATCH and not isinstance(patch, list):
            raise E.bad_request(str(error)) from error
        raise E.ApiError(422, "Invalid", str(error)) from error
    if not isinstance(patched, dict):
        raise E.bad_request("the patch did not produce an object")
    return patched
