"""Deletion: finalizers, preconditions, propagation policies, garbage collection, namespaces."""

from __future__ import annotations

from typing import Any

from simkit import GADGETS, Raw, gadget

from zsp_operator.sim import SimServer

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def owned_by(owner: dict[str, Any], name: str, *, block: bool = False) -> dict[str, Any]:
    reference = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
                 "uid": owner["metadata"]["uid"]}
    if block:
        reference["blockOwnerDeletion"] = True
    return {"metadata": {"name": name, "ownerReferences": [reference]}}


async def exists(raw: Raw, path: str) -> bool:
    status, _ = await raw.call("GET", path)
    return status == 200


async def test_delete_without_finalizers_removes_at_once_with_a_success_status(raw: Raw) -> None:
    created = await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "gone"}})
    status, body = await raw.call("DELETE", f"{CONFIGMAPS}/gone")
    assert status == 200
    assert body["kind"] == "Status"
    assert body["status"] == "Success"
    assert body["details"] == {"name": "gone", "kind": "configmaps", "uid": created["metadata"]["uid"]}
    assert not await exists(raw, f"{CONFIGMAPS}/gone")
    assert (await raw.call("DELETE", f"{CONFIGMAPS}/gone"))[0] == 404


async def test_custom_resources_answer_delete_with_the_object(raw: Raw) -> None:
    await raw.ok("POST", GADGETS, gadget("g"))
    body = await raw.ok("DELETE", f"{GADGETS}/g")
    assert body["kind"] == "Gadget"


async def test_finalizers_hold_the_object_until_emptied(raw: Raw) -> None:
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "held", "finalizers": ["zsp.dev/test"]}})
    deleting = await raw.ok("DELETE", f"{CONFIGMAPS}/held")
    assert deleting["metadata"]["deletionTimestamp"]
    assert await exists(raw, f"{CONFIGMAPS}/held")
    status, body = await raw.call("PATCH", f"{CONFIGMAPS}/held",
                                  {"metadata": {"finalizers": ["zsp.dev/test", "zsp.dev/late"]}},
                                  content_type="application/merge-patch+json")
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "metadata.finalizers"
    assert "no new finalizers can be added if the object is being deleted" in body["message"]
    await raw.ok("PATCH", f"{CONFIGMAPS}/held", {"metadata": {"finalizers": None}},
                 content_type="application/merge-patch+json")
    assert not await exists(raw, f"{CONFIGMAPS}/held")


async def test_preconditions_on_uid_and_resource_version(raw: Raw) -> None:
    created = await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "pre"}})
    status, body = await raw.call("DELETE", f"{CONFIGMAPS}/pre", {"preconditions": {"uid": "not-it"}})
    assert (status, body["reason"]) == (409, "Conflict")
    assert "Precondition failed: UID in precondition: not-it" in body["message"]
    status, _ = await raw.call("DELETE", f"{CONFIGMAPS}/pre", {"preconditions": {"resourceVersion": "1"}})
    assert status == 409
    await raw.ok("DELETE", f"{CONFIGMAPS}/pre", {"preconditions": {"uid": created["metadata"]["uid"]}})


async def test_background_deletion_collects_dependents_recursively(sim: SimServer, raw: Raw) -> None:
    owner = await raw.ok("POST", GADGETS, gadget("owner"))
    child = await raw.ok("POST", CONFIGMAPS, owned_by(owner, "child"))
    await raw.ok("POST", CONFIGMAPS, owned_by(child, "grandchild"))
    await raw.ok("DELETE", f"{GADGETS}/owner")
    await sim.settle()
    assert not await exists(raw, f"{CONFIGMAPS}/child")
    assert not await exists(raw, f"{CONFIGMAPS}/grandchild")


async def test_a_dependent_with_another_live_owner_only_loses_the_reference(sim: SimServer, raw: Raw) -> None:
    first = await raw.ok("POST", GADGETS, gadget("first"))
    second = await raw.ok("POST", GADGETS, gadget("second"))
    shared = owned_by(first, "shared")
    shared["metadata"]["ownerReferences"] += owned_by(second, "x")["metadata"]["ownerReferences"]
    await raw.ok("POST", CONFIGMAPS, shared)
    await raw.ok("DELETE", f"{GADGETS}/first")
    await sim.settle()
    left = await raw.ok("GET", f"{CONFIGMAPS}/shared")
    assert [ref["name"] for ref in left["metadata"]["ownerReferences"]] == ["second"]


