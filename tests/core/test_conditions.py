"""AccessRequest conditions in the Kubernetes shape, phase by phase.

Covered: Ready is present from the first decision on (False with AwaitingApproval, Issuing,
or the denial's reason; True once issued; False with the end reason); a denial leaves no
condition saying "awaiting approval"; Ready's lastTransitionTime stays put while its status
stays False across reasons and moves when it flips; every condition carries the generation it
was written for; the CRD keys conditions by type.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from tiers import CRD_DIR
from zsp_operator.core import constants as c
from zsp_operator.core.lifecycle import (
    REASON_ISSUING,
    ApprovalsChanged,
    Decided,
    Ended,
    Event,
    Issued,
    TimedOut,
    apply,
    condition,
)
from zsp_operator.core.models import AccessRequestStatus, ApprovalRecord, NamespacedName, ObjectRef

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALLOWED = Decided("allowed", "policy allows it", "p", None)
PENDING = Decided("pending", "needs one approval", "p", None)
DENIED = Decided("denied", "no policy allows it", None, None)
ISSUED = Issued(ObjectRef(name="g"), NamespacedName(namespace="ci", name="d"), T0, T0 + timedelta(minutes=5))
BY_ALICE = ApprovalsChanged(
    (ApprovalRecord(username="alice", decision="approve", at=T0),), True, None, "by alice"
)
ALICE_DENIES = ApprovalsChanged(
    (ApprovalRecord(username="alice", decision="deny", at=T0),), False, "alice", "no"
)


def run(*events: Event, generation: int = 1) -> AccessRequestStatus:
    status = AccessRequestStatus()
    for step, event in enumerate(events):
        status = apply(status, event, T0 + timedelta(seconds=step), generation)
    return status


@pytest.mark.parametrize(
    ("events", "ready"),
    [
        pytest.param((PENDING,), ("False", c.REASON_PENDING), id="pending"),
        pytest.param((ALLOWED,), ("False", REASON_ISSUING), id="approved-by-policy"),
        pytest.param((PENDING, BY_ALICE), ("False", REASON_ISSUING), id="approved-by-quorum"),
        pytest.param((ALLOWED, ISSUED), ("True", c.REASON_ISSUED), id="active"),
        pytest.param((DENIED,), ("False", c.REASON_POLICY_DENIES), id="denied-by-policy"),
        pytest.param((PENDING, ALICE_DENIES), ("False", c.REASON_APPROVER_DENIED), id="denied-by-approver"),
        pytest.param((PENDING, TimedOut("late")), ("False", c.REASON_TIMED_OUT), id="timed-out"),
        pytest.param(
            (ALLOWED, ISSUED, Ended("Expired", "ttl", T0, 0.0)), ("False", c.REASON_EXPIRED), id="expired"
        ),
    ],
)
def test_ready_is_set_from_the_first_decision_on(events: tuple[Event, ...], ready: tuple[str, str]) -> None:
    cond = condition(run(*events).conditions, c.COND_READY)
    assert cond is not None
    assert (cond.status, cond.reason) == ready
    assert cond.message


@pytest.mark.parametrize(
    "events", [(PENDING, ALICE_DENIES), (PENDING, TimedOut("late"))], ids=["deny", "timeout"]
)
def test_a_denial_leaves_no_condition_awaiting_approval(events: tuple[Event, ...]) -> None:
    status = run(*events)
    assert all(cond.reason != c.REASON_PENDING for cond in status.conditions)
    approved = condition(status.conditions, c.COND_APPROVED)
    assert approved is not None
    assert approved.status == "False"


def test_ready_moves_its_transition_time_only_when_it_flips() -> None:
    pending = run(PENDING)
    approved = apply(pending, BY_ALICE, T0 + timedelta(seconds=10), 1)
    issued = apply(approved, ISSUED, T0 + timedelta(seconds=20), 1)
    ready = [condition(s.conditions, c.COND_READY) for s in (pending, approved, issued)]
    assert ready[0] is not None
    assert ready[1] is not None
    assert ready[2] is not None
    assert ready[1].last_transition_time == ready[0].last_transition_time == T0, "False -> False keeps it"
    assert ready[1].reason == REASON_ISSUING
    assert ready[2].last_transition_time == T0 + timedelta(seconds=20)


def test_every_condition_carries_the_generation_it_was_written_for() -> None:
    status = run(ALLOWED, ISSUED, generation=3)
    assert status.observed_generation == 3
    assert {cond.observed_generation for cond in status.conditions} == {3}


def test_the_crd_keys_conditions_by_type() -> None:
    crd = yaml.safe_load((CRD_DIR / "accessrequests.zsp.dev.yaml").read_text(encoding="utf-8"))
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    conditions = schema["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert {"type", "status", "reason", "lastTransitionTime"} <= set(conditions["items"]["required"])
