"""Smoke story, written once and run on every tier: the API server does what the operator needs.

Covered:
- the committed CRDs apply through the API (create, or replace when present) and become
  Established, with their names, short names and categories;
- RBAC follows a RoleBinding for a ServiceAccount's own TokenRequest token: a
  SelfSubjectAccessReview made *with that token* allows `list pods` while the binding exists,
  and refuses it shortly after the binding is deleted (the authorizer's cache lags a little);
  a real `list pods` with the token agrees both times;
- the CRDs themselves (CEL rules, minLength) refuse an AccessRequest with a blank reason or
  with two grantees, naming the field; a valid one is stored with its defaults applied.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from tiers import Cluster, api_error, apply_crds, call_json, condition_true, load_crds
from zsp_operator.core import constants as c

SETTLE_WITHIN = 5.0  # seconds: RBAC caches lag milliseconds on a real API server
TOKEN_SECONDS = 600  # TokenRequest's floor


async def can(api: client.ApiClient, verb: str, resource: str, namespace: str) -> bool:
    """SelfSubjectAccessReview as whoever `api` authenticates as."""
    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(namespace=namespace, verb=verb, resource=resource)
        )
    )
    result = await client.AuthorizationV1Api(api).create_self_subject_access_review(review)
    return bool(result.status.allowed)


async def eventually(
    probe: Callable[[], Awaitable[bool]], wanted: bool, what: str, within: float = SETTLE_WITHIN
) -> None:
    """Poll `probe` until it returns `wanted`; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while await probe() != wanted:
        assert time.monotonic() < deadline, f"not {what} within {within}s"
        await asyncio.sleep(0.05)


async def test_crds_apply_through_the_api_and_become_established(cluster: Cluster) -> None:
    crds = load_crds()
    assert [crd["spec"]["names"]["kind"] for crd in crds] == [
        c.KIND_POLICY,
        c.KIND_REQUEST,
        c.KIND_GRANT,
    ]
    async with cluster.api_client() as api:
        await apply_crds(api, crds)  # already installed by the fixture: this is the update path
        ext = client.ApiextensionsV1Api(api)
        for crd in crds:
            stored = await call_json(
                ext.read_custom_resource_definition(crd["metadata"]["name"], _preload_content=False)
            )
            assert condition_true(stored, "Established")
            assert stored["spec"]["names"]["shortNames"] == crd["spec"]["names"]["shortNames"]
            assert stored["spec"]["names"]["categories"] == ["zsp"]
            assert stored["spec"]["scope"] == crd["spec"]["scope"]


async def test_rbac_follows_the_role_binding_for_the_accounts_own_token(
    cluster: Cluster, namespace: str
) -> None:
    async with cluster.api_client() as admin:
        core = client.CoreV1Api(admin)
        rbac = client.RbacAuthorizationV1Api(admin)
        await core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="worker"))
        )
        await rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="pod-reader"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"])],
            ),
        )
        await rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="worker-reads-pods"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"
                ),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name="worker", namespace=namespace)],
            ),
        )
        issued = await core.create_namespaced_service_account_token(
            "worker",
            namespace,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=TOKEN_SECONDS)
            ),
        )
    token = issued.status.token
    assert token
    expires = issued.status.expiration_timestamp
    assert expires > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=TOKEN_SECONDS - 60)

    async with cluster.api_client(token) as worker:
        # A real authorizer reads RBAC from an informer cache: the binding shows within ms.
        await eventually(lambda: can(worker, "list", "pods", namespace), True, "allowed")
        assert not await can(worker, "delete", "pods", namespace)
        assert not await can(worker, "list", "pods", "default")
        pods = await client.CoreV1Api(worker).list_namespaced_pod(namespace)
        assert pods.items == []

        async with cluster.api_client() as admin:
            await client.RbacAuthorizationV1Api(admin).delete_namespaced_role_binding(
                "worker-reads-pods", namespace
            )

        await eventually(lambda: can(worker, "list", "pods", namespace), False, "refused")
        with pytest.raises(ApiException) as refused:
            await client.CoreV1Api(worker).list_namespaced_pod(namespace)
        assert refused.value.status == 403


VALID_REQUEST: dict[str, Any] = {
    "apiVersion": c.API_VERSION,
    "kind": c.KIND_REQUEST,
    "metadata": {"name": "smoke"},
    "spec": {
        "grantee": {"serviceAccount": {"namespace": "ci", "name": "deployer"}},
        "permission": "deploy",
        "ttl": "10m",
        "reason": "smoke test of the CRD validation",
    },
}


def _request(name: str, **spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(VALID_REQUEST)
    body["metadata"]["name"] = name
    body["spec"].update(spec)
    return body


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        pytest.param(_request("empty-reason", reason=""), "spec.reason", None, id="empty-reason"),
        pytest.param(
            _request("blank-reason", reason="   "),
            "spec.reason",
            "reason must say why the access is needed",
            id="blank-reason",
        ),
        pytest.param(
            _request(
                "two-grantees",
                grantee={"serviceAccount": {"namespace": "ci", "name": "deployer"}, "ephemeral": {}},
            ),
            "spec.grantee",
            "set exactly one of grantee.serviceAccount or grantee.ephemeral",
            id="two-grantees",
        ),
    ],
)
async def test_crds_refuse_a_malformed_access_request_naming_the_field(
    cluster: Cluster, namespace: str, body: dict[str, Any], field: str, message: str | None
) -> None:
    async with cluster.api_client() as api:
        objects = client.CustomObjectsApi(api)
        with pytest.raises(ApiException) as refused:
            await objects.create_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PLURAL_REQUEST, body
            )
    assert refused.value.status == 422, refused.value.body
    status = api_error(refused.value)
    assert status.get("reason") == "Invalid", status
    assert field in status["message"], status["message"]
    if message is not None:
        assert message in status["message"], status["message"]
    causes = status.get("details", {}).get("causes", [])
    assert any(cause.get("field") == field for cause in causes), causes


async def test_crds_store_a_valid_access_request_with_defaults(cluster: Cluster, namespace: str) -> None:
    async with cluster.api_client() as api:
        objects = client.CustomObjectsApi(api)
        created = await objects.create_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.PLURAL_REQUEST, _request("valid", unknownField=1)
        )
        assert created["spec"]["reason"] == VALID_REQUEST["spec"]["reason"]
        assert created["spec"]["done"] is False  # defaulted by the API server
        assert "unknownField" not in created["spec"]  # pruned: not in the schema
        assert "status" not in created or not created["status"].get("phase")
