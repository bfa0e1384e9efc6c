"""One request as the verbs show it: phase from conditions, grantee, permission, time left,
table rows (plain, wide, across namespaces), who a request waits for (`list --pending`),
approval progress, the `--wait` outcome line and when waiting stops."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cli_bodies import (
    ALICE,
    BOB,
    DAVE,
    EPHEMERAL_SPEC,
    NOW,
    PIPELINE,
    approval,
    approvals_changed,
    at,
    decided,
    ended,
    issued,
    policy,
    request,
)

from zsp_operator.cli.summary import (
    approvals_progress,
    awaits_approval_of,
    expires_in,
    grantee,
    is_outcome,
    list_headers,
    list_row,
    outcome_line,
    pending_row,
    permission,
    phase,
    waiting_for,
)
from zsp_operator.core.lifecycle import IssueFailed, TimedOut
from zsp_operator.core.models import Phase, UserInfo

PENDING = (0.1, decided("pending", "needs 2 approvals"))
ACTIVE = request((0.1, decided()), (1, issued(ttl=timedelta(minutes=10))))  # expires at minute 11 = NOW + 6m


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (request(), Phase.PENDING),
        (request(PENDING), Phase.PENDING),
        (request((0.1, decided()), name="approved"), Phase.APPROVED),
        (ACTIVE, Phase.ACTIVE),
        (request((0.1, decided("denied", "no policy allows it"))), Phase.DENIED),
        (request((0.1, decided()), (1, issued()), (3, ended("Completed", "done", 3))), Phase.COMPLETED),
        (request((0.1, decided()), (1, issued()), (11, ended("Expired", "ttl", 11))), Phase.EXPIRED),
    ],
)
def test_phase_comes_from_the_conditions(body: dict[str, Any], expected: Phase) -> None:
    assert phase(body) is expected


def test_phase_ignores_a_status_phase_the_conditions_do_not_back() -> None:
    body = request(PENDING)
    body["status"]["phase"] = "Active"
    assert phase(body) is Phase.PENDING


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (request(), "ci/deployer"),
        (request(spec=EPHEMERAL_SPEC), "ephemeral"),
        (
            request(
                (0.1, decided()),
                (1, issued(identity=("payments-staging", "zsp-agent-x"))),
                spec=EPHEMERAL_SPEC,
            ),
            "payments-staging/zsp-agent-x",
        ),
    ],
)
def test_grantee_is_the_bound_account_or_the_minted_one(body: dict[str, Any], shown: str) -> None:
    assert grantee(body) == shown


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ({"permission": "deploy"}, "deploy"),
        ({"rules": [{"verbs": ["get"]}]}, "(1 rule)"),
        ({"rules": [{"verbs": ["get"]}, {"verbs": ["list"]}]}, "(2 rules)"),
        ({}, "<none>"),
    ],
)
def test_permission_is_the_name_or_a_rule_count(spec: dict[str, Any], shown: str) -> None:
    assert permission({"spec": spec}) == shown


def test_time_left_only_for_a_live_grant() -> None:
    assert expires_in(ACTIVE, NOW) == "6m"
    assert expires_in(ACTIVE, NOW + timedelta(minutes=7)) == "0s", "past the deadline, before revocation"
    assert expires_in(request(PENDING), NOW) == "<none>"


def test_list_rows_plain_wide_and_across_namespaces() -> None:
    assert list_row(ACTIVE, NOW) == ["deploy-4711", "Active", "ci/deployer", "deploy", "6m", "5m"]
    wide = list_row(ACTIVE, NOW, wide=True, namespace=True)
    assert wide[0] == "payments-staging"
    assert wide[-3:] == [PIPELINE.username, "ci-deployers", "deploy build 4711"]
    assert list_headers(wide=True, namespace=True) == [
        "NAMESPACE",
        "NAME",
        "PHASE",
        "GRANTEE",
        "PERMISSION",
        "EXPIRES IN",
        "AGE",
        "REQUESTER",
        "POLICY",
        "REASON",
    ]


def test_a_long_reason_is_cut_in_a_wide_row() -> None:
    body = request(
        spec={"grantee": {"ephemeral": {}}, "permission": "x", "reason": "why " * 40 + "\nsecond line"}
    )
    reason = list_row(body, NOW, wide=True)[-1]
    assert len(reason) == 60
    assert reason.endswith("…")


# --- list --pending ------------------------------------------------------------------------------


def _with_records(*records: Any) -> dict[str, Any]:
    return request(PENDING, (1, approvals_changed(records, message="waiting")))


@pytest.mark.parametrize(
    ("body", "spec", "caller", "awaits"),
    [
        (request(PENDING), policy(), ALICE, True),
        (request(PENDING), policy(), DAVE, False),  # not an approver
        (request(PENDING), policy(required=0), ALICE, False),  # the policy needs no approval
        (request(PENDING), None, ALICE, False),  # policy gone or unreadable
        (_with_records(approval(ALICE, 1)), policy(), ALICE, False),  # already approved
        (_with_records(approval(ALICE, 1)), policy(), BOB, True),
        (_with_records(approval(ALICE, 1, "deny")), policy(), ALICE, False),  # already denied
        (request((0.1, decided()), (1, issued())), policy(), ALICE, False),  # not Pending
        (request(PENDING, requester=ALICE), policy(), ALICE, False),  # own request
        (request(PENDING, requester=ALICE), policy(allow_self=True), ALICE, True),
        (
            request(PENDING),
            policy(approvers=[{"kind": "User", "name": "dave"}]),
            DAVE,
            True,
        ),
    ],
)
def test_a_request_awaits_the_caller_only_when_the_caller_may_still_decide(
    body: dict[str, Any], spec: Any, caller: UserInfo, awaits: bool
) -> None:
    assert awaits_approval_of(body, spec, caller) is awaits


def test_the_annotation_is_ahead_of_status_for_who_has_decided() -> None:
    body = request(PENDING)
    body["metadata"]["annotations"]["zsp.dev/approvals"] = (
        '[{"username": "alice", "groups": ["platform-leads"], "decision": "approve", "at": "2026-03-01T11:56:00Z"}]'
    )
    assert awaits_approval_of(body, policy(), ALICE) is False, "recorded by the webhook, not yet copied"


@pytest.mark.parametrize(
    ("records", "shown"),
    [
        ((), "0/2"),
        ((approval(ALICE, 1),), "1/2"),
        ((approval(ALICE, 1), approval(ALICE, 2)), "1/2"),  # one person counts once
        ((approval(DAVE, 1),), "0/2"),  # not eligible
    ],
)
def test_approval_progress_counts_what_the_policy_counts(records: tuple[Any, ...], shown: str) -> None:
    assert approvals_progress(_with_records(*records), policy()) == shown


def test_pending_rows() -> None:
    row = pending_row(_with_records(approval(ALICE, 1)), policy(), NOW, namespace=False)
    assert row == ["deploy-4711", PIPELINE.username, "ci/deployer", "deploy", "1/2", "5m"]


# --- request --wait --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "line"),
    [
        (
            ACTIVE,
            "accessrequest.zsp.dev/deploy-4711 Active: deploy for ci/deployer in payments-staging, "
            "expires in 6m (2026-03-01T12:06:00.000000Z)",
        ),
        (
            request((0.1, decided("denied", "no policy allows permission cluster-admin"))),
            "accessrequest.zsp.dev/deploy-4711 Denied: no policy allows permission cluster-admin",
        ),
        (
            request(
                PENDING,
                (
                    2,
                    approvals_changed(
                        [approval(ALICE, 2, "deny")], denied_by="alice", message="denied by alice"
                    ),
                ),
            ),
            "accessrequest.zsp.dev/deploy-4711 Denied: denied by alice",
        ),
        (
            request(PENDING, (3, TimedOut("no approval quorum in time"))),
            "accessrequest.zsp.dev/deploy-4711 TimedOut: no approval quorum in time",
        ),
        (
            request((0.1, decided()), (1, IssueFailed("role binding refused: forbidden"))),
            "accessrequest.zsp.dev/deploy-4711 Failed: role binding refused: forbidden",
        ),
        (
            request((0.1, decided()), (1, issued()), (4, ended("Completed", "spec.done was set", 4))),
            "accessrequest.zsp.dev/deploy-4711 Completed 60s ago: spec.done was set",
        ),
        (
            request(PENDING),
            "accessrequest.zsp.dev/deploy-4711 Pending: needs 2 approvals",
        ),
        (request(), "accessrequest.zsp.dev/deploy-4711 Pending: waiting for the operator's decision"),
    ],
)
def test_outcome_line(body: dict[str, Any], line: str) -> None:
    assert outcome_line(body, NOW) == line


@pytest.mark.parametrize(
    ("body", "outcome", "terminal"),
    [
        (request(PENDING), False, False),
        (request((0.1, decided())), False, False),
        (ACTIVE, True, False),
        (request((0.1, decided("denied", "no"))), True, True),
        (request((0.1, decided()), (1, issued()), (2, ended("Revoked", "policy changed", 2))), True, True),
    ],
)
def test_when_waiting_stops(body: dict[str, Any], outcome: bool, terminal: bool) -> None:
    assert is_outcome(body) is outcome, "request --wait stops at Active or any end"
    assert is_outcome(body, terminal=True) is terminal, "done --wait stops only at an end"


def test_waiting_for_says_what_is_missing() -> None:
    assert waiting_for(request()) == "waiting for the operator's decision"
    assert waiting_for(request(PENDING)) == "needs 2 approvals"
    assert waiting_for(request((0.1, decided()))) == "approved, waiting for the grant to be issued"
    assert at(0) < NOW
