"""Lists in chunks (`limit` + `continue`) and at a resourceVersion, as etcd-backed lists behave."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client
from simkit import Raw

from zsp_operator.sim import SimServer
from zsp_operator.sim.errors import ApiError
from zsp_operator.sim.paging import decode_continue, encode_continue, list_objects
from zsp_operator.sim.resources import Registry
from zsp_operator.sim.store import Store

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
ALL_CONFIGMAPS = "/api/v1/configmaps"


async def make(raw: Raw, *names: str, labels: dict[str, str] | None = None) -> None:
    for name in names:
        await raw.ok(
            "POST", CONFIGMAPS, {"metadata": {"name": name, "labels": labels or {}}, "data": {"v": "1"}}
        )


async def test_pages_follow_continue_tokens_in_key_order(raw: Raw) -> None:
    await make(raw, "e", "c", "a", "d", "b")
    first = await raw.ok("GET", CONFIGMAPS, limit="2")
    assert [item["metadata"]["name"] for item in first["items"]] == ["a", "b"]
    assert first["metadata"]["remainingItemCount"] == 3
    assert decode_continue(first["metadata"]["continue"]) == (
        int(first["metadata"]["resourceVersion"]),
        "b\x00",
    )
    second = await raw.ok("GET", CONFIGMAPS, limit="2", **{"continue": first["metadata"]["continue"]})
    assert [item["metadata"]["name"] for item in second["items"]] == ["c", "d"]
    last = await raw.ok("GET", CONFIGMAPS, limit="2", **{"continue": second["metadata"]["continue"]})
    assert [item["metadata"]["name"] for item in last["items"]] == ["e"]
    assert "continue" not in last["metadata"]
    assert "remainingItemCount" not in last["metadata"]
    exact = await raw.ok("GET", CONFIGMAPS, limit="5")
    assert len(exact["items"]) == 5
    assert "continue" not in exact["metadata"]  # no key follows a full page


async def test_later_pages_show_the_list_as_it_was_at_the_first(raw: Raw) -> None:
    await make(raw, "a", "b", "c")
    first = await raw.ok("GET", CONFIGMAPS, limit="1")
    await raw.ok(
        "PATCH", f"{CONFIGMAPS}/b", {"data": {"v": "2"}}, content_type="application/merge-patch+json"
    )
    await raw.ok("DELETE", f"{CONFIGMAPS}/c")
    await make(raw, "bb")
    rest = await raw.ok("GET", CONFIGMAPS, limit="10", **{"continue": first["metadata"]["continue"]})
    assert [(i["metadata"]["name"], i["data"]["v"]) for i in rest["items"]] == [("b", "1"), ("c", "1")]
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert rest["items"][0]["kind"] == "ConfigMap"


async def test_selectors_page_over_matches_and_give_no_remaining_count(raw: Raw) -> None:
    await make(raw, "a", "c", labels={"pick": "yes"})
    await make(raw, "b", "d")
    first = await raw.ok("GET", CONFIGMAPS, limit="1", labelSelector="pick=yes")
    assert [i["metadata"]["name"] for i in first["items"]] == ["a"]
    assert "remainingItemCount" not in first["metadata"]
    rest = await raw.ok(
        "GET", CONFIGMAPS, limit="1", labelSelector="pick=yes", **{"continue": first["metadata"]["continue"]}
    )
    assert [i["metadata"]["name"] for i in rest["items"]] == ["c"]
    assert "continue" in rest["metadata"]  # "d" follows, though it will not match: the server cannot know
    end = await raw.ok(
        "GET", CONFIGMAPS, limit="1", labelSelector="pick=yes", **{"continue": rest["metadata"]["continue"]}
    )
    assert end["items"] == []
    assert "continue" not in end["metadata"]


async def test_all_namespaces_are_listed_namespace_by_namespace(raw: Raw) -> None:
    await raw.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "ns-a"}})
    await raw.ok("POST", "/api/v1/namespaces/ns-a/configmaps", {"metadata": {"name": "z"}})
    await make(raw, "y")
    listed = await raw.ok("GET", ALL_CONFIGMAPS)
    where = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listed["items"]]
    assert where.index(("default", "y")) < where.index(("ns-a", "z"))
    first = await raw.ok("GET", ALL_CONFIGMAPS, limit="1")
    assert decode_continue(first["metadata"]["continue"])[1] == "/".join(where[0]) + "\x00"


BAD_OPTIONS = [
    ({"continue": "not-a-token"}, 400, "invalid continue token: continue key is not valid"),
    (
        {"continue": encode_continue(5, "a\x00"), "resourceVersion": "5"},
        400,
        "specifying resource version is not allowed when using continue",
    ),
    (
        {"resourceVersionMatch": "Exact"},
        422,
        "resourceVersionMatch is forbidden unless resourceVersion is provided",
    ),
    ({"limit": "many"}, 400, 'invalid value for "limit"'),
]


async def test_bad_list_options_are_refused(raw: Raw) -> None:
    for params, status, message in BAD_OPTIONS:
        code, body = await raw.call("GET", CONFIGMAPS, **params)
        assert code == status, params
        assert message in body["message"]


async def test_an_exact_resource_version_lists_the_past(raw: Raw) -> None:
    await make(raw, "a")
    before = await raw.ok("GET", CONFIGMAPS)
    await make(raw, "b")
    past = await raw.ok(
        "GET", CONFIGMAPS, resourceVersion=before["metadata"]["resourceVersion"], resourceVersionMatch="Exact"
    )
    assert [i["metadata"]["name"] for i in past["items"]] == ["a"]
    assert past["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_an_expired_token_is_410_with_one_to_continue_inconsistently() -> None:
    store = Store(log_size=2)
    rtype = Registry().lookup("", "v1", "configmaps")
    assert rtype is not None
    for name in ("a", "b", "c"):
        store.put(rtype.storage_key, {"metadata": {"name": name, "namespace": "default", "uid": name}})
    first = list_objects(store, rtype, "default", lambda obj: True, {"limit": "1"}, selective=False)
    for name in ("d", "e", "f"):
        store.put(rtype.storage_key, {"metadata": {"name": name, "namespace": "default", "uid": name}})
    with pytest.raises(ApiError) as expired:
        list_objects(
            store,
            rtype,
            "default",
            lambda obj: True,
            {"continue": first["metadata"]["continue"]},
            selective=False,
        )
    status: dict[str, Any] = expired.value.status()
    assert (status["code"], status["reason"]) == (410, "Expired")
    assert status["message"].startswith("The provided continue parameter is too old")
    assert decode_continue(status["metadata"]["continue"]) == (-1, "a\x00")
    rest = list_objects(
        store,
        rtype,
        "default",
        lambda obj: True,
        {"continue": status["metadata"]["continue"]},
        selective=False,
    )
    assert [i["metadata"]["name"] for i in rest["items"]] == ["b", "c", "d", "e", "f"]


async def test_the_typed_client_pages(sim: SimServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for name in ("p", "q", "r"):
        await core.create_namespaced_config_map("default", {"metadata": {"name": name}})
    page = await core.list_namespaced_config_map("default", limit=2)
    assert [c.metadata.name for c in page.items] == ["p", "q"]
    rest = await core.list_namespaced_config_map("default", limit=2, _continue=page.metadata._continue)
    assert [c.metadata.name for c in rest.items] == ["r"]
    assert rest.metadata._continue is None
