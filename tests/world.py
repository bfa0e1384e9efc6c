"""A small world per story: its own namespaces, identities and policy, removed afterwards.

`ci-<id>` holds the pipeline (which files requests) and the deployer (which receives
privilege); `pay-<id>` is where privilege is wanted. The policy `deployers-<id>` allows
the pipeline to ask for `deploy` (inline rules) or `read-only` (ClusterRole view) there.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from harness import apply, can, token_for
from tiers import Cluster
from zsp_operator.core import constants as c
from zsp_operator.kube import Kube
from zsp_operator.kube.resources import ACCESS_POLICIES, ACCESS_REQUESTS, NAMESPACES


@dataclass
class World:
    id: str
    ci: str
    target: str
    policy: str
    admin: Kube
    cluster: Cluster

    @property
    def pipeline_user(self) -> str:
        return f"system:serviceaccount:{self.ci}:pipeline"

    def policy_body(self, **spec: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "requesters": [{"kind": "ServiceAccount", "namespace": self.ci, "name": "pipeline"}],
            "grantees": {
                "serviceAccounts": [{"namespace": self.ci, "name": "deployer"}],
                "ephemeral": {"enabled": True, "deliveryNamespaces": [self.ci]},
            },
            "namespaces": {"selector": {"matchLabels": {"zsp.dev/story": self.id}}},
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
        }
        body.update(spec)
        return {
            "apiVersion": c.API_VERSION,
            "kind": c.KIND_POLICY,
            "metadata": {"name": self.policy},
            "spec": body,
        }

    async def file(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a request with the pipeline's own token, so the webhook records it as requester."""
        token = await token_for(self.admin, self.ci, "pipeline")
        async with await Kube.from_dict(self.cluster.kubeconfig(token)) as pipeline:
            return await pipeline.create(ACCESS_REQUESTS, body)

    def request(self, name: str, *, ephemeral: bool = False, **spec: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "grantee": {"ephemeral": {}}
            if ephemeral
            else {"serviceAccount": {"namespace": self.ci, "name": "deployer"}},
            "permission": "deploy",
            "reason": f"story {self.id}: deploy build 4711",
        }
        if ephemeral:
            body["delivery"] = {"namespace": self.ci, "secretName": f"{name}-kubeconfig"}
        body.update(spec)
        return {
            "apiVersion": c.API_VERSION,
            "kind": c.KIND_REQUEST,
            "metadata": {"name": name, "namespace": self.target},
            "spec": body,
        }


async def deployer_can_patch(w: World, token: str) -> bool | None:
    """Asked as the bearer of `token`: may it patch Deployments in the story's target?"""
    return await can(w.cluster, token, "patch", "deployments", w.target, group="apps")


async def deployer_refused(w: World, token: str) -> bool:
    return await deployer_can_patch(w, token) is False


def _namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _service_account(namespace: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"namespace": namespace, "name": name}}


def requester_rbac(namespace: str, sa_namespace: str, sa_name: str) -> list[dict[str, Any]]:
    """The standing right to *ask* (create AccessRequests), never to act."""
    rules = [
        {
            "apiGroups": [c.GROUP],
            "resources": [c.PLURAL_REQUEST],
            "verbs": ["create", "get", "list", "watch", "patch", "update", "delete"],
        }
    ]
    meta = {"namespace": namespace, "name": f"zsp-requester-{sa_name}"}
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": meta["name"]},
            "subjects": [{"kind": "ServiceAccount", "namespace": sa_namespace, "name": sa_name}],
        },
    ]


@contextlib.asynccontextmanager
async def world(cluster: Cluster, **policy_spec: Any) -> AsyncIterator[World]:
    story = uuid.uuid4().hex[:6]
    admin = await Kube.from_dict(cluster.kubeconfig())
    w = World(story, f"ci-{story}", f"pay-{story}", f"deployers-{story}", admin, cluster)
    try:
        await apply(
            admin,
            [
                _namespace(w.ci, {}),
                _namespace(w.target, {"zsp.dev/story": story, c.LABEL_ENVIRONMENT: "staging"}),
                _service_account(w.ci, "pipeline"),
                _service_account(w.ci, "deployer"),
                *requester_rbac(w.target, w.ci, "pipeline"),
                w.policy_body(**policy_spec),
            ],
        )
        yield w
    finally:
        for request in await admin.list(ACCESS_REQUESTS, w.target):
            await admin.delete(ACCESS_REQUESTS, request["metadata"]["name"], w.target)
        await admin.delete(ACCESS_POLICIES, w.policy)
        for namespace in (w.target, w.ci):
            await admin.delete(NAMESPACES, namespace)
        await admin.close()
