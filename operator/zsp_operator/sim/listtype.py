"""`x-kubernetes-list-type` invariants of CRD schemas: `set` items and `map` keys are unique.

As the API server does it: every repeated item (set) or key (map) after its first
occurrence is a `Duplicate value` cause at its index, the key printed as a Go map
(`map[string]interface {}{"name":"deploy"}`). Lists under `additionalProperties` are
addressed as `field[key]`. On update, lists are only checked when the stored object
had no such duplicates itself (ratcheting).
"""

from __future__ import annotations

import json
from typing import Any

from zsp_operator.sim.errors import FieldError, duplicate, invalid, type_name

Schema = dict[str, Any]
_UNSPECIFIED = object()  # a map-list item without its key (or a null item)


def list_type_errors(value: Any, schema: Schema, path: str = "") -> list[FieldError]:
    """Duplicates in `set` and `map` lists anywhere in `value`."""
    if not isinstance(value, dict):
        return []
    errors: list[FieldError] = []
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        for key, item in value.items():
            errors += _walk(item, additional, f"{path}[{key}]")
    properties = schema.get("properties") or {}
    for key, item in value.items():
        if key in properties:
            errors += _walk(item, properties[key], f"{path}.{key}" if path else key)
    return errors


def _walk(value: Any, schema: Schema, path: str) -> list[FieldError]:
    if isinstance(value, dict):
        return list_type_errors(value, schema, path)
    if not isinstance(value, list):
        return []
    errors: list[FieldError] = []
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        errors += [duplicate(f"{path}[{i}]", value[i]) for i in _repeats(value)]
    elif list_type == "map":
        errors += _map_errors(value, schema.get("x-kubernetes-list-map-keys") or [], path)
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            errors += _walk(item, items, f"{path}[{index}]")
    return errors


def _identity(value: Any) -> Any:
    """What makes two items equal: compound values by their JSON, scalars by type and value."""
    if value is _UNSPECIFIED:
        return ("unspecified",)
    if isinstance(value, dict | list):
        return ("compound", json.dumps(value, sort_keys=True, separators=(",", ":")))
    return (type_name(value), value)


def _repeats(items: list[Any]) -> list[int]:
    """Indexes of the second occurrence of each repeated item (later ones are not reported)."""
    seen: dict[Any, int] = {}
    repeats = []
    for index, item in enumerate(items):
        identity = _identity(item)
        seen[identity] = seen.get(identity, 0) + 1
        if seen[identity] == 2:
            repeats.append(index)
    return repeats


def _map_errors(items: list[Any], keys: list[str], path: str) -> list[FieldError]:
    for index, item in enumerate(items):
        if item is not None and not isinstance(item, dict):
            return [invalid(f"{path}[{index}]", item, "must be an object for an array of list-type map")]
    if len(keys) == 1:
        field = keys[0]
        singles = [
            item.get(field, _UNSPECIFIED) if isinstance(item, dict) else _UNSPECIFIED for item in items
        ]
        return [
            duplicate(f"{path}[{i}]", {} if singles[i] is _UNSPECIFIED else {field: singles[i]})
            for i in _repeats(singles)
        ]
    compound = [{k: item[k] for k in keys if k in item} if isinstance(item, dict) else {} for item in items]
    return [duplicate(f"{path}[{i}]", compound[i]) for i in _repeats(compound)]
