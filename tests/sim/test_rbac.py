"""RBAC authorization: decisions, 403 wording, access reviews, bootstrap roles, escalation prevention."""

from __future__ import annotations

from typing import Any

import pytest
from simkit import Raw

from zsp_operator.sim import SimServer

RBAC = "/apis/rbac.authorization.k8s.io/v1"
SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def binding(
    name: str, role_kind: str, role: str, subject: dict[str, Any], namespace: str | None = "default"
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "metadata": metadata,
        "subjects": [subject],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
    }


def role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "rules": rules}


USER_DAVE = {"kind": "User", "name": "dave", "apiGroup": "rbac.authorization.k8s.io"}


async def can(
    raw: Raw,
    token: str,
    verb: str,
    resource: str,
    namespace: str = "default",
    group: str = "",
    name: str = "",
) -> bool:
    attributes = {"verb": verb, "resource": resource, "namespace": namespace, "group": group, "name": name}
    review = await raw.ok(
        "POST",
        SSAR,
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        },
        token=token,
    )
    return bool(review["status"]["allowed"])


async def test_a_user_without_bindings_is_forbidden_with_the_real_wording(sim: SimServer, raw: Raw) -> None:
    token = sim.user_token("dave", ["developers"])
    status, body = await raw.call("GET", "/api/v1/namespaces/default/secrets/db", token=token)
    assert status == 403
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        'secrets "db" is forbidden: User "dave" cannot get resource "secrets" '
        'in API group "" in the namespace "default"'
    )
    status, body = await raw.call("GET", f"{RBAC}/clusterroles", token=token)
    assert body["message"] == (
        'clusterroles.rbac.authorization.k8s.io is forbidden: User "dave" cannot list '
        'resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope'
    )
    status, body = await raw.call(
        "PATCH",
        "/api/v1/namespaces/default/pods/p/status",
        {},
        content_type="application/merge-patch+json",
        token=token,
    )
    assert 'cannot patch resource "pods/status" in API group ""' in body["message"]


async def test_authenticated_users_may_discover_but_not_list(sim: SimServer, raw: Raw) -> None:
    token = sim.user_token("dave")
    assert (await raw.call("GET", "/apis", token=token))[0] == 200
    assert (await raw.call("GET", "/api/v1", token=token))[0] == 200
    assert (await raw.call("GET", "/api/v1/namespaces", token=token))[0] == 403


async def test_a_rolebinding_to_view_allows_reading_but_not_secrets(sim: SimServer, raw: Raw) -> None:
    token = sim.user_token("dave")
    await raw.ok(
        "POST",
        f"{RBAC}/namespaces/default/rolebindings",
        binding("dave-view", "ClusterRole", "view", USER_DAVE),
    )
    assert (await raw.call("GET", "/api/v1/namespaces/default/configmaps", token=token))[0] == 200
    assert (await raw.call("GET", "/api/v1/namespaces/default/secrets", token=token))[0] == 403
    assert (await raw.call("GET", "/api/v1/namespaces/kube-system/configmaps", token=token))[0] == 403
    assert (
        await raw.call(
            "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "x"}}, token=token
        )
    )[0] == 403


@pytest.mark.parametrize(
    ("cluster_role", "verb", "resource", "group", "allowed"),
    [
        ("view", "list", "pods", "", True),
        ("view", "get", "secrets", "", False),
        ("view", "create", "configmaps", "", False),
        ("edit", "get", "secrets", "", True),
        ("edit", "create", "deployments", "apps", True),
        ("edit", "create", "rolebindings", "rbac.authorization.k8s.io", False),
        ("admin", "create", "rolebindings", "rbac.authorization.k8s.io", True),
        ("admin", "list", "jobs", "batch", True),
        ("cluster-admin", "delete", "nodes", "", True),
    ],
)
async def test_bootstrap_cluster_roles(
    sim: SimServer, raw: Raw, cluster_role: str, verb: str, resource: str, group: str, allowed: bool
) -> None:
    token = sim.user_token("dave")
    await raw.ok(
        "POST",
        f"{RBAC}/namespaces/default/rolebindings",
        binding("b", "ClusterRole", cluster_role, USER_DAVE),
    )
    assert await can(raw, token, verb, resource, group=group) is allowed


