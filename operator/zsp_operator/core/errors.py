"""Turn validation failures into one-line messages that name the object, the field and the fix."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

_FIXES = {
    "missing": "this field is required",
    "extra_forbidden": "unknown field: remove it or check its spelling against the API",
    "string_too_short": "must not be empty",
    "too_short": "needs at least one item",
}


def field_path(loc: tuple[int | str, ...]) -> str:
    """`('spec', 'grantee', 0, 'name')` -> `spec.grantee[0].name`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith(("function-", "function_")):
            continue  # pydantic's wrapper frames say nothing to a user
        else:
            path += f".{part}" if path else part
    return path or "(top level)"


def describe(err: ValidationError, source: str, prefix: tuple[str, ...] = ()) -> list[str]:
    """One message per problem: `<source>: <field>: <what is wrong and how to fix it>`."""
    messages = []
    for problem in err.errors(include_url=False):
        loc = prefix + tuple(problem["loc"])
        text = _FIXES.get(problem["type"]) or str(problem["msg"]).removeprefix("Value error, ")
        messages.append(f"{source}: {field_path(loc)}: {text}")
    return messages


M = TypeVar("M", bound=BaseModel)


class InvalidObject(ValueError):
    """An object failed validation; `messages` holds one line per problem."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def parse(model: type[M], data: Any, source: str) -> M:
    """Validate `data` as `model`, raising InvalidObject with field-naming messages."""
    if not isinstance(data, dict):
        raise InvalidObject([f"{source}: expected a mapping (an object), got {type(data).__name__}"])
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise InvalidObject(describe(err, source)) from err
