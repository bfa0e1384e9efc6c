"""CustomResourceDefinitions: registration, conditions, schema validation, defaults, pruning, CEL."""

from __future__ import annotations

from typing import Any

import pytest
from simkit import GADGET_CRD, GADGETS, GROUP, Raw, gadget

from zsp_operator.sim import SimServer

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


async def invalid(raw: Raw, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = await raw.call("POST", GADGETS, body)
    assert status == 422, answer
    assert answer["reason"] == "Invalid"
    return answer


async def test_a_new_crd_is_served_at_once_and_established(sim: SimServer, raw: Raw) -> None:
    crd = {**GADGET_CRD, "metadata": {"name": f"widgets.{GROUP}"}}
    crd["spec"] = {**GADGET_CRD["spec"], "names": {"plural": "widgets", "kind": "Widget"}, "scope": "Cluster"}
    await raw.ok("POST", CRDS, crd)
    created = await raw.ok(
        "POST", f"/apis/{GROUP}/v1/widgets", {"metadata": {"name": "w"}, "spec": {"reason": "r"}}
    )
    assert created["kind"] == "Widget"
    await sim.settle()
    stored = await raw.ok("GET", f"{CRDS}/widgets.{GROUP}")
    conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert stored["status"]["acceptedNames"]["listKind"] == "WidgetList"
    assert stored["status"]["storedVersions"] == ["v1"]


async def test_crd_name_must_be_plural_dot_group(raw: Raw) -> None:
    crd = {**GADGET_CRD, "metadata": {"name": "wrong.name"}}
    status, body = await raw.call("POST", CRDS, crd)
    assert status == 422
    assert 'must be spec.names.plural+"."+spec.group' in body["message"]


async def test_a_missing_required_field_names_the_field(raw: Raw) -> None:
    body = await invalid(raw, {**gadget("g"), "spec": {}})
    assert body["message"] == (
        'Gadget.test.zsp.dev "g" is invalid: [spec.reason: Required value, <nil>: Invalid value: "null": '
        "some validation rules were not checked because the object was invalid; correct the existing "
        "errors to complete validation]"
    )
    assert body["details"]["causes"][0] == {
        "reason": "FieldValueRequired",
        "message": "Required value",
        "field": "spec.reason",
    }
    assert body["details"]["kind"] == "Gadget"
    assert body["details"]["group"] == GROUP


async def test_several_causes_are_joined_in_brackets(raw: Raw) -> None:
    body = await invalid(raw, gadget("g", size=0, mode="huge"))
    assert body["message"].startswith('Gadget.test.zsp.dev "g" is invalid: [')
    reasons = {cause["field"]: cause["reason"] for cause in body["details"]["causes"]}
    assert reasons == {
        "spec.size": "FieldValueInvalid",
        "spec.mode": "FieldValueNotSupported",
        "<nil>": "FieldValueInvalid",
    }
    assert 'spec.mode: Unsupported value: "huge": supported values: "small", "big"' in body["message"]
    assert (
        "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
        in body["message"]
    )


@pytest.mark.parametrize(
    ("spec", "field", "reason", "fragment"),
    [
        (
            {"size": "three"},
            "spec.size",
            "FieldValueTypeInvalid",
            'Invalid value: "string": spec.size in body must be of type integer: "string"',
        ),
        ({"size": 101}, "spec.size", "FieldValueInvalid", "should be less than or equal to 100"),
        ({"reason": ""}, "spec.reason", "FieldValueInvalid", "should be at least 1 chars long"),
        ({"reason": "x" * 41}, "spec.reason", "FieldValueTooLong", "Too long: may not be more than 40"),
        ({"code": "ABC"}, "spec.code", "FieldValueInvalid", "should match '^[a-z]+$'"),
        ({"until": "tomorrow"}, "spec.until", "FieldValueInvalid", "must be of type date-time"),
        ({"tags": ["a", "b", "c"]}, "spec.tags", "FieldValueTooMany", "must have at most 2 items"),
        ({"tags": ["a", 1]}, "spec.tags[1]", "FieldValueTypeInvalid", "must be of type string"),
        ({"labels": {"a": 1}}, "spec.labels.a", "FieldValueTypeInvalid", "must be of type string"),
        ({"port": True}, "spec.port", "FieldValueTypeInvalid", "integer-or-string"),
    ],
)
async def test_schema_violations(
    raw: Raw, spec: dict[str, Any], field: str, reason: str, fragment: str
) -> None:
    body = await invalid(raw, gadget("g", **spec))
    causes = body["details"]["causes"]
    assert any(c["field"] == field and c["reason"] == reason and fragment in c["message"] for c in causes), (
        causes
    )


async def test_valid_values_of_every_kind_are_accepted(raw: Raw) -> None:
    await raw.ok(
        "POST",
        GADGETS,
        gadget(
            "ok",
            size=10,
            code="abc",
            until="2030-01-01T00:00:00Z",
            tags=["a"],
            labels={"a": "b"},
            port="http",
            note=None,
        ),
    )
    await raw.ok("POST", GADGETS, gadget("ok2", port=8080))


async def test_defaults_are_applied(raw: Raw) -> None:
    created = await raw.ok("POST", GADGETS, gadget("d"))
    assert created["spec"]["size"] == 3
    assert created["spec"]["mode"] == "small"


async def test_nulls_of_non_nullable_fields_are_dropped_then_defaulted(raw: Raw) -> None:
    created = await raw.ok("POST", GADGETS, gadget("n", mode=None, code=None, note=None))
    assert created["spec"]["mode"] == "small"
    assert "code" not in created["spec"]
    assert created["spec"]["note"] is None  # nullable: kept


async def test_unknown_fields_are_pruned_with_a_warning_or_rejected_when_strict(raw: Raw) -> None:
    body = gadget("p", bogus=1, extra={"anything": {"goes": True}})
    async with raw.session.post(
        raw.sim.url + GADGETS, json=body, headers={"Authorization": f"Bearer {raw.sim.admin_token}"}
    ) as response:
        created = await response.json()
        assert response.headers.getall("Warning") == ['299 - "unknown field \\"spec.bogus\\""']
    assert "bogus" not in created["spec"]
    assert created["spec"]["extra"] == {"anything": {"goes": True}}  # preserved by x-kubernetes-preserve
    status, answer = await raw.call("POST", GADGETS, gadget("q", bogus=1), fieldValidation="Strict")
    assert status == 400
    assert answer["message"] == (
        'Gadget in version "v1" cannot be handled as a Gadget: strict decoding '
        'error: unknown field "spec.bogus"'
    )


async def test_cel_rule_failure_reports_its_message(raw: Raw) -> None:
    body = await invalid(raw, gadget("c", size=20))
    assert body["message"] == (
        'Gadget.test.zsp.dev "c" is invalid: spec: Invalid value: "object": sizes above 10 need mode big'
    )
    await raw.ok("POST", GADGETS, gadget("c", size=20, mode="big"))


async def test_transition_rule_sees_old_self_on_update_only(raw: Raw) -> None:
    await raw.ok("POST", GADGETS, gadget("t"))
    status, body = await raw.call(
        "PATCH", f"{GADGETS}/t", {"spec": {"reason": "changed"}}, content_type="application/merge-patch+json"
    )
    assert status == 422
    assert body["details"]["causes"][0]["message"] == 'Invalid value: "object": reason is immutable'
    await raw.ok("PATCH", f"{GADGETS}/t", {"spec": {"size": 4}}, content_type="application/merge-patch+json")
