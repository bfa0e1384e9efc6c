"""AccessPolicy conditions (CEL) in the pure core: each variable, the errors, decisions, time.

Covered, one table row each: every variable conditions see (request, requester,
namespaceObject, grantee as a ServiceAccount object or the ephemeral marker, task or null,
now, activeGrants) decides a condition both ways; a syntax error, a type error, an
undeclared variable and a non-bool result are refused when the policy is parsed, naming the
condition and the position; an evaluation error and a runaway comprehension make a condition
unmet (never allowed); a decision names the failing condition and its message; `next_change`
finds the moment a working-hours condition stops holding, to the second, and nothing for
conditions that do not read the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from core_factories import LABELS, NOW, changed, grant, policy, request, requester
from pydantic import ValidationError

from zsp_operator.core.conditions import Inputs, first_unmet, next_change, references
from zsp_operator.core.errors import describe
from zsp_operator.core.grantindex import GrantIndex
from zsp_operator.core.models import AccessPolicySpec, PolicyCondition
from zsp_operator.core.policy import ConditionObjects, Outcome, decide

REGISTRY = "registry.example.com/"
JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "deploy-4711", "namespace": "payments-staging"},
    "spec": {"template": {"spec": {"containers": [{"name": "deploy", "image": REGISTRY + "deployer:1.2"}]}}},
}
GRANTEE = {
    "apiVersion": "v1",
    "kind": "ServiceAccount",
    "metadata": {"name": "deployer", "namespace": "ci", "labels": {"zsp.dev/tier": "pipeline"}},
}


def decided(
    conditions: list[dict[str, Any]],
    *,
    req: Any = None,
    namespace_labels: Mapping[str, Mapping[str, str]] = LABELS,
    now: datetime = NOW,
    objects: ConditionObjects | None = None,
    grants: tuple[Any, ...] = (),
    policy_changes: Mapping[str, Any] | None = None,
) -> Any:
    changes = {"conditions": conditions, **(policy_changes or {})}
    return decide(
        req or request(),
        [policy(changes=changes)],
        GrantIndex.of(grants),
        namespace_labels,
        now,
        objects=objects,
    )


def condition(expression: str, message: str = "not allowed") -> dict[str, Any]:
    return {"name": "rule", "expression": expression, "message": message}


@pytest.mark.parametrize(
    ("expression", "kwargs", "allowed"),
    [
        # request: metadata and spec, as filed
        (r'request.spec.reason.matches("build [0-9]+")', {}, True),
        (r'request.spec.reason.matches("^[A-Z]+-[0-9]+")', {}, False),
        ('request.metadata.name.startsWith("deploy-")', {}, True),
        # requester: as the API server authenticated it
        ('requester.username == "system:serviceaccount:ci:pipeline"', {}, True),
        ('"platform-oncall" in requester.groups', {}, False),
        (
            '"platform-oncall" in requester.groups',
            {"req": request(who=requester("system:serviceaccount:ci:pipeline", "platform-oncall"))},
            True,
        ),
        # namespaceObject: the target namespace's name and labels
        ('namespaceObject.metadata.labels["team"] == "payments"', {}, True),
        ('namespaceObject.metadata.name.endsWith("-prod")', {}, False),
        # grantee: the ServiceAccount object when the operator has it, its name otherwise
        ('grantee.metadata.name == "deployer"', {}, True),
        (
            'grantee.metadata.labels["zsp.dev/tier"] == "pipeline"',
            {"objects": ConditionObjects(grantee=GRANTEE)},
            True,
        ),
        ("has(grantee.ephemeral)", {}, False),
        (
            "has(grantee.ephemeral)",
            {
                "req": request(
                    {
                        "grantee.serviceAccount": None,
                        "grantee.ephemeral": {},
                        "delivery": {"namespace": "ci", "secretName": "k"},
                    }
                )
            },
            True,
        ),
        # task: the taskRef object, or null
        ("task == null", {}, True),
        (
            f'task.spec.template.spec.containers.all(c, c.image.startsWith("{REGISTRY}"))',
            {"objects": ConditionObjects(task=JOB)},
            True,
        ),
        (
            'task.spec.template.spec.containers.all(c, c.image.startsWith("docker.io/"))',
            {"objects": ConditionObjects(task=JOB)},
            False,
        ),
        # now: a timestamp (NOW is 12:00 UTC on a Sunday)
        ("now.getHours() >= 9 && now.getHours() < 17", {}, True),
        ("now.getDayOfWeek() >= 1 && now.getDayOfWeek() <= 5", {}, False),
        ('now.getHours("Asia/Tokyo") < 17', {}, False),
        # activeGrants: live grants of this grantee, requester and policy
        ("activeGrants.grantee == 0 && activeGrants.policy == 0", {}, True),
        ("activeGrants.requester < 1", {"grants": (grant(),), "policy_changes": {"limits": {}}}, False),
    ],
)
def test_each_variable(expression: str, kwargs: dict[str, Any], allowed: bool) -> None:
    decision = decided([condition(expression)], **kwargs)
    assert (decision.outcome is Outcome.ALLOWED) == allowed, decision.reason


def test_a_decision_names_the_failing_condition_and_its_message() -> None:
    decision = decided(
        [
            condition("true"),
            {
                "name": "ticket",
                "expression": 'request.spec.reason.matches("^OPS-[0-9]+")',
                "message": "reason must start with an OPS ticket",
            },
        ]
    )
    assert decision.outcome is Outcome.DENIED
    assert decision.unmet is not None
    assert decision.unmet.name == "ticket"
    assert 'condition "ticket" (spec.conditions[1] of policy "ci-deployers") does not hold' in decision.reason
    assert "reason must start with an OPS ticket" in decision.reason


def test_a_denial_lists_an_unmet_condition_beside_every_other_reason() -> None:
    decision = decided([condition("1 / 0 == 1")], req=request({"permission": "nope"}))
    assert decision.outcome is Outcome.DENIED
    assert any('permission "nope"' in m for m in decision.mismatches), decision.mismatches
    assert decision.unmet is not None
    assert "divide by zero" in decision.unmet.message


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("request.spec.reason +", "at line 1, column 22: Syntax error"),
        (
            "now + 1",
            "at line 1, column 5: found no matching overload for '_+_' applied to '(timestamp, int)'",
        ),
        ("namespace.metadata.name == 'x'", "at line 1, column 1: reserved identifier: namespace"),
        ("tier == 'prod'", "at line 1, column 1: undeclared reference to 'tier'"),
        ("activeGrants.grantee + 1", "evaluates to int, not a bool"),
    ],
)
def test_bad_expressions_are_refused_with_the_condition_and_position(expression: str, error: str) -> None:
    spec = changed(policy().spec.to_wire(), {"conditions": [{"name": "hours", "expression": expression}]})
    with pytest.raises(ValidationError) as raised:
        AccessPolicySpec.model_validate(spec)
    (message,) = describe(raised.value, "AccessPolicy p", prefix=("spec",))
    assert message.startswith("AccessPolicy p: spec.conditions[0]: condition 'hours': expression "), message
    assert error in message
    assert "fix the expression" in message


@pytest.mark.parametrize(
    ("expression", "unmet"),
    [
        ('namespaceObject.metadata.labels["absent"] == "x"', "could not be evaluated: "),
        ("int(request.spec.reason) > 0", "could not be evaluated: "),
        ("request.spec.reason", "not allowed"),  # a string is not `true`
        # Four nested comprehensions over ten items: stopped by the iteration budget.
        (
            "[0,1,2,3,4,5,6,7,8,9].all(a, [0,1,2,3,4,5,6,7,8,9].all(b, [0,1,2,3,4,5,6,7,8,9].all("
            "c, [0,1,2,3,4,5,6,7,8,9].all(d, a + b + c + d >= 0))))",
            "Iteration budget exceeded",
        ),
    ],
)
def test_what_cannot_be_evaluated_is_never_allowed(expression: str, unmet: str) -> None:
    decision = decided([condition(expression)])
    assert decision.outcome is Outcome.DENIED
    assert decision.unmet is not None
    assert unmet in decision.unmet.message


WORKING_HOURS = PolicyCondition(
    name="working-hours",
    expression="now.getHours() >= 9 && now.getHours() < 17",
    message="only between 09:00 and 17:00 UTC",
)
TICKET = PolicyCondition(name="ticket", expression='request.spec.reason != ""', message="a reason")


def inputs(now: datetime) -> Inputs:
    return Inputs(
        request={"spec": {"reason": "r"}},
        requester={},
        namespace={"metadata": {"name": "ns", "labels": {}}},
        grantee={"ephemeral": True},
        task=None,
        now=now,
        active_grants={},
    )


@pytest.mark.parametrize(
    ("now", "until", "expected"),
    [
        # Ten minutes before the end of working hours: fails at 17:00:00 exactly.
        (
            datetime(2026, 3, 2, 16, 50, 30, tzinfo=UTC),
            datetime(2026, 3, 2, 18, 0, tzinfo=UTC),
            datetime(2026, 3, 2, 17, 0, tzinfo=UTC),
        ),
        # The grant ends before the boundary: nothing to re-check.
        (datetime(2026, 3, 2, 10, 0, tzinfo=UTC), datetime(2026, 3, 2, 11, 0, tzinfo=UTC), None),
    ],
)
def test_the_next_moment_a_time_condition_stops_holding(
    now: datetime, until: datetime, expected: datetime | None
) -> None:
    assert first_unmet([WORKING_HOURS], inputs(now)) is None
    assert next_change([WORKING_HOURS, TICKET], inputs(now), until) == expected


def test_a_condition_to_the_second() -> None:
    cutoff = PolicyCondition(name="cutoff", expression='now < timestamp("2026-03-02T10:07:42Z")', message="m")
    start = datetime(2026, 3, 2, 10, 0, 5, tzinfo=UTC)
    assert next_change([cutoff], inputs(start), start + timedelta(hours=1)) == datetime(
        2026, 3, 2, 10, 7, 42, tzinfo=UTC
    )


def test_conditions_that_do_not_read_the_clock_never_need_a_timer() -> None:
    assert next_change([TICKET], inputs(NOW), NOW + timedelta(days=1)) is None


@pytest.mark.parametrize(
    ("expression", "variable", "found"),
    [
        ("now.getHours() < 17", "now", True),
        ('request.spec.reason.contains("now")', "now", False),  # in a string literal
        ("request.spec.known == true", "now", False),  # a longer identifier
        ("task.status.succeeded > 0", "task", True),
        ("grantee.metadata.name == 'x'", "grantee", True),
    ],
)
def test_which_variables_an_expression_reads(expression: str, variable: str, found: bool) -> None:
    assert references(expression, variable) is found
