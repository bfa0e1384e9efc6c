"""RBAC authorization over the stored Roles, ClusterRoles and their bindings.

Decisions use `zsp_operator.core.rbac` for rule matching. `system:masters` is a
superuser, as in kube-apiserver. Escalation prevention (creating a role or a binding
that grants more than the caller holds) is built on `uncovered`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from zsp_operator.core.models import PolicyRule
from zsp_operator.core.rbac import ALL, Attributes, covers, rule_allows
from zsp_operator.sim.auth import UserInfo
from zsp_operator.sim.store import Store

RBAC_GROUP = "rbac.authorization.k8s.io"
_ROLE_KEYS = {"Role": (RBAC_GROUP, "roles"), "ClusterRole": (RBAC_GROUP, "clusterroles")}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def parse_rules(raw: Any) -> list[PolicyRule]:
    """PolicyRules from stored dicts; malformed rules grant nothing."""
    rules = []
    for item in raw or []:
        try:
            rules.append(PolicyRule.model_validate(item))
        except ValidationError:
            continue
    return rules


def subject_matches(subject: dict[str, Any], user: UserInfo, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name", "")
    if kind == "User":
        return bool(name) and user.username == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.username == f"system:serviceaccount:{namespace}:{name}"
    return False


def describe_subject(subject: dict[str, Any]) -> str:
    if subject.get("kind") == "ServiceAccount":
        return f'ServiceAccount "{subject.get("namespace", "")}/{subject.get("name", "")}"'
    return f'{subject.get("kind")} "{subject.get("name")}"'


class Authorizer:
    def __init__(self, store: Store) -> None:
        self._store = store

    def role_rules(self, role_ref: dict[str, Any], namespace: str) -> list[PolicyRule] | None:
        """Rules of a binding's roleRef (None if the role does not exist)."""
        key = _ROLE_KEYS.get(role_ref.get("kind", ""))
        if key is None:
            return None
        role_namespace = namespace if role_ref.get("kind") == "Role" else ""
        role = self._store.get(key, role_namespace, role_ref.get("name", ""))
        return None if role is None else parse_rules(role.get("rules"))

    def _bindings(self, namespace: str) -> Iterator[tuple[dict[str, Any], str]]:
        """(binding, binding namespace): cluster-wide ones first, then those of `namespace`."""
        for binding in self._store.list((RBAC_GROUP, "clusterrolebindings")):
            yield binding, ""
        if namespace:
            for binding in self._store.list((RBAC_GROUP, "rolebindings"), namespace):
                yield binding, namespace

    def _applicable(self, user: UserInfo, namespace: str) -> Iterator[tuple[str, list[PolicyRule]]]:
        for binding, binding_namespace in self._bindings(namespace):
            subjects = binding.get("subjects") or []
            matched = next((s for s in subjects if subject_matches(s, user, binding_namespace)), None)
            if matched is None:
                continue
            role_ref = binding.get("roleRef") or {}
            rules = self.role_rules(role_ref, binding_namespace)
            if not rules:
                continue
            kind = "RoleBinding" if binding_namespace else "ClusterRoleBinding"
            where = (
                f'"{binding["metadata"]["name"]}/{binding_namespace}"'
                if binding_namespace
                else (f'"{binding["metadata"]["name"]}"')
            )
            yield (
                f'{kind} {where} of {role_ref.get("kind")} "{role_ref.get("name")}" to '
                f"{describe_subject(matched)}",
                rules,
            )

    def rules_for(self, user: UserInfo, namespace: str) -> list[PolicyRule]:
        """Every rule that applies to `user` in `namespace` ("" = cluster-wide only)."""
        if user.is_superuser:
            return [
                PolicyRule(verbs=[ALL], api_groups=[ALL], resources=[ALL]),
                PolicyRule(verbs=[ALL], non_resource_ur_ls=[ALL]),
            ]
        return [rule for _, rules in self._applicable(user, namespace) for rule in rules]

    def authorize(self, user: UserInfo, attrs: Attributes) -> Decision:
        if user.is_superuser:
            return Decision(True)
        for description, rules in self._applicable(user, attrs.namespace):
            if any(rule_allows(rule, attrs) for rule in rules):
                return Decision(True, f"RBAC: allowed by {description}")
        return Decision(False)


# --- escalation prevention ----------------------------------------------------------------------


def _breakdown(rule: PolicyRule) -> Iterator[PolicyRule]:
    """One single-verb, single-resource, single-name rule per combination in `rule`."""
    for verb in rule.verbs:
        for url in rule.non_resource_ur_ls:
            yield PolicyRule(verbs=[verb], non_resource_ur_ls=[url])
        for group in rule.api_groups:
            for resource in rule.resources:
                names: list[list[str]] = [[name] for name in rule.resource_names] or [[]]
                for name in names:
                    yield PolicyRule(
                        verbs=[verb], api_groups=[group], resources=[resource], resource_names=name
                    )


def uncovered(granted: list[PolicyRule], requested: list[PolicyRule]) -> list[PolicyRule]:
    """The pieces of `requested` that no rule in `granted` covers."""
    return [piece for rule in requested for piece in _breakdown(rule) if not covers(granted, piece)]


def render_rule(rule: PolicyRule) -> str:
    """Go's `%+v`-like rendering the real server prints for ungranted rules."""

    def quoted(values: list[str]) -> str:
        return "[" + " ".join(f'"{v}"' for v in values) + "]"

    parts = []
    if rule.api_groups:
        parts.append(f"APIGroups:{quoted(rule.api_groups)}")
    if rule.resources:
        parts.append(f"Resources:{quoted(rule.resources)}")
    if rule.resource_names:
        parts.append(f"ResourceNames:{quoted(rule.resource_names)}")
    if rule.non_resource_ur_ls:
        parts.append(f"NonResourceURLs:{quoted(rule.non_resource_ur_ls)}")
    parts.append(f"Verbs:{quoted(rule.verbs)}")
    return "{" + ", ".join(parts) + "}"
