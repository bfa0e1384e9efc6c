"""RBAC escalation prevention: nobody grants, through a role or a binding, more than they hold.

As in kube-apiserver, a caller may create or update a Role/ClusterRole only if it
already holds every permission in it or may `escalate` that role, and a
(Cluster)RoleBinding only if it holds the referenced role's permissions (in the
binding's namespace) or may `bind` that role.
"""

from __future__ import annotations

from typing import Any

from zsp_operator.core.rbac import Attributes
from zsp_operator.sim import errors as E
from zsp_operator.sim.auth import UserInfo
from zsp_operator.sim.authz import RBAC_GROUP, Authorizer, parse_rules, render_rule, uncovered
from zsp_operator.sim.resources import ResourceType

_ROLE_PLURALS = {"Role": "roles", "ClusterRole": "clusterroles"}


def _groups(user: UserInfo) -> str:
    return "[" + " ".join(f'"{group}"' for group in user.groups) + "]"


def check_escalation(
    authorizer: Authorizer, user: UserInfo, rtype: ResourceType, obj: dict[str, Any]
) -> None:
    """Raise 403 Forbidden if writing this RBAC object would grant what `user` does not hold."""
    if rtype.group != RBAC_GROUP or user.is_superuser:
        return
    meta = obj["metadata"]
    namespace = meta.get("namespace", "") if rtype.namespaced else ""
    name = meta.get("name", "")
    if rtype.plural in ("roles", "clusterroles"):
        if authorizer.authorize(
            user, Attributes("escalate", RBAC_GROUP, rtype.plural, name=name, namespace=namespace)
        ).allowed:
            return
        if obj.get("aggregationRule"):
            raise E.forbidden(
                rtype.group_resource, name, "must have cluster-admin privileges to use the aggregationRule"
            )
        requested = parse_rules(obj.get("rules"))
    else:
        role_ref = obj.get("roleRef") or {}
        role_plural = _ROLE_PLURALS.get(role_ref.get("kind", ""), "clusterroles")
        if authorizer.authorize(
            user,
            Attributes("bind", RBAC_GROUP, role_plural, name=role_ref.get("name", ""), namespace=namespace),
        ).allowed:
            return
        rules = authorizer.role_rules(role_ref, namespace)
        if rules is None:
            raise E.not_found(E.GroupResource(RBAC_GROUP, role_plural), role_ref.get("name", ""))
        requested = rules
    missing = uncovered(authorizer.rules_for(user, namespace), requested)
    if missing:
        listing = "\n".join(render_rule(rule) for rule in missing)
        raise E.forbidden(
            rtype.group_resource,
            name,
            f'user "{user.username}" (groups={_groups(user)}) is attempting to grant RBAC '
            f"permissions not currently held:\n{listing}",
        )
