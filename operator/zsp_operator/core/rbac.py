"""RBAC analysis, no I/O: does a rule set allow a request, and which rules are risky.

Matching follows the Kubernetes RBAC authorizer (`rbac/v1` PolicyRule semantics):
`*` matches everything in its field, `resource/subresource` names a subresource,
`*/subresource` matches that subresource of any resource, empty `resourceNames`
matches every name, and non-resource URLs match exactly or by a trailing `*`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from zsp_operator.core.models import PolicyRule

ALL = "*"


@dataclass(frozen=True)
class Attributes:
    """What a request does, as an authorizer sees it."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""
    path: str = ""  # set for non-resource requests (`/healthz`, `/api`)

    @property
    def is_resource_request(self) -> bool:
        return not self.path


def _verb_matches(rule: PolicyRule, verb: str) -> bool:
    return ALL in rule.verbs or verb in rule.verbs


def _group_matches(rule: PolicyRule, group: str) -> bool:
    return ALL in rule.api_groups or group in rule.api_groups


def _resource_matches(rule: PolicyRule, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for granted in rule.resources:
        if granted in (ALL, combined):
            return True
        if subresource and granted == f"*/{subresource}":
            return True
    return False


def _name_matches(rule: PolicyRule, name: str) -> bool:
    return not rule.resource_names or name in rule.resource_names


def _path_matches(rule: PolicyRule, path: str) -> bool:
    for granted in rule.non_resource_ur_ls:
        if granted in (ALL, path):
            return True
        if granted.endswith(ALL) and path.startswith(granted[:-1]):
            return True
    return False


def rule_allows(rule: PolicyRule, attrs: Attributes) -> bool:
    """True if this one rule permits the request."""
    if not _verb_matches(rule, attrs.verb):
        return False
    if not attrs.is_resource_request:
        return _path_matches(rule, attrs.path)
    return (
        _group_matches(rule, attrs.group)
        and _resource_matches(rule, attrs.resource, attrs.subresource)
        and _name_matches(rule, attrs.name)
    )


def rules_allow(rules: Iterable[PolicyRule], attrs: Attributes) -> bool:
    """True if any rule in the set permits the request."""
    return any(rule_allows(rule, attrs) for rule in rules)