async def test_orphan_deletion_keeps_dependents_without_the_reference(sim: SimServer, raw: Raw) -> None:
    owner = await raw.ok("POST", GADGETS, gadget("owner"))
    await raw.ok("POST", CONFIGMAPS, owned_by(owner, "kept"))
    await raw.ok("DELETE", f"{GADGETS}/owner", {"propagationPolicy": "Orphan"})
    await sim.settle()
    assert not await exists(raw, f"{GADGETS}/owner")
    kept = await raw.ok("GET", f"{CONFIGMAPS}/kept")
    assert "ownerReferences" not in kept["metadata"]


async def test_foreground_deletion_waits_for_blocking_dependents(sim: SimServer, raw: Raw) -> None:
    owner = await raw.ok("POST", GADGETS, gadget("owner"))
    blocking = owned_by(owner, "blocking", block=True)
    blocking["metadata"]["finalizers"] = ["zsp.dev/hold"]
    await raw.ok("POST", CONFIGMAPS, blocking)
    deleting = await raw.ok("DELETE", f"{GADGETS}/owner", {"propagationPolicy": "Foreground"})
    assert "foregroundDeletion" in deleting["metadata"]["finalizers"]
    await sim.settle()
    assert await exists(raw, f"{GADGETS}/owner")  # the dependent is still there
    dependent = await raw.ok("GET", f"{CONFIGMAPS}/blocking")
    assert dependent["metadata"]["deletionTimestamp"]
    await raw.ok("PATCH", f"{CONFIGMAPS}/blocking", {"metadata": {"finalizers": None}},
                 content_type="application/merge-patch+json")
    await sim.settle()
    assert not await exists(raw, f"{GADGETS}/owner")


async def test_an_object_whose_owner_never_existed_is_collected(sim: SimServer, raw: Raw) -> None:
    ghost = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "ghost", "uid": "00000000-0000-0000-0000-000000000000"}}
    await raw.ok("POST", CONFIGMAPS, owned_by(ghost, "dangling"))
    await sim.settle()
    assert not await exists(raw, f"{CONFIGMAPS}/dangling")


async def test_namespace_deletion_empties_it_then_removes_it(sim: SimServer, raw: Raw) -> None:
    await raw.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "doomed"}})
    await raw.ok("POST", "/api/v1/namespaces/doomed/configmaps", {"metadata": {"name": "plain"}})
    await raw.ok("POST", "/api/v1/namespaces/doomed/configmaps",
                 {"metadata": {"name": "held", "finalizers": ["zsp.dev/hold"]}})
    terminating = await raw.ok("DELETE", "/api/v1/namespaces/doomed")
    assert terminating["status"]["phase"] == "Terminating"
    await sim.settle()
    assert not await exists(raw, "/api/v1/namespaces/doomed/configmaps/plain")
    status, body = await raw.call("POST", "/api/v1/namespaces/doomed/configmaps", {"metadata": {"name": "new"}})
    assert status == 403
    assert "because it is being terminated" in body["message"]
    assert await exists(raw, "/api/v1/namespaces/doomed")
    await raw.ok("PATCH", "/api/v1/namespaces/doomed/configmaps/held", {"metadata": {"finalizers": None}},
                 content_type="application/merge-patch+json")
    await sim.settle()
    assert not await exists(raw, "/api/v1/namespaces/doomed")


async def test_delete_collection_honours_the_label_selector(raw: Raw) -> None:
    for name, labels in (("a", {"sweep": "yes"}), ("b", {"sweep": "yes"}), ("c", {})):
        await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": name, "labels": labels}})
    deleted = await raw.ok("DELETE", CONFIGMAPS, labelSelector="sweep=yes")
    assert deleted["kind"] == "ConfigMapList"
    assert sorted(item["metadata"]["name"] for item in deleted["items"]) == ["a", "b"]
    left = await raw.ok("GET", CONFIGMAPS)
    assert [item["metadata"]["name"] for item in left["items"]] == ["c"]


async def test_crd_deletion_stops_serving_and_drops_its_objects(sim: SimServer, raw: Raw) -> None:
    await raw.ok("POST", GADGETS, gadget("doomed"))
    await raw.ok("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.test.zsp.dev")
    await sim.settle()
    assert (await raw.call("GET", GADGETS))[0] == 404
    groups = {group["name"] for group in (await raw.ok("GET", "/apis"))["groups"]}
    assert "test.zsp.dev" not in groups
    assert sim.store.list(("test.zsp.dev", "gadgets")) == []
