"""`zsp describe`: the timeline from status and Events (in order, Events that repeat status
left out, a live grant's expiry ahead), and the rendered text: decision, approvals with what
counted, grant, objects (or why there are none), conditions, events, unreadable parts."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from cli_bodies import (
    ALICE,
    BOB,
    DAVE,
    EPHEMERAL_SPEC,
    NOW,
    approval,
    approvals_changed,
    decided,
    ended,
    event,
    issued,
    policy,
    request,
)

from zsp_operator.cli.describe import distinct, record_effects, relative, render, stamp
from zsp_operator.cli.timeline import event_time, timeline
from zsp_operator.core.lifecycle import IssueFailed, TimedOut
from zsp_operator.core.models import UserInfo

PENDING = (0.1, decided("pending", "needs 2 approvals"))
PIPELINE_LEAD = UserInfo(username="carol", groups=["platform-leads"])  # a lead who files a request
APPROVED_BY_TWO = request(
    PENDING,
    (1, approvals_changed([approval(ALICE, 1, comment="build is green")], message="waiting for 1 more")),
    (
        2,
        approvals_changed(
            [approval(ALICE, 1, comment="build is green"), approval(BOB, 2)],
            approved=True,
            message="approved by alice, bob",
        ),
    ),
    (2.1, issued(minutes=2.1)),
)
GRANT = {
    "metadata": {"name": "deploy-4711", "uid": "uid-grant"},
    "status": {
        "objects": [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "name": "zsp-deploy",
                "namespace": "payments-staging",
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "name": "zsp-deploy",
                "namespace": "payments-staging",
            },
        ]
    },
}


def steps(body: dict[str, Any], events: list[dict[str, Any]] | None = None) -> list[str]:
    return [entry.step for entry in timeline(body, events or [])]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (request(), ["requested"]),
        (request((0.1, decided("denied", "no policy"))), ["requested", "decided"]),
        (APPROVED_BY_TWO, ["requested", "decided", "approved", "approved", "issued", "expires"]),
        (
            request((0.1, decided()), (1, issued()), (11, ended("Expired", "ttl reached", 11))),
            ["requested", "decided", "issued", "revoked"],
        ),
        (
            request((0.1, decided()), (1, IssueFailed("rolebinding refused"))),
            ["requested", "decided", "failed"],
        ),
        (request(PENDING, (30, TimedOut("no quorum in 30m"))), ["requested", "decided", "denied"]),
    ],
)
def test_timeline_is_the_audit_chain_and_a_live_grants_expiry(
    body: dict[str, Any], expected: list[str]
) -> None:
    assert steps(body) == expected


def test_timeline_weaves_in_events_that_status_does_not_record() -> None:
    events = [
        event("GrantIssued", "granted deploy", 2.1),  # repeats status: left out
        event("ApprovalRecorded", "approve by bob", 2),  # repeats status: left out
        event("EditIgnored", "only spec.done may change", 3, "Warning", count=2),
    ]
    entries = timeline(APPROVED_BY_TWO, events)
    assert [e.step for e in entries][-2:] == ["event EditIgnored", "expires"]
    edit = entries[-2]
    assert edit.warning
    assert edit.detail == "only spec.done may change (x2)"


def test_timeline_marks_what_went_wrong_and_what_lies_ahead() -> None:
    denied = timeline(request((0.1, decided("denied", "no policy"))), [])
    assert denied[-1].warning
    assert timeline(APPROVED_BY_TWO, [])[-1].future


@pytest.mark.parametrize(
    ("fields", "minutes"),
    [
        ({"lastTimestamp": "2026-03-01T11:58:00Z", "firstTimestamp": "2026-03-01T11:50:00Z"}, -2),
        ({"eventTime": "2026-03-01T11:57:00.123456Z"}, -3),
        ({"metadata": {"creationTimestamp": "2026-03-01T11:56:00Z"}}, -4),
    ],
)
def test_event_time_from_whichever_field_is_set(fields: dict[str, Any], minutes: int) -> None:
    at = event_time(fields)
    assert at is not None
    assert abs((at - (NOW + timedelta(minutes=minutes))).total_seconds()) < 1


def test_time_stamps_and_relative_times() -> None:
    assert stamp(NOW) == "2026-03-01T12:00:00Z"
    assert stamp(None) == "<none>"
    assert relative(NOW - timedelta(minutes=5), NOW) == "5m ago"
    assert relative(NOW + timedelta(minutes=3), NOW) == "in 3m"


def test_describe_tells_the_whole_story_of_an_approved_grant() -> None:
    text = render(
        APPROVED_BY_TWO, events=[event("GrantIssued", "granted", 2.1)], grant=GRANT, policy=policy(), now=NOW
    )
    lines = text.splitlines()
    assert lines[:4] == [
        "Name:         deploy-4711",
        "Namespace:    payments-staging",
        "UID:          uid-deploy-4711",
        "Phase:        Active",
    ]
    assert "Requester:    system:serviceaccount:ci:pipeline (groups: system:serviceaccounts" in text
    assert "  Grantee:    ServiceAccount ci/deployer (bind mode)" in lines
    assert "  Outcome:    allowed" in lines
    assert "  Policy:     ci-deployers" in lines
    assert "Approvals:    2 of 2 required (approvers: Group platform-leads)" in lines
    assert [line.split()[:4] for line in lines if line.startswith(("  alice", "  bob"))] == [
        ["alice", "approve", "4m", "yes"],
        ["bob", "approve", "3m", "yes"],
    ]
    assert "build is green" in text
    assert "  TaskGrant:  deploy-4711 (uid uid-grant)" in lines
    assert "  Expires:    2026-03-01T12:07:06Z (in 7m6s)" in lines
    assert [line.split() for line in lines if line.startswith(("  Role", "  RoleBinding"))] == [
        ["Role", "payments-staging", "zsp-deploy"],
        ["RoleBinding", "payments-staging", "zsp-deploy"],
    ]
    sections = [line for line in lines if line and not line.startswith(" ") and line.endswith(":")]
    assert sections == ["Request:", "Decision:", "Grant:", "Objects:", "Conditions:", "Timeline:", "Events:"]


def test_describe_explains_approvals_that_did_not_count() -> None:
    body = request(
        PENDING,
        (
            1,
            approvals_changed([approval(DAVE, 1), approval(ALICE, 2), approval(ALICE, 3)], message="waiting"),
        ),
    )
    text = render(body, events=[], grant=None, policy=policy(), now=NOW)
    rows = [
        re.split(r"\s{3,}", line.strip())
        for line in text.splitlines()
        if line.startswith(("  alice", "  dave"))
    ]
    counted = {(row[0], row[2]): row[3] for row in rows}
    assert "Approvals:    1 of 2 required" in text
    assert counted[("dave", "4m")] == "no: not an eligible approver"
    assert counted[("alice", "3m")] == "yes"
    assert counted[("alice", "2m")] == "no: duplicate"
    assert "Objects:      none: nothing was issued" in text
    assert "Grant:        none issued" in text


def test_describe_without_the_policy_still_lists_the_records() -> None:
    body = request(PENDING, (1, approvals_changed([approval(ALICE, 1)], message="waiting")))
    text = render(body, events=None, grant=None, policy=None, now=NOW, events_error="events is forbidden")
    assert "Approvals:    1 recorded (policy not readable: cannot say which count)" in text
    assert "Events:       not readable: events is forbidden" in text


@pytest.mark.parametrize(
    ("body", "grant", "objects"),
    [
        (
            request((0.1, decided()), (1, issued()), (3, ended("Completed", "done", 3))),
            None,
            "none: the grant ended and everything it created was removed",
        ),
        (request((0.1, decided()), (1, issued())), None, "TaskGrant not readable with these credentials"),
        (
            request((0.1, decided()), (1, issued())),
            {"metadata": {"uid": "uid-grant"}, "status": {}},
            "none recorded on the TaskGrant yet",
        ),
    ],
)
def test_describe_says_why_there_are_no_objects(body: dict[str, Any], grant: Any, objects: str) -> None:
    assert f"Objects:      {objects}" in render(body, events=[], grant=grant, policy=None, now=NOW)


def test_describe_of_an_ephemeral_request_shows_delivery_rules_and_the_token_id() -> None:
    body = request(
        (0.1, decided()), (1, issued(identity=("payments-staging", "zsp-agent"))), spec=EPHEMERAL_SPEC
    )
    body["status"]["tokenCredentialId"] = "jti-123"
    text = render(body, events=[], grant=None, policy=None, now=NOW)
    assert "  Grantee:    a ServiceAccount minted for this grant (ephemeral mode)" in text
    assert "  Rule:       {verbs: [get], apiGroups: [apps], resources: [deployments]}" in text
    assert "  Delivery:   Secret ci/agent-kubeconfig, key kubeconfig" in text
    assert "  Identity:   payments-staging/zsp-agent" in text
    assert "  Token jti:  jti-123" in text
    assert "  TTL:        the policy's defaultTTL" in text


def test_describe_shows_what_an_ended_grant_was_used_for() -> None:
    body = request((0.1, decided()), (1, issued()), (5, ended("Completed", "done", 5)), spec=EPHEMERAL_SPEC)
    assert "Usage" not in render(body, events=[], grant=None, policy=None, now=NOW)
    body["status"]["usage"] = {
        "used": [
            {"verb": "get", "apiGroup": "apps", "resource": "deployments", "namespace": "pay", "count": 4}
        ],
        "unused": [{"verbs": ["patch", "update"], "apiGroups": ["apps"], "resources": ["deployments"]}],
        "denied": [{"verb": "delete", "resource": "pods", "namespace": "pay", "count": 1}],
        "events": 5,
    }
    text = render(body, events=[], grant=None, policy=None, now=NOW)
    rows = [line.split() for line in text.split("Usage:")[1].split("Conditions:")[0].strip().splitlines()]
    assert rows[1:] == [
        ["used", "get", "apps/deployments", "pay", "4"],
        ["denied", "delete", "pods", "pay", "1"],
        ["unused", "patch,update", "apps/deployments", "<none>", "<none>"],
    ]
    body["status"]["usage"] = {"events": 0}
    assert "Usage:        no request made with the grant" in render(
        body, events=[], grant=None, policy=None, now=NOW
    )


def test_describe_of_an_undecided_request() -> None:
    text = render(request(), events=[], grant=None, policy=None, now=NOW)
    assert "Decision:\n  not decided yet: the operator has not seen this request" in text
    assert "Conditions:   <none>" in text


@pytest.mark.parametrize(
    ("records", "effects"),
    [
        ([approval(ALICE, 1), approval(BOB, 2)], ["yes", "yes"]),
        ([approval(ALICE, 1), approval(ALICE, 2)], ["yes", "no: duplicate"]),
        ([approval(DAVE, 1)], ["no: not an eligible approver"]),
        ([approval(DAVE, 1, "deny")], ["no: not an eligible approver"]),
        ([approval(ALICE, 1), approval(BOB, 2, "deny")], ["yes", "denies"]),
        ([approval(PIPELINE_LEAD, 1)], ["no: self-approval not allowed"]),
    ],
)
def test_each_approval_record_says_whether_it_counted(records: list[Any], effects: list[str]) -> None:
    assert record_effects(records, policy(), PIPELINE_LEAD) == effects


def test_events_posted_on_both_request_and_grant_are_shown_once() -> None:
    issued_event = event("GrantIssued", "granted deploy", 2.1)
    on_grant = {**issued_event, "involvedObject": {"kind": "TaskGrant"}}
    text = render(
        APPROVED_BY_TWO,
        events=[issued_event, on_grant, event("EditIgnored", "x", 3)],
        grant=None,
        policy=None,
        now=NOW,
    )
    events = text.split("Events:")[1]
    assert events.count("GrantIssued") == 1
    assert distinct([issued_event, on_grant]) == [issued_event]
