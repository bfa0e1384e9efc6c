"""Discovery documents, health endpoints and version, as kopf and kubectl read them."""

from __future__ import annotations

from simkit import GROUP, Raw


async def test_core_group_lists_resources_with_verbs_and_subresources(raw: Raw) -> None:
    assert (await raw.ok("GET", "/api"))["versions"] == ["v1"]
    listing = await raw.ok("GET", "/api/v1")
    by_name = {resource["name"]: resource for resource in listing["resources"]}
    assert listing["kind"] == "APIResourceList"
    assert by_name["namespaces"]["namespaced"] is False
    assert by_name["events"]["kind"] == "Event"
    assert by_name["configmaps"]["shortNames"] == ["cm"]
    assert set(by_name["pods"]["verbs"]) >= {"create", "get", "list", "watch", "patch", "delete"}
    assert by_name["serviceaccounts/token"]["kind"] == "TokenRequest"
    assert by_name["serviceaccounts/token"]["verbs"] == ["create"]
    assert by_name["pods/status"]["verbs"] == ["get", "patch", "update"]


async def test_group_list_holds_builtins_and_served_crds(raw: Raw) -> None:
    groups = {group["name"]: group for group in (await raw.ok("GET", "/apis"))["groups"]}
    for name in ("apiextensions.k8s.io", "rbac.authorization.k8s.io", "events.k8s.io", "apps", "batch",
                 "coordination.k8s.io", "admissionregistration.k8s.io", "authorization.k8s.io",
                 "authentication.k8s.io", GROUP):
        assert name in groups
    assert groups[GROUP]["preferredVersion"] == {"groupVersion": f"{GROUP}/v1", "version": "v1"}
    crds = await raw.ok("GET", "/apis/apiextensions.k8s.io/v1")
    assert "customresourcedefinitions" in {r["name"] for r in crds["resources"]}
    gadgets = {r["name"]: r for r in (await raw.ok("GET", f"/apis/{GROUP}/v1"))["resources"]}
    assert gadgets["gadgets"]["shortNames"] == ["gd"]
    assert gadgets["gadgets"]["categories"] == ["zsp"]
    assert "gadgets/status" in gadgets


async def test_unknown_group_version_is_a_404_status(raw: Raw) -> None:
    status, body = await raw.call("GET", "/apis/nope.example.com/v1")
    assert status == 404
    assert body["kind"] == "Status"
    assert body["reason"] == "NotFound"


async def test_health_and_version_answer_without_credentials(raw: Raw) -> None:
    for path in ("/healthz", "/readyz", "/livez"):
        assert await raw.call("GET", path, token="") == (200, "ok")
    status, version = await raw.call("GET", "/version", token="")
    assert status == 200
    assert version["major"] == "1"


async def test_openapi_v3_advertises_field_validation_per_kind(raw: Raw) -> None:
    root = await raw.ok("GET", "/openapi/v3")
    assert root["paths"]["api/v1"]["serverRelativeURL"] == "/openapi/v3/api/v1"
    document = await raw.ok("GET", "/openapi/v3/api/v1")
    patch = document["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "ConfigMap"
    assert "fieldValidation" in {parameter["name"] for parameter in patch["parameters"]}
