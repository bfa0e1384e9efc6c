"""Server-side printing: the Tables `kubectl get` asks for, columns and cells as kube-apiserver makes them."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from simkit import GADGET_CRD, GADGETS, GROUP, Raw, gadget

from zsp_operator.sim import SimServer
from zsp_operator.sim.printers import human_duration
from zsp_operator.sim.tables import json_path, table_version

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
START = 1_700_000_000.0  # 2023-11-14T22:13:20Z
TIMERS = f"/apis/{GROUP}/v1/namespaces/default/timers"
PLAIN = f"/apis/{GROUP}/v1/namespaces/default/plains"


def crd(plural: str, kind: str, columns: list[dict[str, Any]]) -> dict[str, Any]:
    made = copy.deepcopy(GADGET_CRD)
    made["metadata"]["name"] = f"{plural}.{GROUP}"
    made["spec"]["names"] = {"plural": plural, "kind": kind}
    made["spec"]["versions"][0]["additionalPrinterColumns"] = columns
    return made


TIMER_COLUMNS = [
    {"name": "Expires", "type": "date", "jsonPath": ".spec.until", "description": "when it ends"},
    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
    {"name": "Ratio", "type": "number", "jsonPath": ".spec.size"},
    {"name": "Big", "type": "boolean", "jsonPath": ".spec.mode"},
    {"name": "Tags", "type": "string", "jsonPath": ".spec.tags", "priority": 1},
    {"name": "Deploy", "type": "string", "jsonPath": '.spec.permissions[?(@.name=="deploy")].verbs'},
    {"name": "First", "type": "string", "jsonPath": ".spec.permissions[0].name"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def clock() -> Clock:
    return Clock()


@pytest.fixture
async def timed(clock: Clock) -> AsyncIterator[Raw]:
    crds = [GADGET_CRD, crd("timers", "Timer", TIMER_COLUMNS), crd("plains", "Plain", [])]
    async with SimServer(crds=crds, clock=clock) as server, aiohttp.ClientSession() as session:
        yield Raw(server, session)


async def get_table(raw: Raw, path: str, accept: str = TABLE, **params: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {raw.sim.admin_token}", "Accept": accept}
    async with raw.session.get(raw.sim.url + path, headers=headers, params=params) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        if body.get("kind") == "Table":
            version = body["apiVersion"].split("/")[1]
            assert response.headers["Content-Type"] == f"application/json;as=Table;v={version};g=meta.k8s.io"
        return body


def names(table: dict[str, Any]) -> list[str]:
    return [column["name"] for column in table["columnDefinitions"]]


async def test_printer_columns_follow_the_name_and_no_age_is_added(raw: Raw) -> None:
    await raw.ok("POST", GADGETS, gadget("tab", size=6))
    table = await get_table(raw, GADGETS)
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert names(table) == ["Name", "Size"]
    assert table["columnDefinitions"][0]["format"] == "name"
    assert table["columnDefinitions"][1]["description"] == (
        "Custom resource definition column (in JSONPath format): .spec.size"
    )
    assert table["rows"][0]["cells"] == ["tab", 6]


async def test_a_crd_without_columns_shows_name_and_age(timed: Raw, clock: Clock) -> None:
    await timed.ok("POST", PLAIN, {"metadata": {"name": "p"}, "spec": {"reason": "r"}})
    clock.now += 252
    table = await get_table(timed, PLAIN)
    assert names(table) == ["Name", "Age"]
    assert table["columnDefinitions"][1]["type"] == "date"
    assert table["rows"][0]["cells"] == ["p", "4m12s"]


async def test_date_columns_are_durations_since_the_timestamp(timed: Raw, clock: Clock) -> None:
    await timed.ok(
        "POST",
        TIMERS,
        {"metadata": {"name": "past"}, "spec": {"reason": "r", "until": "2023-11-14T19:13:20Z"}},
    )
    await timed.ok(
        "POST",
        TIMERS,
        {"metadata": {"name": "soon"}, "spec": {"reason": "r", "until": "2023-11-14T22:20:00Z"}},
    )
    await timed.ok("POST", TIMERS, {"metadata": {"name": "unset"}, "spec": {"reason": "r"}})
    clock.now += 3 * 86400 + 7200
    table = await get_table(timed, TIMERS)
    assert names(table) == ["Name", "Expires", "Size", "Ratio", "Big", "Tags", "Deploy", "First", "Age"]
    expires = {row["cells"][0]: row["cells"][1] for row in table["rows"]}
    assert expires == {"past": "3d5h", "soon": "3d1h", "unset": None}
    assert {row["cells"][-1] for row in table["rows"]} == {"3d2h"}
    assert table["columnDefinitions"][1]["description"] == "when it ends"


async def test_a_future_date_is_invalid_as_on_a_real_server(timed: Raw) -> None:
    await timed.ok(
        "POST",
        TIMERS,
        {"metadata": {"name": "later"}, "spec": {"reason": "r", "until": "2023-11-15T00:00:00Z"}},
    )
    table = await get_table(timed, f"{TIMERS}/later")
    assert table["rows"][0]["cells"][1] == "<invalid>"


async def test_cells_take_the_column_type(timed: Raw) -> None:
    spec = {
        "reason": "r",
        "size": 7,
        "tags": ["a", "b"],
        "permissions": [{"name": "read"}, {"name": "deploy", "verbs": ["get"]}],
    }
    await timed.ok("POST", TIMERS, {"metadata": {"name": "t"}, "spec": spec})
    table = await get_table(timed, f"{TIMERS}/t")
    _, _, size, ratio, big, tags, deploy, first, _ = table["rows"][0]["cells"]
    assert (size, ratio, big) == (7, 7.0, None)  # mode is a string: no boolean cell
    assert (tags, deploy, first) == ('["a","b"]', '["get"]', "read")
    assert table["columnDefinitions"][5]["priority"] == 1


async def test_rows_carry_metadata_the_object_or_nothing(raw: Raw) -> None:
    created = await raw.ok("POST", GADGETS, gadget("o"))
    row = (await get_table(raw, GADGETS))["rows"][0]
    assert row["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": created["metadata"],
    }
    row = (await get_table(raw, GADGETS, includeObject="Object"))["rows"][0]
    assert row["object"] == created
    row = (await get_table(raw, GADGETS, includeObject="None"))["rows"][0]
    assert "object" not in row


async def test_the_first_acceptable_media_type_decides(raw: Raw) -> None:
    await raw.ok("POST", GADGETS, gadget("m"))
    beta = await get_table(raw, GADGETS, accept="application/json;as=Table;v=v1beta1;g=meta.k8s.io")
    assert beta["apiVersion"] == "meta.k8s.io/v1beta1"
    assert beta["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1"
    plain = await get_table(
        raw, GADGETS, accept="application/json, application/json;as=Table;v=v1;g=meta.k8s.io"
    )
    assert plain["kind"] == "GadgetList"
    assert table_version("application/json;as=Table;g=meta.k8s.io;v=v1") == "v1"
    assert table_version("application/json;as=Table;g=other;v=v1,application/json") is None


async def test_built_in_kinds_print_their_own_columns(raw: Raw) -> None:
    await raw.ok(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}},
    )
    table = await get_table(raw, "/api/v1/namespaces/default/configmaps/c")
    assert names(table) == ["Name", "Data", "Age"]
    assert table["rows"][0]["cells"][:2] == ["c", 2]
    crds = await get_table(raw, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    assert names(crds) == ["Name", "Created At"]
    assert crds["rows"][0]["cells"][1].endswith("Z")
    event = {
        "metadata": {"name": "e"},
        "involvedObject": {"kind": "Gadget", "name": "g"},
        "reason": "Made",
        "message": " made it ",
        "type": "Normal",
        "source": {"component": "zsp"},
    }
    await raw.ok("POST", "/api/v1/namespaces/default/events", event)
    events = await get_table(raw, "/api/v1/namespaces/default/events")
    assert names(events) == [
        "Last Seen",
        "Type",
        "Reason",
        "Object",
        "Subobject",
        "Source",
        "Message",
        "First Seen",
        "Count",
        "Name",
    ]
    assert events["rows"][0]["cells"][1:7] == ["Normal", "Made", "gadget/g", "", "zsp", "made it"]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (252, "4m12s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60, "3h1m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (50 * 3600, "2d2h"),
        (7 * 86400, "7d"),
        (10 * 86400, "10d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_durations_read_like_kubectl(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_json_paths_of_printer_columns() -> None:
    obj = {
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}]
        },
        "metadata": {"annotations": {"a.b/c": "x"}},
    }
    assert json_path(obj, '.status.conditions[?(@.type=="Synced")].status') == ["False"]
    assert json_path(obj, ".status.conditions[*].type") == ["Ready", "Synced"]
    assert json_path(obj, ".status.conditions[-1].type") == ["Synced"]
    assert json_path(obj, ".metadata.annotations['a.b/c']") == ["x"]
    assert json_path(obj, "{.status.missing}") == []


async def test_watch_events_carry_one_row_tables_headers_first(raw: Raw) -> None:
    await raw.ok("POST", GADGETS, gadget("w1", size=1))
    await raw.ok("POST", GADGETS, gadget("w2", size=2))
    headers = {"Authorization": f"Bearer {raw.sim.admin_token}", "Accept": TABLE}
    async with raw.session.get(raw.sim.url + GADGETS, headers=headers, params={"watch": "true"}) as response:
        events = [json.loads(await response.content.readline()) for _ in range(2)]
    assert [event["type"] for event in events] == ["ADDED", "ADDED"]
    first, second = (event["object"] for event in events)
    assert (first["kind"], names(first)) == ("Table", ["Name", "Size"])
    assert "columnDefinitions" not in second
    assert [first["rows"][0]["cells"], second["rows"][0]["cells"]] == [["w1", 1], ["w2", 2]]
