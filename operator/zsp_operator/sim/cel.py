"""x-kubernetes-validations: CEL rules of CRD schemas, evaluated with cel-python.

Like the API server, a node's own rules run before those of its children; `self` is the
node's value (at the root, `self.metadata` holds only name and generateName) and
`oldSelf` the stored value, when one can be correlated: same property, same key of a
`map` list. Transition rules (those naming `oldSelf`) run on updates only. Children under
`additionalProperties` are addressed as `field[key]`.

`duration()` reads Go durations (`1h30m`, `10µs`). Not covered: the Kubernetes CEL libraries
(quantity, url, ip, format, lists, regex, authz, ...), cost limits, compile-time type checks,
`optionalOldSelf`, ratcheting, and rule compile errors reported at CRD creation.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import celpy
from celpy.adapter import json_to_cel

from zsp_operator.sim.errors import FieldError, type_name

Schema = dict[str, Any]
_OLD_SELF = re.compile(r"\boldSelf\b")
_CEL = celpy.Environment()
_ROOT_METADATA = ("name", "generateName")


def rule_errors(value: Any, schema: Schema, old: Any = None, path: str = "") -> list[FieldError]:
    """Every failed rule in `value`, parents before children."""
    if value is None:
        return []
    errors: list[FieldError] = []
    if schema.get("x-kubernetes-validations"):
        errors += _node_errors(path, value, schema, old)
    if isinstance(value, dict):
        old_map = old if isinstance(old, dict) else {}
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if not path and key == "metadata":
                continue
            if key in properties:
                errors += rule_errors(
                    item, properties[key], old_map.get(key), f"{path}.{key}" if path else key
                )
            elif isinstance(additional, dict):
                errors += rule_errors(item, additional, old_map.get(key), f"{path}[{key}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        old_items = correlate(value, old, schema)
        for index, item in enumerate(value):
            errors += rule_errors(item, schema["items"], old_items[index], f"{path}[{index}]")
    return errors


def correlate(value: list[Any], old: Any, schema: Schema) -> list[Any]:
    """Old element for each new one: only map-lists correlate (by their keys), as in Kubernetes."""
    keys = schema.get("x-kubernetes-list-map-keys")
    if schema.get("x-kubernetes-list-type") != "map" or not keys or not isinstance(old, list):
        return [None] * len(value)

    def key_of(item: Any) -> tuple[Any, ...] | None:
        return tuple(item.get(k) for k in keys) if isinstance(item, dict) else None

    old_by_key = {key_of(item): item for item in old}
    return [old_by_key.get(key_of(item)) for item in value]


def _duration(value: Any) -> Any:
    """CEL's duration() as Go's time.ParseDuration reads it: `µs` and `μs` are microseconds too."""
    if isinstance(value, celpy.celtypes.StringType):
        value = celpy.celtypes.StringType(str(value).replace("\u00b5s", "us").replace("\u03bcs", "us"))
    return celpy.celtypes.DurationType(value)


@lru_cache(maxsize=512)
def _program(rule: str) -> Any:
    return _CEL.program(_CEL.compile(rule), functions={"duration": _duration})


def _evaluate(rule: str, activation: dict[str, Any]) -> Any:
    try:
        return _program(rule).evaluate(activation)
    except Exception as error:
        return error


def _as_self(value: Any, root: bool) -> Any:
    if root and isinstance(value, dict) and isinstance(value.get("metadata"), dict):
        metadata = {k: v for k, v in value["metadata"].items() if k in _ROOT_METADATA}
        value = {**value, "metadata": metadata}
    return json_to_cel(value)


def _node_errors(path: str, value: Any, schema: Schema, old: Any) -> list[FieldError]:
    errors: list[FieldError] = []
    activation: dict[str, Any] = {"self": _as_self(value, not path)}
    if old is not None:
        activation["oldSelf"] = _as_self(old, not path)
    for rule in schema.get("x-kubernetes-validations") or []:
        expression = rule.get("rule", "")
        if _OLD_SELF.search(expression) and old is None:
            continue  # transition rules only run on updates that have an old value
        result = _evaluate(expression, activation)
        if isinstance(result, celpy.celtypes.BoolType) and bool(result):
            continue
        errors.append(_failure(path, value, rule, activation, result))
    return errors


def _failure(
    path: str, value: Any, rule: dict[str, Any], activation: dict[str, Any], result: Any
) -> FieldError:
    message = rule.get("message") or f"failed rule: {rule.get('rule', '')}"
    if rule.get("messageExpression"):
        rendered = _evaluate(rule["messageExpression"], activation)
        if isinstance(rendered, celpy.celtypes.StringType) and str(rendered).strip():
            message = str(rendered)
    if isinstance(result, Exception) and not rule.get("message"):
        message = f"{message}: {result}"
    field_path = path
    if rule.get("fieldPath"):
        field_path = path + rule["fieldPath"] if path else rule["fieldPath"].lstrip(".")
    reason = rule.get("reason", "FieldValueInvalid")
    if reason == "FieldValueForbidden":
        return FieldError(reason, field_path, f"Forbidden: {message}")
    if reason == "FieldValueRequired":
        return FieldError(reason, field_path, f"Required value: {message}")
    if reason == "FieldValueDuplicate":  # the value, not the message, as field.Duplicate prints it
        return FieldError(reason, field_path, f'Duplicate value: "{type_name(value)}"')
    return FieldError("FieldValueInvalid", field_path, f'Invalid value: "{type_name(value)}": {message}')