async def test_ssar_with_a_service_account_token_follows_its_rolebinding(raw: Raw) -> None:
    await raw.ok("POST", "/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": "deployer"}})
    token = (
        await raw.ok(
            "POST",
            "/api/v1/namespaces/default/serviceaccounts/deployer/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        )
    )["status"]["token"]
    await raw.ok(
        "POST",
        f"{RBAC}/namespaces/default/roles",
        role("deploy", [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]}]),
    )
    subject = {"kind": "ServiceAccount", "name": "deployer", "namespace": "default"}
    assert await can(raw, token, "patch", "deployments", group="apps") is False
    await raw.ok(
        "POST", f"{RBAC}/namespaces/default/rolebindings", binding("deploy", "Role", "deploy", subject)
    )
    assert await can(raw, token, "patch", "deployments", group="apps") is True
    assert await can(raw, token, "patch", "deployments", namespace="kube-system", group="apps") is False
    await raw.ok("DELETE", f"{RBAC}/namespaces/default/rolebindings/deploy")
    assert await can(raw, token, "patch", "deployments", group="apps") is False


async def test_subject_access_review_answers_for_someone_else(sim: SimServer, raw: Raw) -> None:
    await raw.ok(
        "POST",
        f"{RBAC}/clusterrolebindings",
        binding("oncall-view", "ClusterRole", "view", {"kind": "Group", "name": "oncall"}, namespace=None),
    )
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": "erin",
            "groups": ["oncall"],
            "resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "default"},
        },
    }
    answer = await raw.ok("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    assert answer["status"]["allowed"] is True
    assert 'ClusterRoleBinding "oncall-view"' in answer["status"]["reason"]
    status, _ = await raw.call(
        "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review, token=sim.user_token("dave")
    )
    assert status == 403  # creating SubjectAccessReviews needs its own permission


async def test_non_resource_access_review(sim: SimServer, raw: Raw) -> None:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}},
    }
    answer = await raw.ok("POST", SSAR, review, token=sim.user_token("dave"))
    assert answer["status"]["allowed"] is True


async def test_a_role_granting_more_than_the_caller_holds_is_forbidden(sim: SimServer, raw: Raw) -> None:
    token = sim.user_token("dave")
    await raw.ok(
        "POST",
        f"{RBAC}/namespaces/default/rolebindings",
        binding("dave-admin", "ClusterRole", "admin", USER_DAVE),
    )
    # admin may write Roles, and may put into them what admin holds...
    await raw.ok(
        "POST",
        f"{RBAC}/namespaces/default/roles",
        role("fine", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]),
        token=token,
    )
    # ...but not a wildcard it does not hold.
    status, body = await raw.call(
        "POST",
        f"{RBAC}/namespaces/default/roles",
        role("greedy", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        token=token,
    )
    assert status == 403
    assert body["message"].startswith(
        'roles.rbac.authorization.k8s.io "greedy" is forbidden: user "dave" (groups=["system:authenticated"]) '
        "is attempting to grant RBAC permissions not currently held:\n"
    )
    assert '{APIGroups:["*"], Resources:["*"], Verbs:["*"]}' in body["message"]


async def test_escalate_verb_lifts_the_role_check(sim: SimServer, raw: Raw) -> None:
    token = sim.user_token("dave")
    await raw.ok(
        "POST",
        f"{RBAC}/clusterroles",
        role(
            "role-writer",
            [
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["roles"],
                    "verbs": ["create", "escalate"],
                }
            ],
        ),
    )
    await raw.ok(
        "POST",
        f"{RBAC}/namespaces/default/rolebindings",
        binding("w", "ClusterRole", "role-writer", USER_DAVE),
    )
    await raw.ok(
        "POST",
        f"{RBAC}/namespaces/default/roles",
        role("big", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}]),
        token=token,
    )


