"""Server-side printing (`as=Table`) so that `kubectl get` shows rows: Name, printer columns, Age."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from zsp_operator.sim.resources import ResourceType


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def _age(created: str | None, now: float) -> str:
    if not created:
        return "<unknown>"
    seconds = int(now - datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _json_path(obj: Any, path: str) -> Any:
    """The simple `.a.b` JSONPaths printer columns use; anything fancier prints empty."""
    value = obj
    for part in path.strip().lstrip(".").split("."):
        if not part:
            continue
        value = value.get(part) if isinstance(value, dict) else None
    return value


def as_table(rtype: ResourceType, body: dict[str, Any], now: float) -> dict[str, Any]:
    columns = (rtype.crd_version or {}).get("additionalPrinterColumns") or []
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    definitions += [
        {"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
         "description": c.get("description", ""), "priority": c.get("priority", 0)}
        for c in columns if c.get("type") != "date"
    ]
    definitions.append({"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0})
    items = body.get("items", [body])
    rows = []
    for obj in items:
        cells: list[Any] = [obj["metadata"]["name"]]
        cells += [_json_path(obj, c.get("jsonPath", "")) for c in columns if c.get("type") != "date"]
        cells.append(_age(obj["metadata"].get("creationTimestamp"), now))
        rows.append({"cells": cells, "object": {
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}})
    metadata = {"resourceVersion": body.get("metadata", {}).get("resourceVersion", "")}
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": definitions, "rows": rows}
