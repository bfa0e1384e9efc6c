"""CRD structural schemas: pruning, defaulting and validation (OpenAPI v3, list types, CEL).

Covers what our CRDs use: type, nullable, required, enum, pattern, min/maxLength,
minimum/maximum (and exclusive forms), min/maxItems, format date-time, properties,
additionalProperties, items, default, x-kubernetes-preserve-unknown-fields,
x-kubernetes-int-or-string, x-kubernetes-list-type set/map uniqueness (`listtype`) and
x-kubernetes-validations (`cel`). A blocking schema error anywhere skips every CEL rule,
as in the API server. Messages follow the 1.30-1.34 servers (CEL failures name the value's
type: `Invalid value: "object": ...`).
Not covered: ratcheting of unchanged invalid values (CRDValidationRatcheting), allOf/anyOf/
oneOf/not, minProperties/maxProperties, multipleOf, uniqueItems, formats other than
date-time, x-kubernetes-embedded-resource.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime
from typing import Any

from zsp_operator.sim.cel import rule_errors
from zsp_operator.sim.errors import (
    BLOCKING_REASONS,
    RULES_NOT_CHECKED,
    FieldError,
    invalid,
    not_supported,
    required,
    too_long,
    too_many,
    type_name,
)
from zsp_operator.sim.listtype import list_type_errors

Schema = dict[str, Any]
_ROOT_KEPT = ("apiVersion", "kind", "metadata")


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


def validate(value: Any, schema: Schema, path: str = "") -> list[FieldError]:
    """Every OpenAPI violation of `schema` by `value` (not the list-type or CEL checks)."""
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
        errors += _array_errors(path, value, schema)
    if isinstance(value, dict):
        errors += _object_errors(path, value, schema)
    return errors


def _array_errors(path: str, value: list[Any], schema: Schema) -> list[FieldError]:
    errors: list[FieldError] = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        detail = f"{path} in body should have at least {schema['minItems']} items"
        errors.append(invalid(path, len(value), detail))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(too_many(path, len(value), schema["maxItems"]))
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            errors += validate(item, items, f"{path}[{index}]")
    return errors


def _object_errors(path: str, value: dict[str, Any], schema: Schema) -> list[FieldError]:
    errors: list[FieldError] = []
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
            errors += validate(item, sub, _child(path, key))
    return errors


# --- the whole object ---------------------------------------------------------------------------


def validate_object(obj: Any, schema: Schema, old: Any, earlier: list[FieldError]) -> list[FieldError]:
    """Schema, list-type and CEL causes, in the API server's order, after `earlier` (metadata) ones.

    The CEL rules are skipped, with one cause saying so, when any cause so far is blocking
    (required, enum, type, too long, too many); otherwise they all run, even next to
    minLength or pattern failures. List types are ratcheted: a stored object that already
    had duplicates is not held to them.
    """
    found = validate(obj, schema)
    if old is None or not list_type_errors(old, schema):
        found += list_type_errors(obj, schema)
    if any(error.reason in BLOCKING_REASONS for error in [*earlier, *found]):
        if _has_rules(schema):
            found.append(RULES_NOT_CHECKED)
        return found
    return found + rule_errors(obj, schema, old)


def _has_rules(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if schema.get("x-kubernetes-validations"):
        return True
    nested = [
        *(schema.get("properties") or {}).values(),
        schema.get("items"),
        schema.get("additionalProperties"),
    ]
    return any(_has_rules(sub) for sub in nested)


def version_schema(crd_version: dict[str, Any] | None) -> Schema | None:
    if not crd_version:
        return None
    schema = (crd_version.get("schema") or {}).get("openAPIV3Schema")
    return schema if isinstance(schema, dict) else None
