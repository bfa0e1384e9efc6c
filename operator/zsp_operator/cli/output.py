"""Printing as kubectl prints: aligned tables, human durations, `-o json|yaml|name`.

Pure functions only; the verbs decide what to print and where.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import yaml

from zsp_operator.core import constants as c

NONE = "<none>"  # what kubectl shows for an empty cell
_COLUMN_GAP = "   "

# `kubectl get accessrequests -o name` prints `accessrequest.zsp.dev/NAME`.
RESOURCE_NAME = f"{c.KIND_REQUEST.lower()}.{c.GROUP}"


def object_name(name: str) -> str:
    return f"{RESOURCE_NAME}/{name}"


def human_duration(delta: timedelta) -> str:
    """A duration the way `kubectl get` shows ages: `45s`, `3m20s`, `2h5m`, `3d4h`, `2y30d`.

    Precision drops as the value grows, so a column stays narrow; a slightly negative value
    (clock skew between client and server) reads as `0s`, anything earlier as `<invalid>`.
    """
    seconds = int(delta.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 10:
        return _two_units(minutes, "m", seconds % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return _two_units(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return _two_units(days, "d", hours % 24, "h")
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return _two_units(days // 365, "y", days % 365, "d")
    return f"{days // 365}y"


def _two_units(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}{small}{small_unit}" if small else f"{big}{big_unit}"


def age(since: datetime | None, now: datetime) -> str:
    return human_duration(now - since) if since is not None else NONE


def until(deadline: datetime | None, now: datetime) -> str:
    """Time left before `deadline`; `0s` once it has passed (never a negative age)."""
    if deadline is None:
        return NONE
    return human_duration(max(deadline - now, timedelta(0)))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart, no trailing blanks."""
    cells = [[h.upper() for h in headers], *[[cell or NONE for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        _COLUMN_GAP.join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells
    ]
    return "\n".join(line.rstrip() for line in lines)


def as_json(obj: Any) -> str:
    return json.dumps(obj, indent=4, sort_keys=False)


def as_yaml(obj: Any) -> str:
    # Keep the field order the API server returned, as kubectl does.
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).rstrip("\n")


def dump(obj: Any, fmt: str) -> str:
    """An object or list in `json` or `yaml`."""
    if fmt == "json":
        return as_json(obj)
    if fmt == "yaml":
        return as_yaml(obj)
    raise ValueError(f"unknown output format {fmt!r}")


def as_list(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several objects the way `kubectl get -o json` wraps them."""
    return {"apiVersion": "v1", "kind": "List", "items": list(items), "metadata": {"resourceVersion": ""}}
