"""Approval tally and timeout in the pure core.

Covered: N-of-M (2 of 3), duplicates, self-approval refused and allowed, ineligible approvers
(by group, user and ServiceAccount subjects; empty approvers), a deny ending it, record order,
required 0, and the approval timeout boundary.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from core_factories import NOW, POLICY_SPEC, changed

from zsp_operator.core.approvals import (
    DUPLICATE,
    NOT_ELIGIBLE,
    SELF_APPROVAL,
    Tally,
    approval_deadline,
    tally,
    timed_out,
)
from zsp_operator.core.models import AccessPolicySpec, ApprovalRecord, UserInfo

LEADS = "platform-leads"
AGENT = UserInfo(username="system:serviceaccount:agents:sre-assistant", groups=["system:serviceaccounts"])


def spec(required: int = 2, **approval: Any) -> AccessPolicySpec:
    changes = {"approval.required": required, **{f"approval.{k}": v for k, v in approval.items()}}
    return AccessPolicySpec.model_validate(changed(POLICY_SPEC, changes))


def vote(
    username: str, decision: str = "approve", groups: tuple[str, ...] = (LEADS,), minute: int = 0
) -> ApprovalRecord:
    return ApprovalRecord.model_validate(
        {
            "username": username,
            "groups": list(groups),
            "decision": decision,
            "at": NOW + timedelta(minutes=minute),
        }
    )


TALLIES = [
    pytest.param(spec(), [], Tally(False, None, (), (), 2), id="none-yet"),
    pytest.param(spec(), [vote("ann")], Tally(False, None, ("ann",), (), 1), id="one-of-two"),
    pytest.param(
        spec(), [vote("ann"), vote("bob")], Tally(True, None, ("ann", "bob"), (), 0), id="two-of-three"
    ),
    pytest.param(
        spec(),
        [vote("ann"), vote("bob"), vote("cat")],
        Tally(True, None, ("ann", "bob", "cat"), (), 0),
        id="three-of-three",
    ),
    pytest.param(
        spec(),
        [vote("ann"), vote("ann", minute=1)],
        Tally(False, None, ("ann",), (("ann", DUPLICATE),), 1),
        id="duplicate",
    ),
    pytest.param(
        spec(),
        [vote(AGENT.username, groups=(LEADS, "system:serviceaccounts")), vote("ann")],
        Tally(False, None, ("ann",), ((AGENT.username, SELF_APPROVAL),), 1),
        id="self-approval-refused",
    ),
    pytest.param(
        spec(allowSelfApproval=True),
        [vote(AGENT.username, groups=(LEADS,)), vote("ann")],
        Tally(True, None, (AGENT.username, "ann"), (), 0),
        id="self-approval-allowed",
    ),
    pytest.param(
        spec(),
        [vote("eve", groups=("developers",)), vote("ann")],
        Tally(False, None, ("ann",), (("eve", NOT_ELIGIBLE),), 1),
        id="ineligible-group",
    ),
    pytest.param(
        spec(approvers=[{"kind": "User", "name": "ann"}, {"kind": "User", "name": "bob"}]),
        [vote("ann", groups=()), vote("bob", groups=()), vote("cat")],
        Tally(True, None, ("ann", "bob"), (("cat", NOT_ELIGIBLE),), 0),
        id="eligible-by-user",
    ),
    pytest.param(
        spec(required=1, approvers=[{"kind": "ServiceAccount", "namespace": "ops", "name": "approver-bot"}]),
        [vote("system:serviceaccount:ops:approver-bot", groups=())],
        Tally(True, None, ("system:serviceaccount:ops:approver-bot",), (), 0),
        id="eligible-by-serviceaccount",
    ),
    pytest.param(
        spec(approvers=[]),
        [vote("ann"), vote("bob")],
        Tally(False, None, (), (("ann", NOT_ELIGIBLE), ("bob", NOT_ELIGIBLE)), 2),
        id="empty-approvers-admit-nobody",
    ),
    pytest.param(
        spec(),
        [vote("ann"), vote("bob", "deny"), vote("cat")],
        Tally(False, "bob", ("ann", "cat"), (), 0),
        id="deny-ends-it",
    ),
    pytest.param(
        spec(),
        [vote("ann"), vote("ann", "deny", minute=1)],
        Tally(False, "ann", ("ann",), (), 1),
        id="approver-changes-mind",
    ),
    pytest.param(
        spec(),
        [vote("eve", "deny", groups=()), vote("ann"), vote("bob")],
        Tally(True, None, ("ann", "bob"), (("eve", NOT_ELIGIBLE),), 0),
        id="ineligible-deny-ignored",
    ),
    pytest.param(
        spec(),
        [vote(AGENT.username, "deny", groups=(LEADS,))],
        Tally(False, AGENT.username, (), (), 2),
        id="requester-may-withdraw",
    ),
    pytest.param(
        spec(),
        [vote("bob", minute=5), vote("ann", minute=1), vote("cat", minute=3)],
        Tally(True, None, ("ann", "cat", "bob"), (), 0),
        id="ordered-by-time",
    ),
    pytest.param(spec(required=0), [], Tally(True, None, (), (), 0), id="nothing-required"),
]


@pytest.mark.parametrize(("policy", "records", "expected"), TALLIES)
def test_tally(policy: AccessPolicySpec, records: list[ApprovalRecord], expected: Tally) -> None:
    assert tally(records, policy, AGENT) == expected


def test_without_a_requester_no_one_is_refused_as_self() -> None:
    assert tally([vote(AGENT.username), vote("ann")], spec(), None).approved


@pytest.mark.parametrize(
    ("waited", "expected"),
    [
        pytest.param(timedelta(0), False, id="just-created"),
        pytest.param(timedelta(minutes=29, seconds=59), False, id="before-timeout"),
        pytest.param(timedelta(minutes=30), True, id="at-timeout"),
        pytest.param(timedelta(hours=2), True, id="long-after"),
    ],
)
def test_timed_out(waited: timedelta, expected: bool) -> None:
    created = NOW - waited
    assert timed_out(created, spec(), NOW) is expected
    assert approval_deadline(created, spec()) == created + timedelta(minutes=30)


def test_timeout_follows_policy() -> None:
    assert timed_out(NOW - timedelta(minutes=6), spec(timeout="5m"), NOW)
    assert not timed_out(NOW - timedelta(minutes=6), spec(timeout="1h"), NOW)
