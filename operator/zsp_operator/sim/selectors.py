"""Label and field selectors, in the query-string form and the LabelSelector object form."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from zsp_operator.sim.errors import bad_request

Obj = dict[str, Any]

_INVOLVED = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
# Fields the real server lets you select on besides metadata.name/namespace, per (group, plural):
# its field label conversion functions. events.k8s.io Events answer for `regarding.*`.
FIELD_LABELS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "events"): (
        *(f"involvedObject.{part}" for part in _INVOLVED),
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    ("events.k8s.io", "events"): (
        *(f"regarding.{part}" for part in _INVOLVED),
        "reason",
        "reportingController",
        "type",
    ),
    ("", "pods"): (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    ("", "secrets"): ("type",),
    ("", "namespaces"): ("status.phase",),
    ("", "services"): ("spec.clusterIP", "spec.type"),
    ("apps", "replicasets"): ("status.replicas",),
    ("batch", "jobs"): ("status.successful",),
}
_FIELD_PATHS = {"source": "source.component"}  # core Events: `source` is the reporting component


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # in, notin, exists, !, =, !=
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "in"):
            return present and labels[self.key] in self.values
        # != and notin also match objects without the label, as in Kubernetes.
        return not present or labels[self.key] not in self.values


_KEY = r"[A-Za-z0-9./_-]+"
_SET_RE = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_RE = re.compile(rf"^\s*({_KEY})\s*(==|!=|=)\s*([A-Za-z0-9._-]*)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside `( ... )`."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def parse_label_selector(text: str) -> list[Requirement]:
    requirements = []
    for part in _split_top_level(text or ""):
        if match := _SET_RE.match(part):
            values = tuple(v.strip() for v in match.group(3).split(",") if v.strip())
            requirements.append(Requirement(match.group(1), match.group(2), values))
        elif match := _EQ_RE.match(part):
            operator = "!=" if match.group(2) == "!=" else "="
            requirements.append(Requirement(match.group(1), operator, (match.group(3),)))
        elif match := _EXISTS_RE.match(part):
            requirements.append(Requirement(match.group(2), "!" if match.group(1) else "exists"))
        else:
            raise bad_request(f"unable to parse requirement: found '{part.strip()}', expected: identifier")
    return requirements


def labels_match(requirements: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    return all(req.matches(labels or {}) for req in requirements)


def label_selector_object_matches(
    selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None
) -> bool:
    """metav1.LabelSelector semantics: None matches everything, {} matches everything."""
    if selector is None:
        return True
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        operator = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(
            expression.get("operator", "")
        )
        if operator is None:
            return False
        requirement = Requirement(expression["key"], operator, tuple(expression.get("values") or ()))
        if not requirement.matches(labels):
            return False
    return True


def _field_value(obj: Obj, path: str) -> str:
    value: Any = obj
    for part in _FIELD_PATHS.get(path, path).split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def parse_field_selector(text: str, group: str, plural: str) -> list[tuple[str, str, str]]:
    """[(field, "="|"!=", value)]; unknown fields are a 400 worded like the real server's."""
    extra = FIELD_LABELS.get((group, plural))
    allowed = ("metadata.name", "metadata.namespace", *(extra or ()))
    terms = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        match = re.match(r"^\s*([A-Za-z0-9._]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field_name, operator, value = match.groups()
        if field_name not in allowed:
            if extra:  # a kind with its own conversion function
                raise bad_request(f"field label not supported: {field_name}")
            raise bad_request(
                f'"{field_name}" is not a known field selector: only "metadata.name", "metadata.namespace"'
            )
        terms.append((field_name, "!=" if operator == "!=" else "=", value))
    return terms


def fields_match(terms: list[tuple[str, str, str]], obj: Obj) -> bool:
    for field_name, operator, value in terms:
        actual = _field_value(obj, field_name)
        if (actual == value) != (operator == "="):
            return False
    return True


def object_filter(label_selector: str, field_selector: str, group: str, plural: str) -> Callable[[Obj], bool]:
    """One predicate for a list or watch; raises ApiError 400 on a malformed selector."""
    labels = parse_label_selector(label_selector)
    fields = parse_field_selector(field_selector, group, plural)

    def matches(obj: Obj) -> bool:
        return labels_match(labels, obj.get("metadata", {}).get("labels")) and fields_match(fields, obj)

    return matches
