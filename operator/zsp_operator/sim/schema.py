"""CRD structural schemas: pruning, defaulting and validation (OpenAPI v3 + CEL rules).

Covers what our CRDs use: type, nullable, required, enum, pattern, min/maxLength,
minimum/maximum (and exclusive forms), min/maxItems, format date-time, properties,
additionalProperties, items, default, x-kubernetes-preserve-unknown-fields,
x-kubernetes-int-or-string, and x-kubernetes-validations (rule, message,
messageExpression, reason, fieldPath) with `self` and `oldSelf` via cel-python.
Not covered: ratcheting of unchanged invalid values, list-type set/map uniqueness,
Kubernetes-specific CEL libraries (quantity, url, ip, ...), CEL cost limits.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime
from functools import lru_cache
from typing import Any

import celpy
from celpy.adapter import json_to_cel

from zsp_operator.sim.errors import (
    FieldError,
    invalid,
    not_supported,
    required,
    too_long,
    too_many,
    type_name,
)

Schema = dict[str, Any]
_ROOT_KEPT = ("apiVersion", "kind", "metadata")
_OLD_SELF = re.compile(r"\boldSelf\b")
_CEL = celpy.Environment()


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _preserves(schema: Schema) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields")) or bool(
        schema.get("x-kubernetes-int-or-string")
    )


# --- pruning ------------------------------------------------------------------------------------


def prune(value: Any, schema: Schema, path: str = "") -> list[str]:
    """Drop fields the schema does not declare, in place; return their paths.

    Nulls of non-nullable properties are dropped silently (defaulting may then fill them).
    """
    dropped: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key in list(value):
            if not path and key in _ROOT_KEPT:
                continue
            if properties is not None and key in properties:
                if value[key] is None and not properties[key].get("nullable"):
                    del value[key]
                    continue
                dropped += prune(value[key], properties[key], _child(path, key))
            elif isinstance(additional, dict):
                dropped += prune(value[key], additional, _child(path, key))
            elif not _preserves(schema) and additional is not True:
                del value[key]
                dropped.append(_child(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            dropped += prune(item, schema["items"], f"{path}[{index}]")
    return dropped


# --- defaulting ---------------------------------------------------------------------------------


def apply_defaults(value: Any, schema: Schema, path: str = "") -> None:
    """Fill absent (or null, when not nullable) properties that have a `default`, in place."""
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if not path and key == "metadata":
                continue
            missing = key not in value or (value[key] is None and not sub.get("nullable"))
            if missing and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(value[key], sub, _child(path, key))
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key, item in value.items():
                if key not in (schema.get("properties") or {}):
                    apply_defaults(item, additional, _child(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"], path)


# --- validation ---------------------------------------------------------------------------------


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        if isinstance(value, float):
            return value.is_integer()
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


def _type_error(path: str, expected: str, value: Any) -> FieldError:
    actual = type_name(value)
    return FieldError(
        "FieldValueTypeInvalid",
        path,
        f'Invalid value: "{actual}": {path} in body must be of type {expected}: "{actual}"',
    )


def _is_date_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return "T" in text.upper()


def _scalar_errors(path: str, value: Any, schema: Schema) -> list[FieldError]:
    errors: list[FieldError] = []
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            detail = f"{path} in body should be at least {schema['minLength']} chars long"
            errors.append(invalid(path, value, detail))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(too_long(path, schema["maxLength"]))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(invalid(path, value, f"{path} in body should match '{schema['pattern']}'"))
        if schema.get("format") == "date-time" and not _is_date_time(value):
            errors.append(invalid(path, value, f'{path} in body must be of type date-time: "{value}"'))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema:
            exclusive = schema.get("exclusiveMinimum") is True
            if value < schema["minimum"] or (exclusive and value == schema["minimum"]):
                word = "greater than" if exclusive else "greater than or equal to"
                errors.append(invalid(path, value, f"{path} in body should be {word} {schema['minimum']}"))
        if "maximum" in schema:
            exclusive = schema.get("exclusiveMaximum") is True
            if value > schema["maximum"] or (exclusive and value == schema["maximum"]):
                word = "less than" if exclusive else "less than or equal to"
                errors.append(invalid(path, value, f"{path} in body should be {word} {schema['maximum']}"))
    return errors


def validate(value: Any, schema: Schema, old: Any = None, path: str = "") -> list[FieldError]:
    """Every violation of `schema` by `value`; `old` is the stored value for transition rules."""
    if value is None:
        if schema.get("nullable") or "type" not in schema:
            return []
        return [_type_error(path, schema["type"], value)]
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _type_ok("integer", value)):
            return [_type_error(path, "integer-or-string", value)]
    elif "type" in schema and not _type_ok(schema["type"], value):
        return [_type_error(path, schema["type"], value)]

    errors: list[FieldError] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(not_supported(path, value, schema["enum"]))
    errors += _scalar_errors(path, value, schema)
    if isinstance(value, list):
        errors += _array_errors(path, value, schema, old)
    if isinstance(value, dict):
        errors += _object_errors(path, value, schema, old)
    if not errors and schema.get("x-kubernetes-validations"):
        errors += _rule_errors(path, value, schema, old)
    return errors


def _array_errors(path: str, value: list[Any], schema: Schema, old: Any) -> list[FieldError]:
    errors: list[FieldError] = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        detail = f"{path} in body should have at least {schema['minItems']} items"
        errors.append(invalid(path, value, detail))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(too_many(path, len(value), schema["maxItems"]))
    items = schema.get("items")
    if isinstance(items, dict):
        old_items = _correlate(value, old, schema)
        for index, item in enumerate(value):
            errors += validate(item, items, old_items[index], f"{path}[{index}]")
    return errors


def _correlate(value: list[Any], old: Any, schema: Schema) -> list[Any]:
    """Old element for each new one: only map-lists correlate (by their keys), as in Kubernetes."""
    keys = schema.get("x-kubernetes-list-map-keys")
    if schema.get("x-kubernetes-list-type") != "map" or not keys or not isinstance(old, list):
        return [None] * len(value)

    def key_of(item: Any) -> tuple[Any, ...] | None:
        return tuple(item.get(k) for k in keys) if isinstance(item, dict) else None

    old_by_key = {key_of(item): item for item in old}
    return [old_by_key.get(key_of(item)) for item in value]


def _object_errors(path: str, value: dict[str, Any], schema: Schema, old: Any) -> list[FieldError]:
    errors: list[FieldError] = []
    old_map = old if isinstance(old, dict) else {}
    properties = schema.get("properties") or {}
    for key in schema.get("required") or []:
        if key not in value:
            errors.append(required(_child(path, key)))
    for key, item in value.items():
        if not path and key == "metadata":
            continue
        sub = properties.get(key)
        if sub is None and isinstance(schema.get("additionalProperties"), dict):
            sub = schema["additionalProperties"]
        if sub is not None:
            errors += validate(item, sub, old_map.get(key), _child(path, key))
    return errors


# --- CEL rules ----------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _program(rule: str) -> Any:
    return _CEL.program(_CEL.compile(rule))


def _evaluate(rule: str, activation: dict[str, Any]) -> Any:
    try:
        return _program(rule).evaluate(activation)
    except Exception as error:
        return error


def _rule_errors(path: str, value: Any, schema: Schema, old: Any) -> list[FieldError]:
    errors: list[FieldError] = []
    activation: dict[str, Any] = {"self": json_to_cel(value)}
    if old is not None:
        activation["oldSelf"] = json_to_cel(old)
    for rule in schema.get("x-kubernetes-validations") or []:
        expression = rule.get("rule", "")
        if _OLD_SELF.search(expression) and old is None:
            continue  # transition rules only run on updates that have an old value
        result = _evaluate(expression, activation)
        if isinstance(result, celpy.celtypes.BoolType) and bool(result):
            continue
        errors.append(_rule_failure(path, value, rule, activation, result))
    return errors


def _rule_failure(
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
    if reason == "FieldValueDuplicate":
        return FieldError(reason, field_path, f"Duplicate value: {message}")
    return FieldError("FieldValueInvalid", field_path, f'Invalid value: "{type_name(value)}": {message}')


# --- the whole object ---------------------------------------------------------------------------


def version_schema(crd_version: dict[str, Any] | None) -> Schema | None:
    if not crd_version:
        return None
    schema = (crd_version.get("schema") or {}).get("openAPIV3Schema")
    return schema if isinstance(schema, dict) else None
