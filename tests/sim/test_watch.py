"""List and watch: resourceVersion semantics, selectors, bookmarks, timeouts, 410 Gone."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes_asyncio import client, watch
from simkit import Raw

from zsp_operator.sim import SimServer

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


async def read_events(sim: SimServer, raw: Raw, path: str, count: int, **params: str) -> list[dict[str, Any]]:
    """The first `count` events of a watch (raw newline-delimited JSON)."""
    events: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {sim.admin_token}"}
    async with raw.session.get(
        sim.url + path, params={"watch": "true", **params}, headers=headers
    ) as response:
        assert response.status == 200
        async for line in response.content:
            events.append(json.loads(line))
            if len(events) == count:
                break
    return events


async def test_watch_without_resource_version_starts_with_current_objects(sim: SimServer, raw: Raw) -> None:
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "old"}})
    events = await read_events(sim, raw, CONFIGMAPS, 1)
    assert events[0]["type"] == "ADDED"
    assert events[0]["object"]["metadata"]["name"] == "old"
    assert events[0]["object"]["kind"] == "ConfigMap"


async def test_watch_from_a_list_resource_version_sees_only_later_changes(sim: SimServer, raw: Raw) -> None:
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "before"}})
    since = (await raw.ok("GET", CONFIGMAPS))["metadata"]["resourceVersion"]
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "after"}})
    await raw.ok(
        "PATCH", f"{CONFIGMAPS}/after", {"data": {"a": "1"}}, content_type="application/merge-patch+json"
    )
    await raw.ok("DELETE", f"{CONFIGMAPS}/after")
    events = await read_events(sim, raw, CONFIGMAPS, 3, resourceVersion=since)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "after"),
        ("MODIFIED", "after"),
        ("DELETED", "after"),
    ]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)
    assert versions[0] > int(since)


async def test_live_events_reach_a_running_watch(sim: SimServer, raw: Raw) -> None:
    since = (await raw.ok("GET", CONFIGMAPS))["metadata"]["resourceVersion"]
    reader = asyncio.create_task(read_events(sim, raw, CONFIGMAPS, 1, resourceVersion=since))
    await asyncio.sleep(0.05)
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "live"}})
    events = await asyncio.wait_for(reader, 5)
    assert events[0]["type"] == "ADDED"


async def test_label_selector_turns_leaving_the_selection_into_deleted(sim: SimServer, raw: Raw) -> None:
    since = (await raw.ok("GET", CONFIGMAPS))["metadata"]["resourceVersion"]
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "a", "labels": {"tier": "web"}}})
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "b", "labels": {"tier": "db"}}})
    await raw.ok(
        "PATCH",
        f"{CONFIGMAPS}/a",
        {"metadata": {"labels": {"tier": "db"}}},
        content_type="application/merge-patch+json",
    )
    await raw.ok(
        "PATCH",
        f"{CONFIGMAPS}/b",
        {"metadata": {"labels": {"tier": "web"}}},
        content_type="application/merge-patch+json",
    )
    events = await read_events(sim, raw, CONFIGMAPS, 3, resourceVersion=since, labelSelector="tier=web")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"),
        ("DELETED", "a"),
        ("ADDED", "b"),
    ]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", {"a"}),
        ("tier==web", {"a"}),
        ("tier!=web", {"b", "c"}),
        ("tier in (web, db)", {"a", "b"}),
        ("tier notin (web)", {"b", "c"}),
        ("tier", {"a", "b"}),
        ("!tier", {"c"}),
        ("tier,env=prod", {"b"}),
    ],
)
async def test_label_selectors_on_list(raw: Raw, selector: str, expected: set[str]) -> None:
    for name, labels in (("a", {"tier": "web"}), ("b", {"tier": "db", "env": "prod"}), ("c", {})):
        await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": name, "labels": labels}})
    listing = await raw.ok("GET", CONFIGMAPS, labelSelector=selector)
    assert {item["metadata"]["name"] for item in listing["items"]} == expected


async def test_field_selector_on_name_and_namespace(raw: Raw) -> None:
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "x"}})
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "y"}})
    listing = await raw.ok(
        "GET", "/api/v1/configmaps", fieldSelector="metadata.name=x,metadata.namespace=default"
    )
    assert [item["metadata"]["name"] for item in listing["items"]] == ["x"]
    listing = await raw.ok("GET", CONFIGMAPS, fieldSelector="metadata.name!=x")
    assert [item["metadata"]["name"] for item in listing["items"]] == ["y"]
    status, body = await raw.call("GET", CONFIGMAPS, fieldSelector="spec.secret=1")
    assert (status, body["reason"]) == (400, "BadRequest")
    assert (
        body["message"]
        == '"spec.secret" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )


async def test_events_select_on_their_involved_object(raw: Raw) -> None:
    events = "/api/v1/namespaces/default/events"
    for name, uid in (("one", "u-1"), ("two", "u-2")):
        involved = {"kind": "AccessRequest", "name": name, "namespace": "default", "uid": uid}
        body = {
            "metadata": {"name": f"{name}.1"},
            "involvedObject": involved,
            "reason": "Made",
            "source": {"component": "zsp-operator"},
            "type": "Normal",
        }
        await raw.ok("POST", events, body)
    for selector in (
        "involvedObject.uid=u-2",
        "involvedObject.name=two,involvedObject.namespace=default",
        "involvedObject.kind=AccessRequest,involvedObject.uid!=u-1",
        "source=zsp-operator,reason=Made",
    ):
        listing = await raw.ok("GET", events, fieldSelector=selector)
        assert "two.1" in [item["metadata"]["name"] for item in listing["items"]], selector
    listing = await raw.ok("GET", events, fieldSelector="involvedObject.uid=u-2")
    assert [item["metadata"]["name"] for item in listing["items"]] == ["two.1"]
    status, body = await raw.call("GET", events, fieldSelector="regarding.name=two")
    assert (status, body["message"]) == (400, "field label not supported: regarding.name")
    new_events = "/apis/events.k8s.io/v1/namespaces/default/events"
    await raw.ok(
        "POST", new_events, {"metadata": {"name": "n"}, "regarding": {"name": "two"}, "eventTime": None}
    )
    listing = await raw.ok("GET", new_events, fieldSelector="regarding.name=two")
    assert [item["metadata"]["name"] for item in listing["items"]] == ["n"]
    status, body = await raw.call("GET", new_events, fieldSelector="involvedObject.name=two")
    assert (status, body["message"]) == (400, "field label not supported: involvedObject.name")


async def test_a_resource_version_out_of_the_log_is_an_error_event_410() -> None:
    async with SimServer() as sim:
        sim.store._log = type(sim.store._log)(maxlen=3)  # a tiny log to make compaction visible
        async with client.ApiClient(_config(sim)) as api:
            core = client.CoreV1Api(api)
            first = await core.create_namespaced_config_map("default", {"metadata": {"name": "c0"}})
            for index in range(1, 6):
                await core.create_namespaced_config_map("default", {"metadata": {"name": f"c{index}"}})
            stream = watch.Watch().stream(
                core.list_namespaced_config_map, "default", resource_version=first.metadata.resource_version
            )
            with pytest.raises(client.ApiException) as error:
                async for _ in stream:
                    pass
            assert error.value.status == 410


async def test_bookmarks_and_timeout_seconds_end_the_stream(sim: SimServer, raw: Raw) -> None:
    headers = {"Authorization": f"Bearer {sim.admin_token}"}
    params = {"watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": "1", "resourceVersion": "1"}
    types = []
    async with raw.session.get(sim.url + CONFIGMAPS, params=params, headers=headers) as response:
        async for line in response.content:  # ends when the server closes the stream
            event = json.loads(line)
            types.append(event["type"])
            if event["type"] == "BOOKMARK":
                assert int(event["object"]["metadata"]["resourceVersion"]) >= 1
    assert "BOOKMARK" in types


async def test_send_initial_events_ends_with_a_marked_bookmark(sim: SimServer, raw: Raw) -> None:
    await raw.ok("POST", CONFIGMAPS, {"metadata": {"name": "now"}})
    events = await read_events(
        sim,
        raw,
        CONFIGMAPS,
        2,
        sendInitialEvents="true",
        resourceVersionMatch="NotOlderThan",
        allowWatchBookmarks="true",
    )
    assert events[0]["type"] == "ADDED"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_typed_client_watch_stream(sim: SimServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    listing = await core.list_namespaced_config_map("default")
    stream = watch.Watch().stream(
        core.list_namespaced_config_map,
        "default",
        resource_version=listing.metadata.resource_version,
        timeout_seconds=2,
    )
    await core.create_namespaced_config_map("default", {"metadata": {"name": "typed"}})
    async for event in stream:
        assert event["type"] == "ADDED"
        assert event["object"].metadata.name == "typed"
        break


def _config(sim: SimServer) -> client.Configuration:
    from simkit import configuration

    return configuration(sim)
