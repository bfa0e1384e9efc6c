"""CRD validation order and list types, as kube-apiserver does them.

CEL rules run next to non-blocking schema errors (minLength, pattern, minimum, ...) and are
all skipped, with one `<nil>` cause saying so, when a blocking error (required, enum,
type, too long, too many) exists anywhere. `x-kubernetes-list-type` set/map refuse
duplicates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from simkit import GADGET_CRD, GADGETS, Raw, gadget

from zsp_operator.sim import SimServer
from zsp_operator.sim.cel import rule_errors
from zsp_operator.sim.schema import validate_object

NOT_CHECKED = (
    'Invalid value: "null": some validation rules were not checked because the object was invalid; '
    "correct the existing errors to complete validation"
)
SIZE_RULE = 'Invalid value: "object": sizes above 10 need mode big'
CRDS = Path(__file__).resolve().parents[2] / "crds"


async def causes_of(raw: Raw, body: dict[str, Any], path: str = GADGETS) -> list[tuple[str, str, str]]:
    status, answer = await raw.call("POST", path, body)
    assert status == 422, answer
    return [(c["field"], c["reason"], c["message"]) for c in answer["details"]["causes"]]


async def test_cel_rules_run_next_to_a_min_length_error(raw: Raw) -> None:
    causes = await causes_of(raw, gadget("g", reason=""))
    assert causes == [
        (
            "spec.reason",
            "FieldValueInvalid",
            'Invalid value: "": spec.reason in body should be at least 1 chars long',
        ),
        ("spec.reason", "FieldValueInvalid", 'Invalid value: "string": reason must not be blank'),
    ]


async def test_cel_rules_run_next_to_a_pattern_error_parents_first(raw: Raw) -> None:
    causes = await causes_of(raw, gadget("g", reason=" ", code="ABC", size=20))
    assert [(field, message) for field, _, message in causes] == [
        ("spec.code", "Invalid value: \"ABC\": spec.code in body should match '^[a-z]+$'"),
        ("spec", SIZE_RULE),
        ("spec.reason", 'Invalid value: "string": reason must not be blank'),
    ]


BLOCKING = [
    ({"mode": "huge"}, "spec.mode", "FieldValueNotSupported"),
    ({"port": True}, "spec.port", "FieldValueTypeInvalid"),
    ({"tags": ["a", "b", "c"]}, "spec.tags", "FieldValueTooMany"),
    ({"reason": "r" * 41}, "spec.reason", "FieldValueTooLong"),
    ({"permissions": [{"verbs": ["get"]}]}, "spec.permissions[0].name", "FieldValueRequired"),
]


async def test_a_blocking_error_anywhere_skips_every_rule(raw: Raw) -> None:
    for spec, field, reason in BLOCKING:
        causes = await causes_of(raw, gadget("g", size=20, **spec))
        assert (field, reason) in [(f, r) for f, r, _ in causes]
        assert ("spec", "FieldValueInvalid", SIZE_RULE) not in causes  # the failing rule did not run
        assert causes[-1] == ("<nil>", "FieldValueInvalid", NOT_CHECKED)


async def test_a_blocking_error_in_a_kind_without_rules_adds_no_note(sim: SimServer, raw: Raw) -> None:
    crd = yaml.safe_load(yaml.safe_dump(GADGET_CRD))
    crd["metadata"]["name"] = "plainthings.test.zsp.dev"
    crd["spec"]["names"] = {"plural": "plainthings", "kind": "PlainThing"}
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_schema.pop("x-kubernetes-validations")
    spec_schema["properties"]["reason"].pop("x-kubernetes-validations")
    await raw.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    causes = await causes_of(
        raw, {"metadata": {"name": "p"}, "spec": {}}, "/apis/test.zsp.dev/v1/namespaces/default/plainthings"
    )
    assert causes == [("spec.reason", "FieldValueRequired", "Required value")]


async def test_map_lists_refuse_a_repeated_key(raw: Raw) -> None:
    permissions = [
        {"name": "deploy"},
        {"name": "read"},
        {"name": "deploy", "verbs": ["get"]},
        {"name": "deploy"},
    ]
    status, body = await raw.call("POST", GADGETS, gadget("g", permissions=permissions, size=20))
    assert status == 422
    assert body["message"] == (
        'Gadget.test.zsp.dev "g" is invalid: [spec.permissions[2]: Duplicate value: '
        'map[string]interface {}{"name":"deploy"}, spec: ' + SIZE_RULE + "]"
    )  # duplicates do not block rules
    assert body["details"]["causes"][0]["reason"] == "FieldValueDuplicate"


async def test_map_lists_with_several_keys_compare_them_all(raw: Raw) -> None:
    routes = [{"host": "a", "port": 1}, {"host": "a", "port": 2}, {"host": "a", "port": 1}, {}, {}]
    causes = await causes_of(raw, gadget("g", routes=routes))
    assert causes == [
        (
            "spec.routes[2]",
            "FieldValueDuplicate",
            'Duplicate value: map[string]interface {}{"host":"a", "port":1}',
        ),
        ("spec.routes[4]", "FieldValueDuplicate", "Duplicate value: map[string]interface {}{}"),
    ]


async def test_set_lists_refuse_repeated_items_also_under_additional_properties(raw: Raw) -> None:
    causes = await causes_of(raw, gadget("g", tags=["a", "a"], groups={"ops": ["x", "y", "x"]}))
    assert causes == [
        ("spec.tags[1]", "FieldValueDuplicate", 'Duplicate value: "a"'),
        ("spec.groups[ops][2]", "FieldValueDuplicate", 'Duplicate value: "x"'),
    ]
    await raw.ok("POST", GADGETS, gadget("ok", tags=["a", "b"], permissions=[{"name": "a"}, {"name": "b"}]))


def test_list_types_are_ratcheted_on_update() -> None:
    schema = GADGET_CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    stored = gadget("g", size=3, mode="small", tags=["a", "a"])
    assert [e.reason for e in validate_object(stored, schema, None, [])] == ["FieldValueDuplicate"]
    assert validate_object(stored, schema, stored, []) == []  # it was stored that way: not held against it
    changed = gadget("g", size=3, mode="small", tags=["b", "b"])
    assert [e.field for e in validate_object(changed, schema, gadget("g", size=3, mode="small"), [])] == [
        "spec.tags[1]"
    ]


def test_a_blocking_metadata_error_also_skips_the_rules() -> None:
    from zsp_operator.sim.errors import required

    schema = GADGET_CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    found = validate_object(gadget("g", size=20), schema, None, [required("metadata.namespace")])
    assert [e.field for e in found] == ["<nil>"]


@pytest.fixture
async def ar_raw() -> AsyncIterator[Raw]:
    crd = yaml.safe_load((CRDS / "accessrequests.zsp.dev.yaml").read_text())
    async with SimServer(crds=[crd]) as server, aiohttp.ClientSession() as session:
        yield Raw(server, session)


async def test_an_empty_access_request_reason_gets_both_messages(ar_raw: Raw) -> None:
    body = {
        "apiVersion": "zsp.dev/v1alpha1",
        "kind": "AccessRequest",
        "metadata": {"name": "r"},
        "spec": {"grantee": {"ephemeral": {}}, "permission": "view", "reason": ""},
    }
    causes = await causes_of(ar_raw, body, "/apis/zsp.dev/v1alpha1/namespaces/default/accessrequests")
    assert [(field, message) for field, _, message in causes] == [
        ("spec.reason", 'Invalid value: "": spec.reason in body should be at least 1 chars long'),
        ("spec.reason", 'Invalid value: "string": reason must say why the access is needed, not be blank'),
    ]


def test_durations_in_rules_read_go_durations() -> None:
    rule = "duration(self.low) <= duration(self.high)"
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": rule, "message": "low above high"}]}
    assert rule_errors({"low": "10µs", "high": "1ms"}, schema) == []
    assert rule_errors({"low": "90m", "high": "1h30m"}, schema) == []
    assert [e.body for e in rule_errors({"low": "2h", "high": "1h59m"}, schema)] == [
        'Invalid value: "object": low above high'
    ]
