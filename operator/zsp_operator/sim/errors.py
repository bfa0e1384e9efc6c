"""Kubernetes `Status` errors with the codes, reasons and messages the real API server uses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GroupResource:
    """The `<plural>.<group>` pair that prefixes most API server messages."""

    group: str
    resource: str

    def __str__(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


@dataclass(frozen=True)
class FieldError:
    """One cause of a 422: Go's `field.Error`, rendered the way `ErrorBody()` does."""

    reason: str  # FieldValueRequired, FieldValueInvalid, ...
    field: str
    body: str  # "Required value", 'Invalid value: "x": must be ...'

    def __str__(self) -> str:
        return f"{self.field}: {self.body}" if self.field else self.body


def go_value(value: Any) -> str:
    """Render a bad value like Go's `%#v`-ish field errors: strings quoted, numbers bare."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, int):
        return str(value)
    if value is None:
        return '"null"'
    return json.dumps(type_name(value))


def go_syntax(value: Any) -> str:
    """Go's `%#v` of a decoded JSON value: `map[string]interface {}{"a":1}`, `[]interface {}{"x"}`."""
    if value is None:
        return "interface {}(nil)"
    if isinstance(value, dict):
        entries = ", ".join(
            f"{json.dumps(k, ensure_ascii=False)}:{go_syntax(v)}" for k, v in sorted(value.items())
        )
        return f"map[string]interface {{}}{{{entries}}}"
    if isinstance(value, list):
        return f"[]interface {{}}{{{', '.join(go_syntax(item) for item in value)}}}"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return go_value(value)


def go_float(value: float) -> str:
    """Go's `%v` of a float64 (shortest form, exponent from 1e21 up)."""
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    mantissa, _, exponent = text.partition("e")
    if not exponent:
        return text
    sign = "-" if exponent.startswith("-") else "+"
    return f"{mantissa}e{sign}{exponent.lstrip('+-').zfill(2)}"


def type_name(value: Any) -> str:
    """The OpenAPI type name of a JSON value ("object", "array", "string", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", path, "Required value" + (f": {detail}" if detail else ""))


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", path, f"Invalid value: {go_value(value)}: {detail}")


def type_invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueTypeInvalid", path, f"Invalid value: {go_value(value)}: {detail}")


def not_supported(path: str, value: Any, allowed: list[Any]) -> FieldError:
    choices = ", ".join(go_value(choice) for choice in allowed)
    return FieldError(
        "FieldValueNotSupported", path, f"Unsupported value: {go_value(value)}: supported values: {choices}"
    )


def duplicate(path: str, value: Any) -> FieldError:
    """`Duplicate value: <v>`, the value printed as Go's ErrorBody prints it (maps in `%#v`)."""
    shown = go_syntax(value) if isinstance(value, dict | list) else go_value(value)
    return FieldError("FieldValueDuplicate", path, f"Duplicate value: {shown}")


def forbidden_field(path: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", path, f"Forbidden: {detail}")


def too_many(path: str, actual: int, limit: int) -> FieldError:
    return FieldError("FieldValueTooMany", path, f"Too many: {actual}: must have at most {limit} items")


def too_long(path: str, limit: int) -> FieldError:
    return FieldError("FieldValueTooLong", path, f"Too long: may not be more than {limit} bytes")


# Schema errors that stop x-kubernetes-validations from running (apiextensions' hasBlockingErr).
BLOCKING_REASONS = frozenset(
    {
        "FieldValueNotSupported",
        "FieldValueRequired",
        "FieldValueTooLong",
        "FieldValueTooMany",
        "FieldValueTypeInvalid",
    }
)
RULES_NOT_CHECKED = FieldError(
    "FieldValueInvalid",
    "<nil>",
    'Invalid value: "null": some validation rules were not checked because the object was invalid; '
    "correct the existing errors to complete validation",
)


@dataclass
class ApiError(Exception):
    """An error answered as a `Status` object."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)  # the Status's ListMeta (a continue token)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.metadata),
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _details(gr: GroupResource, name: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": gr.resource}
    if name:
        details["name"] = name
    if gr.group:
        details["group"] = gr.group
    details.update(extra)
    return details


def not_found(gr: GroupResource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{gr} "{name}" not found', _details(gr, name))


def already_exists(gr: GroupResource, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{gr} "{name}" already exists', _details(gr, name))


def conflict(gr: GroupResource, name: str, why: str) -> ApiError:
    return ApiError(
        409, "Conflict", f'Operation cannot be fulfilled on {gr} "{name}": {why}', _details(gr, name)
    )


STALE = "the object has been modified; please apply your changes to the latest version and try again"


def stale(gr: GroupResource, name: str) -> ApiError:
    return conflict(gr, name, STALE)


def forbidden(gr: GroupResource, name: str, why: str) -> ApiError:
    if gr.resource:
        subject = f'{gr} "{name}"' if name else str(gr)
        message = f"{subject} is forbidden: {why}"
    else:
        message = f"forbidden: {why}"
    return ApiError(403, "Forbidden", message, _details(gr, name) if gr.resource else {})


def invalid_object(kind: str, group: str, name: str, causes: list[FieldError]) -> ApiError:
    """422 Invalid, worded as `Kind.group "name" is invalid: <cause>` or `[<a>, <b>]`."""
    qualified = f"{kind}.{group}" if group else kind
    rendered = [str(cause) for cause in causes]
    joined = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    details: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "causes": [{"reason": cause.reason, "message": cause.body, "field": cause.field} for cause in causes],
    }
    if group:
        details["group"] = group
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {joined}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def not_acceptable_media(message: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def internal(message: str) -> ApiError:
    return ApiError(
        500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]}
    )


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})
