"""The rendered chart applied to an API server, on both tiers (sim always, envtest when
KUBEBUILDER_ASSETS is set).

Covered:
- every rendered object of a kind the server serves is accepted by a server-side dry run
  (defaults and the cert-manager variant; kinds the server does not serve, such as
  cert-manager's or the Prometheus Operator's, are left out);
- with the chart's RBAC created for real, the API server's own authorizer answers for the
  operator's ServiceAccount: Leases only in the release namespace and only the named one
  after creation, `bind` only on catalogued ClusterRoles, the CA bundle only in the chart's
  own webhook configurations, which it may not create.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from chartkit import Rendered, render
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from tiers import TIER_PARAMS, Cluster, call_json, tier_cluster, unique_name


@pytest.fixture(scope="module", params=TIER_PARAMS)
def apiserver(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    with tier_cluster(request.param) as found:
        yield found


@pytest.fixture
async def api(apiserver: Cluster) -> AsyncIterator[client.ApiClient]:
    async with apiserver.api_client() as api_client:
        yield api_client


async def _get(api: client.ApiClient, path: str) -> dict[str, Any]:
    return await call_json(
        api.call_api(
            path,
            "GET",
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
        )
    )


async def served_kinds(api: client.ApiClient) -> dict[tuple[str, str], tuple[str, bool]]:
    """(apiVersion, kind) -> (plural, namespaced), from discovery."""
    versions = ["v1"]
    groups = (await _get(api, "/apis"))["groups"]
    versions += [v["groupVersion"] for g in groups for v in g["versions"]]
    served: dict[tuple[str, str], tuple[str, bool]] = {}
    for version in versions:
        path = "/api/v1" if version == "v1" else f"/apis/{version}"
        for resource in (await _get(api, path))["resources"]:
            if "/" not in resource["name"]:
                served[(version, resource["kind"])] = (resource["name"], resource["namespaced"])
    return served


async def create(
    api: client.ApiClient, doc: dict[str, Any], plural: str, namespaced: bool, *, dry_run: bool
) -> dict[str, Any]:
    version = doc["apiVersion"]
    base = "/api/v1" if version == "v1" else f"/apis/{version}"
    namespace = doc["metadata"].get("namespace")
    path = f"{base}/namespaces/{namespace}/{plural}" if namespaced else f"{base}/{plural}"
    return await call_json(
        api.call_api(
            path,
            "POST",
            query_params=[("dryRun", "All")] if dry_run else [],
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=doc,
            auth_settings=["BearerToken"],
            _preload_content=False,
        )
    )


async def create_namespace(api: client.ApiClient, hint: str) -> str:
    name = unique_name(hint)
    await call_json(
        client.CoreV1Api(api).create_namespace({"metadata": {"name": name}}, _preload_content=False)
    )
    return name


def chart_for(namespace: str, values: dict[str, Any]) -> Rendered:
    """The chart with names of its own: several renders share one API server."""
    webhook = {"configurationName": f"{namespace}.zsp.dev", **values.get("webhook", {})}
    return render({**values, "fullnameOverride": namespace, "webhook": webhook}, namespace=namespace)


@pytest.mark.parametrize(
    "variant",
    [{}, {"webhook": {"certificate": {"source": "cert-manager"}}, "podDisruptionBudget": {"enabled": True}}],
    ids=["defaults", "cert-manager"],
)
async def test_every_rendered_object_passes_a_server_side_dry_run(
    api: client.ApiClient, variant: dict[str, Any]
) -> None:
    served = await served_kinds(api)
    namespace = await create_namespace(api, "chart-dry-run")
    rendered = chart_for(namespace, variant)
    accepted = []
    for doc in rendered.docs:
        where = served.get((doc["apiVersion"], doc["kind"]))
        if where is None:
            continue
        try:
            await create(api, doc, *where, dry_run=True)
        except ApiException as error:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} refused: {error.body!r}")
        accepted.append(doc["kind"])
    assert {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    } <= set(accepted)


async def allowed(
    api: client.ApiClient, user: str, verb: str, group: str, resource: str, **where: str
) -> bool:
    """The API server's SubjectAccessReview answer for a ServiceAccount; `resource` may be
    `plural/subresource`, `where` holds namespace and name."""
    plural, _, subresource = resource.partition("/")
    attributes = {"verb": verb, "group": group, "resource": plural, **where}
    if subresource:
        attributes["subresource"] = subresource
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "resourceAttributes": attributes,
        },
    }
    answer = await call_json(
        client.AuthorizationV1Api(api).create_subject_access_review(review, _preload_content=False)
    )
    return bool(answer["status"].get("allowed"))


async def test_the_api_server_authorizes_exactly_what_the_chart_means(api: client.ApiClient) -> None:
    served = await served_kinds(api)
    namespace = await create_namespace(api, "chart-rbac")
    rendered = chart_for(namespace, {"operator": {"catalog": ["view"]}})
    for doc in rendered.docs:
        if doc["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
            await create(api, doc, *served[(doc["apiVersion"], doc["kind"])], dry_run=False)
    user = f"system:serviceaccount:{namespace}:{rendered.one('ServiceAccount')['metadata']['name']}"
    lease = rendered.env_values["ZSP_LEASE_NAME"]
    configuration = f"{namespace}.zsp.dev"
    coordination, rbac, admission = (
        "coordination.k8s.io",
        "rbac.authorization.k8s.io",
        "admissionregistration.k8s.io",
    )

    expectations = [
        # Leader election: its own Lease, in its own namespace.
        ((("create", coordination, "leases"), {"namespace": namespace}), True),
        ((("update", coordination, "leases"), {"namespace": namespace, "name": lease}), True),
        ((("get", coordination, "leases"), {"namespace": namespace, "name": lease}), True),
        ((("update", coordination, "leases"), {"namespace": namespace, "name": "someone-else"}), False),
        ((("create", coordination, "leases"), {"namespace": "default"}), False),
        ((("delete", coordination, "leases"), {"namespace": namespace, "name": lease}), False),
        # bind on catalogued ClusterRoles only.
        ((("bind", rbac, "clusterroles"), {"name": "view"}), True),
        ((("bind", rbac, "clusterroles"), {"name": "cluster-admin"}), False),
        ((("escalate", rbac, "clusterroles"), {"name": "view"}), False),
        # The CA bundle of the chart's own webhook configurations; never new ones.
        ((("patch", admission, "mutatingwebhookconfigurations"), {"name": configuration}), True),
        ((("patch", admission, "validatingwebhookconfigurations"), {"name": configuration}), True),
        ((("patch", admission, "validatingwebhookconfigurations"), {"name": "other.example.org"}), False),
        ((("create", admission, "mutatingwebhookconfigurations"), {}), False),
        # Issuance: delivery Secrets and tokens of ServiceAccounts anywhere.
        ((("create", "", "secrets"), {"namespace": "default"}), True),
        ((("create", "", "serviceaccounts/token"), {"namespace": "default", "name": "x"}), True),
    ]
    wrong = []
    for ((verb, group, resource), where), expected in expectations:
        answer = await allowed(api, user, verb, group, resource, **where)
        if answer != expected:
            wrong.append(f"{verb} {group}/{resource} {where}: allowed={answer}, expected {expected}")
    assert wrong == []
