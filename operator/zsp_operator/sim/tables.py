"""Server-side printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), as `kubectl get` asks.

Custom resources get what apiextensions' table convertor gives: Name, then the version's
additionalPrinterColumns in order (an Age column when there are none). Cells follow the
column type: `date` cells are the time since the timestamp (`4m12s`, `3h`; a future
time is `<invalid>`, as on a real server), `integer`/`number`/`boolean` cells are
JSON values of that type or null, `string` cells print whatever the JSONPath finds.
Built-in kinds get the columns of `printers`. Rows carry `PartialObjectMetadata`
(`includeObject=Metadata`, the default), the whole object (`Object`) or nothing (`None`).
Watches asked for Tables get one-row Tables per event, column headers on the first only.
"""

from __future__ import annotations

import json
import re
from typing import Any

from zsp_operator.sim.errors import go_float
from zsp_operator.sim.printers import CREATED_DESCRIPTION, NAME_DESCRIPTION, builtin_columns, since
from zsp_operator.sim.resources import ResourceType

Obj = dict[str, Any]
DEFAULT_COLUMNS = [
    {
        "name": "Age",
        "type": "date",
        "description": CREATED_DESCRIPTION,
        "jsonPath": ".metadata.creationTimestamp",
    }
]
_TABLE_VERSIONS = ("v1", "v1beta1")


def table_version(accept: str) -> str | None:
    """The meta.k8s.io version of the Table `accept` asks for, if its first usable JSON type is one."""
    for media_range in accept.split(","):
        kind, *params = (part.strip() for part in media_range.split(";"))
        options = dict(param.partition("=")[::2] for param in params)
        if kind not in ("application/json", "application/*", "*/*"):
            continue
        if "as" not in options:
            return None  # plain JSON comes first
        if (
            options["as"] == "Table"
            and options.get("g") == "meta.k8s.io"
            and options.get("v") in _TABLE_VERSIONS
        ):
            return options["v"]
    return None


# --- JSONPath (the subset printer columns use) -----------------------------------------------------

_STEP = re.compile(
    r"\.(?P<field>[A-Za-z0-9_\-]+)"
    r"|\[(?P<index>-?\d+)\]"
    r"|\[\*\]"
    r"|\['(?P<quoted>[^']*)'\]"
    r"|\[\?\(@\.(?P<key>[A-Za-z0-9_.\-]+)\s*==\s*[\"'](?P<want>[^\"']*)[\"']\)\]"
)


def json_path(obj: Any, path: str) -> list[Any]:
    """Every value `path` finds: `.a.b`, `['a.b']`, `[0]`, `[*]`, `[?(@.type=="Ready")]`."""
    values = [obj]
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    position = 0
    while position < len(text):
        step = _STEP.match(text, position)
        if step is None:
            return []
        position = step.end()
        values = [found for value in values for found in _step(value, step)]
    return values


def _step(value: Any, step: re.Match[str]) -> list[Any]:
    name = step.group("field") or step.group("quoted")
    if name is not None:
        return [value[name]] if isinstance(value, dict) and name in value else []
    if not isinstance(value, list):
        return []
    if step.group("index") is not None:
        index = int(step.group("index"))
        return [value[index]] if -len(value) <= index < len(value) else []
    if step.group("key") is not None:
        return [
            item for item in value if _text(json_path(item, "." + step.group("key"))) == step.group("want")
        ]
    return list(value)


def _text(found: list[Any]) -> str | None:
    return printed(found[0]) if found else None


def printed(value: Any) -> str | None:
    """A value as client-go's JSONPath prints it: strings raw, objects and lists as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return str(value)


def cell(column_type: str, value: Any, now: float) -> Any:
    """apiextensions' cellForJSONValue (and the string printing before it)."""
    if value is None:
        return None
    if column_type == "string":
        return printed(value)
    if column_type == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if column_type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if column_type == "date" and isinstance(value, str):
        return since(value, now)
    return None


# --- tables ----------------------------------------------------------------------------------------


def _definition(name: str, type_: str, description: str, fmt: str = "", priority: int = 0) -> Obj:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


def crd_columns(rtype: ResourceType) -> list[Obj]:
    return list((rtype.crd_version or {}).get("additionalPrinterColumns") or []) or DEFAULT_COLUMNS


def _row_object(obj: Obj, include: str, version: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": obj["metadata"],
    }


def as_table(
    rtype: ResourceType, body: Obj, now: float, *, version: str = "v1", include: str = "Metadata"
) -> Obj:
    """The Table for one object or a list `body`."""
    if rtype.custom:
        columns = crd_columns(rtype)
        definitions = [_definition("Name", "string", NAME_DESCRIPTION, "name")]
        definitions += [
            _definition(
                c["name"],
                c.get("type", "string"),
                c.get("description")
                or f"Custom resource definition column (in JSONPath format): {c['jsonPath']}",
                c.get("format", ""),
                int(c.get("priority", 0)),
            )
            for c in columns
        ]

        def cells(obj: Obj) -> list[Any]:
            found = [json_path(obj, c.get("jsonPath", "")) for c in columns]
            values = [
                cell(c.get("type", "string"), v[0] if v else None, now)
                for c, v in zip(columns, found, strict=True)
            ]
            return [obj["metadata"].get("name", ""), *values]
    else:
        printer = builtin_columns(rtype)
        definitions = [
            _definition(
                c.name,
                c.type,
                c.description,
                "name" if c.name == "Name" and not c.priority else "",
                c.priority,
            )
            for c in printer
        ]

        def cells(obj: Obj) -> list[Any]:
            return [c.value(obj, now) for c in printer]

    items = body["items"] if "items" in body and body.get("kind", "").endswith("List") else [body]
    rows = []
    for obj in items:
        row: Obj = {"cells": cells(obj)}
        shown = _row_object(obj, include, version)
        if shown is not None:
            row["object"] = shown
        rows.append(row)
    listed = body.get("metadata") or {}
    metadata = {k: listed[k] for k in ("resourceVersion", "continue", "remainingItemCount") if k in listed}
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    }
