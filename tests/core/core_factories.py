"""Objects for the core tests, built from wire-shaped dicts so tables read like manifests.

`changed(base, {"approval.required": 2, "grantees.ephemeral": None})` sets (or, with None,
removes) fields by dotted path, so each table row states only what differs from the baseline;
a number in the path indexes a list (`permissions.0.rules`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from zsp_operator.core.models import AccessPolicy, AccessRequest, TaskGrant, UserInfo

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PIPELINE = "system:serviceaccount:ci:pipeline"
REQUEST_UID = "uid-request-4711"

# The example policy (examples/), with automatic approval.
POLICY_SPEC: dict[str, Any] = {
    "requesters": [
        {"kind": "ServiceAccount", "namespace": "ci", "name": "pipeline"},
        {"kind": "Group", "name": "platform-oncall"},
    ],
    "grantees": {
        "serviceAccounts": [{"namespace": "ci", "name": "deployer"}],
        "ephemeral": {"enabled": True, "deliveryNamespaces": ["ci"]},
    },
    "namespaces": {"names": ["payments-staging"], "selector": {"matchLabels": {"team": "payments"}}},
    "permissions": [
        {
            "name": "deploy",
            "rules": [
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments"],
                    "verbs": ["get", "list", "patch", "update"],
                }
            ],
        },
        {"name": "read-only", "clusterRole": "view"},
    ],
    "defaultTTL": "15m",
    "maxTTL": "1h",
    "approval": {"required": 0, "approvers": [{"kind": "Group", "name": "platform-leads"}]},
    "limits": {"activePerGrantee": 1, "activePerRequester": 5, "activePerPolicy": 50},
}

# The example request (examples/), in bind mode.
REQUEST_SPEC: dict[str, Any] = {
    "grantee": {"serviceAccount": {"namespace": "ci", "name": "deployer"}},
    "permission": "deploy",
    "ttl": "10m",
    "reason": "deploy build 4711 (pipeline run 88)",
}

EPHEMERAL: dict[str, Any] = {
    "grantee.serviceAccount": None,
    "grantee.ephemeral": {},
    "delivery": {"namespace": "ci", "secretName": "deploy-4711-kubeconfig"},
}

LABELS: dict[str, dict[str, str]] = {
    "ci": {},
    "payments-staging": {"team": "payments", "zsp.dev/environment": "staging"},
    "payments-staging-eu": {"team": "payments", "zsp.dev/environment": "staging"},
    "payments-prod": {"team": "payments", "zsp.dev/environment": "production"},
    "payments-sandbox": {"team": "payments"},
    "billing": {"team": "billing", "zsp.dev/environment": "staging"},
}

# A stand-in for the built-in `view` ClusterRole: reads, no Secrets.
VIEW_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [""],
        "resources": ["pods", "pods/log", "configmaps", "services"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"], "verbs": ["get", "list", "watch"]},
]


def changed(base: Mapping[str, Any], changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A deep copy of `base` with dotted-path fields set, or removed when the value is None."""
    result = copy.deepcopy(dict(base))
    for path, value in (changes or {}).items():
        *parents, last = path.split(".")
        node: Any = result
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(value)
    return result


def policy(name: str = "ci-deployers", changes: Mapping[str, Any] | None = None) -> AccessPolicy:
    spec = changed(POLICY_SPEC, changes)
    return AccessPolicy.model_validate({"metadata": {"name": name}, "spec": spec})


def requester(username: str = PIPELINE, *groups: str) -> UserInfo:
    return UserInfo(username=username, groups=list(groups))


def request(
    changes: Mapping[str, Any] | None = None,
    *,
    namespace: str = "payments-staging",
    who: UserInfo | None = None,
    anonymous: bool = False,
) -> AccessRequest:
    """The example request, filed by the pipeline unless `who` or `anonymous` say otherwise."""
    status: dict[str, Any] = {}
    if not anonymous:
        status["requester"] = (who or requester()).model_dump(mode="json")
    return AccessRequest.model_validate(
        {
            "metadata": {"name": "deploy-4711", "namespace": namespace, "uid": REQUEST_UID},
            "spec": changed(REQUEST_SPEC, changes),
            "status": status,
        }
    )


def grant(
    name: str = "deploy-4700",
    namespace: str = "payments-staging",
    *,
    identity: tuple[str, str] | None = ("ci", "deployer"),
    policy_name: str = "ci-deployers",
    requested_by: str = PIPELINE,
    expires_in: timedelta = timedelta(minutes=5),
    request_uid: str = "uid-request-4700",
    revoked: bool = False,
) -> TaskGrant:
    """A TaskGrant as the operator writes it; live for `expires_in` after NOW."""
    spec: dict[str, Any] = {
        "request": {"name": name, "uid": request_uid},
        "policy": policy_name,
        "mode": "bind" if identity else "ephemeral",
        "requester": {"username": requested_by},
        "expiresAt": (NOW + expires_in).isoformat(),
    }
    if identity:
        spec["identity"] = {"namespace": identity[0], "name": identity[1]}
    status = {"revokedAt": NOW.isoformat()} if revoked else {}
    return TaskGrant.model_validate(
        {"metadata": {"name": name, "namespace": namespace}, "spec": spec, "status": status}
    )
