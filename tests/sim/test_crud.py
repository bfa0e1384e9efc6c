"""Create, read, update, patch: metadata bookkeeping, conflicts, status subresource, patches, dry run."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException
from simkit import GADGETS, Raw, gadget

from zsp_operator.sim import SimServer


async def test_create_sets_uid_timestamp_and_increasing_resource_versions(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    first = await core.create_namespaced_config_map("default", {"metadata": {"name": "one"}})
    second = await core.create_namespaced_config_map("default", {"metadata": {"name": "two"}})
    assert first.metadata.uid != second.metadata.uid
    assert first.metadata.creation_timestamp is not None
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    read = await core.read_namespaced_config_map("one", "default")
    assert read.metadata.resource_version == first.metadata.resource_version


async def test_duplicate_name_is_409_already_exists(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_secret("default", {"metadata": {"name": "s"}})
    with pytest.raises(ApiException) as error:
        await core.create_namespaced_secret("default", {"metadata": {"name": "s"}})
    assert error.value.status == 409
    assert '"reason":"AlreadyExists"' in error.value.body
    assert 'secrets \\"s\\" already exists' in error.value.body


async def test_missing_object_and_missing_namespace_are_404(raw: Raw) -> None:
    status, body = await raw.call("GET", "/api/v1/namespaces/default/configmaps/absent")
    assert (status, body["message"]) == (404, 'configmaps "absent" not found')
    assert body["details"] == {"name": "absent", "kind": "configmaps"}
    status, body = await raw.call("POST", "/api/v1/namespaces/nowhere/configmaps", {"metadata": {"name": "x"}})
    assert (status, body["message"]) == (404, 'namespaces "nowhere" not found')


async def test_generate_name_appends_five_random_characters(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    made = await core.create_namespaced_config_map("default", {"metadata": {"generateName": "job-"}})
    other = await core.create_namespaced_config_map("default", {"metadata": {"generateName": "job-"}})
    assert made.metadata.name.startswith("job-")
    assert len(made.metadata.name) == len("job-") + 5
    assert made.metadata.name != other.metadata.name


async def test_stale_resource_version_on_update_is_409_conflict(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    created = await core.create_namespaced_config_map("default", {"metadata": {"name": "c"}, "data": {"a": "1"}})
    await core.patch_namespaced_config_map("c", "default", {"data": {"a": "2"}})
    created.data = {"a": "3"}
    with pytest.raises(ApiException) as error:
        await core.replace_namespaced_config_map("c", "default", created)
    assert error.value.status == 409
    assert "the object has been modified" in error.value.body


async def test_stale_resource_version_in_a_merge_patch_is_409(raw: Raw) -> None:
    created = await raw.ok("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "p"}})
    await raw.ok("PATCH", "/api/v1/namespaces/default/configmaps/p", {"data": {"x": "1"}},
                 content_type="application/merge-patch+json")
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "data": {"x": "2"}}
    status, body = await raw.call("PATCH", "/api/v1/namespaces/default/configmaps/p", stale,
                                  content_type="application/merge-patch+json")
    assert (status, body["reason"]) == (409, "Conflict")


async def test_an_update_that_changes_nothing_keeps_the_resource_version(raw: Raw) -> None:
    created = await raw.ok("POST", "/api/v1/namespaces/default/configmaps",
                           {"metadata": {"name": "same"}, "data": {"k": "v"}})
    again = await raw.ok("PATCH", "/api/v1/namespaces/default/configmaps/same", {"data": {"k": "v"}},
                         content_type="application/merge-patch+json")
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_generation_counts_spec_changes_only(raw: Raw) -> None:
    created = await raw.ok("POST", GADGETS, gadget("g"))
    assert created["metadata"]["generation"] == 1
    labelled = await raw.ok("PATCH", f"{GADGETS}/g", {"metadata": {"labels": {"a": "b"}}},
                            content_type="application/merge-patch+json")
    assert labelled["metadata"]["generation"] == 1
    status = await raw.ok("PATCH", f"{GADGETS}/g/status", {"status": {"phase": "Ready"}},
                          content_type="application/merge-patch+json")
    assert status["metadata"]["generation"] == 1
    resized = await raw.ok("PATCH", f"{GADGETS}/g", {"spec": {"size": 5}},
                           content_type="application/merge-patch+json")
    assert resized["metadata"]["generation"] == 2


async def test_status_subresource_separates_spec_and_status_writes(raw: Raw) -> None:
    body = gadget("s")
    body["status"] = {"phase": "Forged"}
    created = await raw.ok("POST", GADGETS, body)
    assert "status" not in created  # status is not writable on create
    both = {"spec": {"size": 7}, "status": {"phase": "Ignored"}}
    main = await raw.ok("PATCH", f"{GADGETS}/s", both, content_type="application/merge-patch+json")
    assert main["spec"]["size"] == 7
    assert "status" not in main
    sub = await raw.ok("PATCH", f"{GADGETS}/s/status", {"spec": {"size": 9}, "status": {"phase": "Ready"}},
                       content_type="application/merge-patch+json")
    assert sub["status"] == {"phase": "Ready"}
    assert sub["spec"]["size"] == 7
    assert (await raw.call("DELETE", f"{GADGETS}/s/status"))[0] == 405


async def test_json_patch_applies_operations_and_fails_a_test_with_422(raw: Raw) -> None:
    await raw.ok("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "j"}, "data": {"a": "1"}})
    patched = await raw.ok("PATCH", "/api/v1/namespaces/default/configmaps/j", [
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "add", "path": "/data/b", "value": "2"},
        {"op": "remove", "path": "/data/a"},
    ], content_type="application/json-patch+json")
    assert patched["data"] == {"b": "2"}
    status, body = await raw.call("PATCH", "/api/v1/namespaces/default/configmaps/j", [
        {"op": "test", "path": "/data/b", "value": "nope"},
        {"op": "replace", "path": "/data/b", "value": "3"},
    ], content_type="application/json-patch+json")
    assert (status, body["reason"]) == (422, "Invalid")
    assert (await raw.ok("GET", "/api/v1/namespaces/default/configmaps/j"))["data"] == {"b": "2"}


async def test_merge_patch_null_deletes_a_key(raw: Raw) -> None:
    await raw.ok("POST", "/api/v1/namespaces/default/configmaps",
                 {"metadata": {"name": "m", "labels": {"a": "1", "b": "2"}}})
    patched = await raw.ok("PATCH", "/api/v1/namespaces/default/configmaps/m",
                           {"metadata": {"labels": {"a": None, "c": "3"}}},
                           content_type="application/merge-patch+json")
    assert patched["metadata"]["labels"] == {"b": "2", "c": "3"}


async def test_apply_patch_is_415_and_strategic_merge_is_415_for_custom_resources(raw: Raw) -> None:
    await raw.ok("POST", GADGETS, gadget("a"))
    status, body = await raw.call("PATCH", f"{GADGETS}/a", {"spec": {}}, content_type="application/apply-patch+yaml")
    assert status == 415
    assert "server-side apply" in body["message"]
    status, _ = await raw.call("PATCH", f"{GADGETS}/a", {"spec": {}},
                               content_type="application/strategic-merge-patch+json")
    assert status == 415


async def test_typed_client_strategic_merge_patch_works_for_builtins(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map("default", {"metadata": {"name": "smp"}})
    patched = await core.patch_namespaced_config_map("smp", "default", {"metadata": {"labels": {"x": "y"}}})
    assert patched.metadata.labels == {"x": "y"}


async def test_dry_run_validates_but_stores_nothing(raw: Raw) -> None:
    status, body = await raw.call("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "dry"}},
                                  dryRun="All")
    assert status == 201
    assert body["metadata"]["uid"]
    assert (await raw.call("GET", "/api/v1/namespaces/default/configmaps/dry"))[0] == 404
    status, body = await raw.call("POST", GADGETS, {**gadget("dry"), "spec": {}}, dryRun="All")
    assert status == 422


async def test_cluster_wide_list_of_a_namespaced_kind(raw: Raw) -> None:
    await raw.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "other"}})
    await raw.ok("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "here"}})
    await raw.ok("POST", "/api/v1/namespaces/other/configmaps", {"metadata": {"name": "there"}})
    listing = await raw.ok("GET", "/api/v1/configmaps")
    assert listing["kind"] == "ConfigMapList"
    assert listing["apiVersion"] == "v1"
    assert int(listing["metadata"]["resourceVersion"]) > 0
    assert {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listing["items"]} == {
        ("default", "here"), ("other", "there")}


async def test_secret_string_data_is_stored_as_base64_data(api: client.ApiClient) -> None:
    created = await client.CoreV1Api(api).create_namespaced_secret(
        "default", {"metadata": {"name": "sd"}, "stringData": {"token": "abc"}})
    assert created.data == {"token": "YWJj"}
    assert created.type == "Opaque"


async def test_invalid_object_name_is_422(raw: Raw) -> None:
    status, body = await raw.call("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "Bad_Name"}})
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert body["message"].startswith('ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"')


async def test_missing_token_is_401_and_a_user_token_authenticates(sim: SimServer, raw: Raw) -> None:
    status, body = await raw.call("GET", "/api/v1/namespaces", token="")
    assert (status, body["reason"]) == (401, "Unauthorized")
    assert (await raw.call("GET", "/api/v1/namespaces", token="made-up"))[0] == 401
    review = await raw.ok("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                          {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                          token=sim.user_token("alice", ["platform-leads"]))
    assert review["status"]["userInfo"] == {"username": "alice",
                                            "groups": ["platform-leads", "system:authenticated"]}
