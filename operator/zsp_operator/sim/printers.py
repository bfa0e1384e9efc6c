"""Table columns of the built-in kinds, after kube-apiserver's printers, and the time cells.

Every cell is sent, the `priority: 1` ones too (kubectl shows those with `-o wide`).
Kinds without a printer here get Name and Age; on a real server Pods, Deployments,
ReplicaSets, Jobs, Services and EndpointSlices have richer printers than that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from zsp_operator.sim.resources import ResourceType

Obj = dict[str, Any]
NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically. "
    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
CREATED_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. "
    "It is not guaranteed to be set in happens-before order across separate operations. Clients may "
    "not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. "
    "Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)


def human_duration(seconds: float) -> str:
    """apimachinery's `duration.HumanDuration`: ~2-3 significant figures, `<invalid>` if negative."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        return f"{minutes}m" if whole % 60 == 0 else f"{minutes}m{whole % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def parse_time(timestamp: Any) -> datetime | None:
    """An RFC 3339 timestamp (with zone), or None."""
    text = str(timestamp)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None and "T" in text.upper() else None


def since(timestamp: Any, now: float) -> str:
    """A date cell: `<unknown>` when empty, `<invalid>` when not RFC 3339 (or in the future)."""
    if not timestamp:
        return "<unknown>"
    moment = parse_time(timestamp)
    return "<invalid>" if moment is None else human_duration(now - moment.timestamp())


def _created_at(obj: Obj) -> str:
    moment = parse_time(obj["metadata"].get("creationTimestamp"))
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    value: Callable[[Obj, float], Any]
    priority: int = 0
    description: str = ""


NAME = Column(
    "Name", "string", lambda obj, now: obj["metadata"].get("name", ""), description=NAME_DESCRIPTION
)
AGE = Column(
    "Age",
    "string",
    lambda obj, now: since(obj["metadata"].get("creationTimestamp"), now),
    description=CREATED_DESCRIPTION,
)
CREATED_AT = Column("Created At", "date", lambda obj, now: _created_at(obj), description=CREATED_DESCRIPTION)
_DEFAULT = (NAME, AGE)


def _subjects(kind: str) -> Callable[[Obj, float], str]:
    def names(obj: Obj, now: float) -> str:
        subjects = [s for s in obj.get("subjects") or [] if s.get("kind") == kind]
        if kind == "ServiceAccount":
            return ", ".join(f"{s.get('namespace', '')}:{s.get('name', '')}" for s in subjects)
        return ", ".join(str(s.get("name", "")) for s in subjects)

    return names


def _role(obj: Obj, now: float) -> str:
    ref = obj.get("roleRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


_BINDING = (
    NAME,
    Column("Role", "string", _role),
    AGE,
    Column("Users", "string", _subjects("User"), 1),
    Column("Groups", "string", _subjects("Group"), 1),
    Column("ServiceAccounts", "string", _subjects("ServiceAccount"), 1),
)


def _event_first(obj: Obj, now: float) -> str:
    return since(obj.get("firstTimestamp") or obj.get("eventTime"), now)


def _event_last(obj: Obj, now: float) -> str:
    series = obj.get("series") or {}
    if series.get("lastObservedTime"):
        return since(series["lastObservedTime"], now)
    return since(obj["lastTimestamp"], now) if obj.get("lastTimestamp") else _event_first(obj, now)


def _event_object(obj: Obj, now: float) -> str:
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    kind = str(involved.get("kind", "")).lower()
    return f"{kind}/{involved['name']}" if involved.get("name") else kind


def _event_source(obj: Obj, now: float) -> str:
    source = obj.get("source") or {}
    component = (
        source.get("component") or obj.get("reportingComponent") or obj.get("reportingController") or ""
    )
    host = source.get("host") or obj.get("reportingInstance") or ""
    return f"{component}, {host}" if host else str(component)


def _event_count(obj: Obj, now: float) -> int:
    series = obj.get("series") or {}
    return int(series.get("count") or obj.get("count") or obj.get("deprecatedCount") or 1)


_EVENTS = (
    Column("Last Seen", "string", _event_last),
    Column("Type", "string", lambda obj, now: obj.get("type", "")),
    Column("Reason", "string", lambda obj, now: obj.get("reason", "")),
    Column("Object", "string", _event_object),
    Column("Subobject", "string", lambda obj, now: (obj.get("involvedObject") or {}).get("fieldPath", ""), 1),
    Column("Source", "string", _event_source, 1),
    Column("Message", "string", lambda obj, now: str(obj.get("message") or obj.get("note") or "").strip()),
    Column("First Seen", "string", _event_first, 1),
    Column("Count", "string", _event_count, 1),
    Column("Name", "string", lambda obj, now: obj["metadata"].get("name", ""), 1),
)

PRINTERS: dict[tuple[str, str], tuple[Column, ...]] = {
    ("", "namespaces"): (
        NAME,
        Column("Status", "string", lambda obj, now: (obj.get("status") or {}).get("phase", "")),
        AGE,
    ),
    ("", "configmaps"): (
        NAME,
        Column(
            "Data", "integer", lambda obj, now: len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
        ),
        AGE,
    ),
    ("", "secrets"): (
        NAME,
        Column("Type", "string", lambda obj, now: obj.get("type", "")),
        Column("Data", "integer", lambda obj, now: len(obj.get("data") or {})),
        AGE,
    ),
    ("", "serviceaccounts"): (
        NAME,
        Column("Secrets", "integer", lambda obj, now: len(obj.get("secrets") or [])),
        AGE,
    ),
    ("", "events"): _EVENTS,
    ("events.k8s.io", "events"): _EVENTS,
    ("rbac.authorization.k8s.io", "roles"): (
        NAME,
        Column("Created At", "string", lambda obj, now: _created_at(obj)),
    ),
    ("rbac.authorization.k8s.io", "clusterroles"): (
        NAME,
        Column("Created At", "string", lambda obj, now: _created_at(obj)),
    ),
    ("rbac.authorization.k8s.io", "rolebindings"): _BINDING,
    ("rbac.authorization.k8s.io", "clusterrolebindings"): _BINDING,
    ("coordination.k8s.io", "leases"): (
        NAME,
        Column("Holder", "string", lambda obj, now: (obj.get("spec") or {}).get("holderIdentity", "")),
        AGE,
    ),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): (
        NAME,
        Column("Webhooks", "integer", lambda obj, now: len(obj.get("webhooks") or [])),
        AGE,
    ),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): (
        NAME,
        Column("Webhooks", "integer", lambda obj, now: len(obj.get("webhooks") or [])),
        AGE,
    ),
    ("apiextensions.k8s.io", "customresourcedefinitions"): (NAME, CREATED_AT),
}


def builtin_columns(rtype: ResourceType) -> tuple[Column, ...]:
    """The columns (Name included) a built-in kind prints."""
    return PRINTERS.get((rtype.group, rtype.plural), _DEFAULT)