async def test_binding_needs_the_roles_permissions_or_bind(sim: SimServer, raw: Raw) -> None:
    token = sim.user_token("dave")
    await raw.ok(
        "POST",
        f"{RBAC}/clusterroles",
        role(
            "binder",
            [
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["rolebindings"],
                    "verbs": ["create"],
                }
            ],
        ),
    )
    await raw.ok(
        "POST", f"{RBAC}/namespaces/default/rolebindings", binding("d", "ClusterRole", "binder", USER_DAVE)
    )
    target = {"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}
    status, body = await raw.call(
        "POST",
        f"{RBAC}/namespaces/default/rolebindings",
        binding("m", "ClusterRole", "edit", target),
        token=token,
    )
    assert status == 403
    assert "is attempting to grant RBAC permissions not currently held" in body["message"]
    await raw.ok(
        "POST",
        f"{RBAC}/clusterroles",
        role(
            "bind-edit",
            [
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["clusterroles"],
                    "verbs": ["bind"],
                    "resourceNames": ["edit"],
                }
            ],
        ),
    )
    await raw.ok(
        "POST", f"{RBAC}/namespaces/default/rolebindings", binding("e", "ClusterRole", "bind-edit", USER_DAVE)
    )
    await raw.ok(
        "POST",
        f"{RBAC}/namespaces/default/rolebindings",
        binding("m", "ClusterRole", "edit", target),
        token=token,
    )
    status, _ = await raw.call(
        "POST",
        f"{RBAC}/namespaces/default/rolebindings",
        binding("n", "ClusterRole", "admin", target),
        token=token,
    )
    assert status == 403


async def test_role_ref_is_immutable(raw: Raw) -> None:
    await raw.ok(
        "POST", f"{RBAC}/namespaces/default/rolebindings", binding("r", "ClusterRole", "view", USER_DAVE)
    )
    status, body = await raw.call(
        "PATCH",
        f"{RBAC}/namespaces/default/rolebindings/r",
        {"roleRef": {"name": "edit"}},
        content_type="application/merge-patch+json",
    )
    assert status == 422
    assert "cannot change roleRef" in body["message"]


async def test_impersonation_needs_the_impersonate_verb(sim: SimServer, raw: Raw) -> None:
    headers = {"Authorization": f"Bearer {sim.admin_token}", "Impersonate-User": "dave"}
    async with raw.session.get(sim.url + "/api/v1/namespaces", headers=headers) as response:
        assert response.status == 403  # admin may impersonate, but dave may not list namespaces
    headers["Authorization"] = f"Bearer {sim.user_token('erin')}"
    async with raw.session.get(sim.url + "/api/v1/namespaces", headers=headers) as response:
        body = await response.json()
    assert response.status == 403
    assert body["message"] == (
        'users "dave" is forbidden: User "erin" cannot impersonate resource "users" '
        'in API group "" at the cluster scope'
    )


async def test_a_labelled_cluster_role_is_aggregated_into_view_and_leaves_it_again(
    sim: SimServer, raw: Raw
) -> None:
    extra = {"apiGroups": ["test.zsp.dev"], "resources": ["gadgets"], "verbs": ["get", "list", "watch"]}
    labelled = {
        "metadata": {
            "name": "gadget-viewer",
            "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
        },
        "rules": [extra],
    }
    await raw.ok("POST", f"{RBAC}/clusterroles", labelled)
    await sim.settle()
    assert extra in (await raw.ok("GET", f"{RBAC}/clusterroles/view"))["rules"]
    assert (
        extra in (await raw.ok("GET", f"{RBAC}/clusterroles/admin"))["rules"]
    )  # admin aggregates edit, edit view
    await raw.ok("DELETE", f"{RBAC}/clusterroles/gadget-viewer")
    await sim.settle()
    assert extra not in (await raw.ok("GET", f"{RBAC}/clusterroles/view"))["rules"]
