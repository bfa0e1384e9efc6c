"""The request lifecycle: conditions, phase derivation, transitions and the one-shot rule.

Covered: set_condition keeps lastTransitionTime unless the status changes; phase is
derived from conditions; each legal transition; illegal events leave status untouched;
terminal phases absorb every event (property-based).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zsp_operator.core import constants as c
from zsp_operator.core.lifecycle import (
    ApprovalsChanged,
    Decided,
    Ended,
    Event,
    Issued,
    IssueFailed,
    TimedOut,
    apply,
    end_phase,
    phase_of,
    policy_outcome,
    recorded_end,
    set_condition,
)
from zsp_operator.core.models import (
    TERMINAL_PHASES,
    AccessRequestStatus,
    ApprovalRecord,
    NamespacedName,
    ObjectRef,
    Phase,
    UserInfo,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REQUESTER = UserInfo(
    username="system:serviceaccount:ci:pipeline", uid="u1", groups=["system:serviceaccounts"]
)

ALLOWED = Decided("allowed", "policy ci allows", "ci", REQUESTER)
PENDING = Decided("pending", "needs 2 approvals", "ci", REQUESTER)
DENIED = Decided("denied", "no policy allows this", "ci", REQUESTER)
ISSUED = Issued(
    ObjectRef(name="g", uid="g1"),
    NamespacedName(namespace="ci", name="deployer"),
    T0,
    T0 + timedelta(minutes=10),
)
FAILED = IssueFailed("creating the RoleBinding failed: forbidden")
APPROVED_BY_TWO = ApprovalsChanged(
    (
        ApprovalRecord(username="alice", decision="approve", at=T0),
        ApprovalRecord(username="bob", decision="approve", at=T0),
    ),
    approved=True,
    denied_by=None,
    message="2 of 2 approvals",
)
DENIED_BY_ONE = ApprovalsChanged(
    (ApprovalRecord(username="alice", decision="deny", at=T0),),
    approved=False,
    denied_by="alice",
    message="denied by alice",
)
TIMED_OUT = TimedOut("no quorum within 30m")


def ended(reason: str) -> Ended:
    return Ended(reason, f"grant {reason.lower()}", T0 + timedelta(minutes=10), 0.02)  # type: ignore[arg-type]


def run(*events: Event) -> AccessRequestStatus:
    status = AccessRequestStatus()
    for step, event in enumerate(events):
        status = apply(status, event, T0 + timedelta(seconds=step), generation=1)
    return status


@pytest.mark.parametrize(
    ("events", "phase"),
    [
        pytest.param((), Phase.PENDING, id="new"),
        pytest.param((ALLOWED,), Phase.APPROVED, id="allowed-approves"),
        pytest.param((PENDING,), Phase.PENDING, id="pending-waits"),
        pytest.param((DENIED,), Phase.DENIED, id="denied"),
        pytest.param((ALLOWED, ISSUED), Phase.ACTIVE, id="issued-is-active"),
        pytest.param((ALLOWED, FAILED), Phase.FAILED, id="issue-failed"),
        pytest.param((ALLOWED, ISSUED, ended("Expired")), Phase.EXPIRED, id="expired"),
        pytest.param((ALLOWED, ISSUED, ended("Completed")), Phase.COMPLETED, id="completed"),
        pytest.param((ALLOWED, ISSUED, ended("Revoked")), Phase.REVOKED, id="revoked"),
        pytest.param((PENDING, APPROVED_BY_TWO), Phase.APPROVED, id="quorum-approves"),
        pytest.param((PENDING, APPROVED_BY_TWO, ISSUED), Phase.ACTIVE, id="quorum-then-issued"),
        pytest.param((PENDING, DENIED_BY_ONE), Phase.DENIED, id="one-deny-ends-it"),
        pytest.param((PENDING, TIMED_OUT), Phase.TIMED_OUT, id="timeout"),
        pytest.param((PENDING, ISSUED), Phase.PENDING, id="no-issue-without-approval"),
        pytest.param((DENIED, ALLOWED, ISSUED), Phase.DENIED, id="denied-is-one-shot"),
        pytest.param(
            (ALLOWED, ISSUED, ended("Expired"), ALLOWED, ISSUED), Phase.EXPIRED, id="expired-is-one-shot"
        ),
        pytest.param((ALLOWED, ISSUED, TIMED_OUT), Phase.ACTIVE, id="active-ignores-timeout"),
    ],
)
def test_transitions_reach_the_expected_phase(events: tuple[Event, ...], phase: Phase) -> None:
    status = run(*events)
    assert phase_of(status.conditions) is phase
    assert status.phase is (phase if events else None)


@pytest.mark.parametrize(
    ("events", "outcome", "end"),
    [
        pytest.param((), None, None, id="undecided"),
        pytest.param((ALLOWED,), "allowed", None, id="allowed"),
        pytest.param((PENDING,), "pending", None, id="pending"),
        pytest.param((PENDING, APPROVED_BY_TWO), "pending", None, id="approved-after-pending"),
        pytest.param((PENDING, DENIED_BY_ONE), "pending", None, id="an-approver-denied-not-the-policy"),
        pytest.param((DENIED,), "denied", None, id="denied"),
        pytest.param((ALLOWED, ISSUED), "allowed", None, id="active"),
        pytest.param((ALLOWED, FAILED), "allowed", None, id="failed-is-no-end-of-a-grant"),
        pytest.param((ALLOWED, ISSUED, ended("Expired")), "allowed", "Expired", id="expired"),
        pytest.param(
            (PENDING, APPROVED_BY_TWO, ISSUED, ended("Revoked")), "pending", "Revoked", id="revoked"
        ),
    ],
)
def test_outcome_and_recorded_end_come_from_one_place(
    events: tuple[Event, ...], outcome: str | None, end: str | None
) -> None:
    status = run(*events)
    assert policy_outcome(status) == outcome
    ready = recorded_end(status.conditions)
    assert (ready.reason if ready is not None else None) == end
    if end is not None:
        assert end_phase(end) is phase_of(status.conditions)


@pytest.mark.parametrize(
    ("reason", "phase"),
    [
        ("Expired", Phase.EXPIRED),
        ("Revoked", Phase.REVOKED),
        ("Completed", Phase.COMPLETED),
        ("Failed", Phase.FAILED),
        ("Issued", None),
        ("Pending", None),
    ],
)
def test_end_phase_of_a_reason(reason: str, phase: Phase | None) -> None:
    assert end_phase(reason) is phase


def test_issued_status_records_the_grant() -> None:
    status = run(ALLOWED, ISSUED)
    assert status.grant == ObjectRef(name="g", uid="g1")
    assert status.expires_at == T0 + timedelta(minutes=10)
    assert status.decision is not None
    assert status.decision.allowed
    assert status.requester == REQUESTER


def test_end_records_revocation_time_reason_and_lag() -> None:
    status = run(ALLOWED, ISSUED, ended("Expired"))
    assert status.revoked_at == T0 + timedelta(minutes=10)
    assert status.end_reason == "grant expired"
    assert status.revocation_lag_seconds == pytest.approx(0.02)


def test_last_transition_time_moves_only_when_status_changes() -> None:
    first = set_condition([], c.COND_READY, "True", c.REASON_ISSUED, "live", T0, 1)
    same = set_condition(
        first, c.COND_READY, "True", c.REASON_ISSUED, "still live", T0 + timedelta(minutes=1), 2
    )
    flipped = set_condition(
        same, c.COND_READY, "False", c.REASON_EXPIRED, "gone", T0 + timedelta(minutes=2), 2
    )
    assert same[0].last_transition_time == T0
    assert same[0].message == "still live"
    assert same[0].observed_generation == 2
    assert flipped[0].last_transition_time == T0 + timedelta(minutes=2)


def test_conditions_are_keyed_by_type() -> None:
    status = run(PENDING, APPROVED_BY_TWO, ISSUED)
    assert sorted(cond.type for cond in status.conditions) == [c.COND_APPROVED, c.COND_READY]


EVENTS = st.sampled_from(
    [ALLOWED, PENDING, DENIED, ISSUED, FAILED, APPROVED_BY_TWO, DENIED_BY_ONE, TIMED_OUT]
    + [ended(r) for r in ("Expired", "Revoked", "Completed")]
)


@given(st.lists(EVENTS, max_size=12))
def test_terminal_phases_absorb_every_event(events: list[Event]) -> None:
    status = AccessRequestStatus()
    terminal: AccessRequestStatus | None = None
    for event in events:
        status = apply(status, event, T0, generation=1)
        if terminal is None and phase_of(status.conditions) in TERMINAL_PHASES:
            terminal = status
    if terminal is not None:
        assert status == terminal


@given(st.lists(EVENTS, max_size=12))
def test_active_only_after_an_approval(events: list[Event]) -> None:
    status = AccessRequestStatus()
    for event in events:
        before = phase_of(status.conditions)
        status = apply(status, event, T0, generation=1)
        if phase_of(status.conditions) is Phase.ACTIVE and before is not Phase.ACTIVE:
            assert before is Phase.APPROVED
