"""Right-sizing advice: which of a policy's permissions went unused, and the smaller rules that would do.

Input is what the operator recorded when grants ended (`status.usage` of each request);
output is one entry per permission and a JSON merge patch of the policy a policy author can
review and apply (`kubectl patch accesspolicy NAME --type merge --patch-file FILE`). A merge
patch replaces `spec.permissions` as a whole, so the patch lists every permission, changed
or not, in the policy's order.

Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from zsp_operator.core.models import AccessPolicy, Permission, PolicyRule, UsageSummary, parse_time
from zsp_operator.core.usage import UsageTally, UseKey, narrowed, rules_of, summarize, used_keys


@dataclass(frozen=True)
class PermissionAdvice:
    """What the recorded grants of one permission say about its rules."""

    name: str
    grants: int  # ended grants with a usage summary
    current: list[PolicyRule]  # empty for a ClusterRole permission
    cluster_role: str | None
    unused: list[PolicyRule]  # of `current`, exercised by no grant
    proposed: list[PolicyRule] | None  # None: keep the permission as it is
    why: str
    truncated: bool = False  # some summary was cut short: `used` may be incomplete

    @property
    def changes(self) -> bool:
        return self.proposed is not None


def advise(policy: AccessPolicy, summaries: Iterable[tuple[str, UsageSummary]]) -> list[PermissionAdvice]:
    """Advice per permission of `policy`, from `(permission name, summary)` of its ended grants."""
    used: dict[str, set[UseKey]] = {}
    counts: dict[str, int] = {}
    truncated: set[str] = set()
    for name, summary in summaries:
        used.setdefault(name, set()).update(used_keys(summary))
        counts[name] = counts.get(name, 0) + 1
        if summary.truncated:
            truncated.add(name)
    return [
        _one(
            permission,
            counts.get(permission.name, 0),
            used.get(permission.name, set()),
            permission.name in truncated,
        )
        for permission in policy.spec.permissions
    ]


def _one(permission: Permission, grants: int, used: set[UseKey], truncated: bool) -> PermissionAdvice:
    current = list(permission.rules or [])

    def keep(why: str, unused: list[PolicyRule] | None = None) -> PermissionAdvice:
        return PermissionAdvice(
            permission.name, grants, current, permission.cluster_role, unused or [], None, why, truncated
        )

    if grants == 0:
        return keep("no ended grant with recorded usage")
    if not used:
        return keep(f"unused in all {grants} grants: consider removing the permission")
    if truncated:
        return keep("a usage summary was truncated, so what was used is not known in full")
    if permission.cluster_role:
        proposed = rules_of((group, resource, verb, ()) for verb, group, resource, _ in sorted(used))
        return PermissionAdvice(
            permission.name,
            grants,
            [],
            permission.cluster_role,
            [],
            proposed,
            f"ClusterRole {permission.cluster_role} replaced by the rules {grants} grants used",
        )
    unused = summarize(current, UsageTally(used=Counter(dict.fromkeys(used, 1)))).unused
    if not unused:
        return keep(f"every rule was used across {grants} grants")
    return PermissionAdvice(
        permission.name,
        grants,
        current,
        None,
        unused,
        narrowed(current, used),
        f"{_pair_count(unused)} verb-resource pairs unused across {grants} grants",
    )


def _pair_count(rules: list[PolicyRule]) -> int:
    return sum(len(r.verbs) * len(r.resources) * max(1, len(r.api_groups)) for r in rules)


def merge_patch(policy: AccessPolicy, advice: list[PermissionAdvice]) -> dict[str, Any] | None:
    """The JSON merge patch that applies every proposal; None when nothing would change."""
    if not any(a.changes for a in advice):
        return None
    by_name = {a.name: a for a in advice}
    permissions = []
    for permission in policy.spec.permissions:
        wire = permission.to_wire()
        found = by_name.get(permission.name)
        if found is not None and found.proposed is not None:
            wire.pop("clusterRole", None)
            wire["rules"] = found.proposed
        if "rules" in wire:
            wire["rules"] = [rule_wire(PolicyRule.model_validate(rule)) for rule in wire["rules"]]
        permissions.append(wire)
    return {"spec": {"permissions": permissions}}


def rule_wire(rule: PolicyRule) -> dict[str, Any]:
    """A rule as a policy author writes it: empty lists left out."""
    return {key: value for key, value in rule.to_wire().items() if value != []}


def recorded_usage(
    policy: str, requests: Iterable[Mapping[str, Any]], since: datetime | None = None
) -> list[tuple[str, UsageSummary]]:
    """`(permission, summary)` of every request `policy` allowed whose grant ended at or after `since`.

    Requests that named rules instead of a permission have nothing to right-size and are left out.
    """
    found = []
    for body in requests:
        status = body.get("status") or {}
        permission = (body.get("spec") or {}).get("permission")
        if status.get("policy") != policy or not permission or not status.get("usage"):
            continue
        ended = parse_time(status.get("revokedAt"))
        if since is not None and (ended is None or ended < since):
            continue
        found.append((permission, UsageSummary.model_validate(status["usage"])))
    return found
