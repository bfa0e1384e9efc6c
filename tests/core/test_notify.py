"""Notifications, the pure part (core/notify.py), table by table.

Covered: the routes file accepts Apprise and webhook targets and refuses a target with both,
neither, or headers without a webhook, and routes naming undefined targets; routing merges the
file's routes with a policy's, names each target once, and always adds the break-glass targets
for a break-glass request's use, end, failure and denial, never for an ordinary one; a policy's
unknown event is refused at admission naming the field and the fix; the message of each event
says who asks, for whom, what (the rules in one line), where, how long, why, approvals so far
and needed, and carries the approve and deny commands only when an approval is needed;
credential-shaped text a person wrote is redacted; what a message says is built from the request,
the decision, the approvals tally or the grant.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import core_factories as factories
import pytest

from zsp_operator.core import notify as n
from zsp_operator.core.admission import admit_policy
from zsp_operator.core.approvals import Tally
from zsp_operator.core.errors import InvalidObject, parse
from zsp_operator.core.models import NamespacedName, NotifyRoute, PolicyRule, UserInfo
from zsp_operator.core.policy import Decision, Outcome

HOOK = {"webhook": "https://hooks.example/zsp"}
SLACK = {"apprise": "slack://T000/B000/XXXX/#leads"}


def config(**raw: Any) -> n.NotifyConfig:
    return parse(n.NotifyConfig, raw, "routes")


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"targets": {"a": {}}}, "set exactly one of apprise"),
        ({"targets": {"a": {**HOOK, **SLACK}}}, "set exactly one of apprise"),
        ({"targets": {"a": {**SLACK, "headers": {"X": "y"}}}}, "headers are for a webhook target only"),
        ({"targets": {"a": HOOK}, "breakGlass": ["b"]}, "not defined under targets: b"),
        (
            {"targets": {"a": HOOK}, "routes": [{"events": ["issued"], "targets": ["c"]}]},
            "not defined under targets: c",
        ),
        (
            {"targets": {"a": HOOK}, "routes": [{"events": ["issud"], "targets": ["a"]}]},
            "'issud' is not a notification event",
        ),
        ({"targets": {"a": HOOK}, "typo": 1}, "typo: unknown field"),
    ],
)
def test_routes_file_mistakes_name_the_field(raw: dict[str, Any], error: str) -> None:
    with pytest.raises(InvalidObject) as refused:
        config(**raw)
    assert error in str(refused.value)


def test_routes_file_accepts_one_url_or_a_list() -> None:
    parsed = config(targets={"leads": SLACK, "mail": {"apprise": ["mailto://a", "mailto://b"]}, "hook": HOOK})
    assert parsed.targets["leads"].apprise == [SLACK["apprise"]]
    assert parsed.targets["mail"].apprise == ["mailto://a", "mailto://b"]
    assert parsed.targets["hook"].webhook == HOOK["webhook"]


FILE = config(
    targets={"leads": SLACK, "oncall": HOOK, "audit": HOOK},
    routes=[{"events": ["breakGlass", "issueFailed"], "targets": ["audit"]}],
    breakGlass=["oncall"],
)
LEADS = [NotifyRoute(events=["approvalNeeded", "breakGlass"], targets=["leads", "nowhere"])]


@pytest.mark.parametrize(
    ("event", "routes", "break_glass", "expected"),
    [
        ("approvalNeeded", LEADS, False, ["leads"]),
        ("approvalNeeded", [], False, []),
        ("issued", LEADS, False, []),
        ("issueFailed", [], False, ["audit"]),
        ("breakGlass", LEADS, True, ["audit", "leads", "oncall"]),
        ("ended", [], True, ["oncall"]),
        ("ended", [], False, []),
        ("denied", [], True, ["oncall"]),
        ("approved", [], True, []),
    ],
)
def test_routing(event: str, routes: list[NotifyRoute], break_glass: bool, expected: list[str]) -> None:
    assert n.targets_for(event, FILE, routes, break_glass=break_glass) == expected


def test_unknown_targets_of_a_policy() -> None:
    assert n.unknown_targets(FILE, LEADS) == ["nowhere"]


def test_admission_refuses_an_unknown_event_naming_field_and_fix() -> None:
    body = {
        "metadata": {"name": "p"},
        "spec": {
            "permissions": [{"name": "read", "clusterRole": "view"}],
            "notify": [{"events": ["approvalNeeded", "aproved"], "targets": ["leads"]}],
        },
    }
    verdict = admit_policy(body, ["view"])
    assert verdict.errors == [
        "AccessPolicy p: spec.notify[0].events[1]: 'aproved' is not a notification event; use one of "
        "approvalNeeded, approved, denied, timedOut, issued, ended, breakGlass, persistenceGranted, issueFailed"
    ]
    body["spec"]["notify"][0]["events"] = list(n.NOTIFY_EVENTS)
    assert admit_policy(body, ["view"]).allowed


ABOUT = n.Subject(
    name="needs-two",
    namespace="pay",
    uid="u-1",
    policy="deployers",
    requester=UserInfo(username="system:serviceaccount:ci:pipeline"),
    grantee=NamespacedName(namespace="ci", name="deployer"),
    permission="deploy",
    rules=(
        PolicyRule(api_groups=["apps"], resources=["deployments"], verbs=["get", "patch"]),
        PolicyRule(api_groups=[""], resources=["pods"], resource_names=["web"], verbs=["get"]),
    ),
    ttl=timedelta(minutes=10),
    reason="deploy build 4711",
    approvals=("alice",),
    approvals_needed=2,
)


def test_an_approval_message_is_actionable() -> None:
    msg = n.message("approvalNeeded", ABOUT)
    assert msg.title == "approval needed: AccessRequest pay/needs-two"
    assert msg.lines == (
        "who asks: system:serviceaccount:ci:pipeline",
        "for: ServiceAccount ci/deployer",
        "what: deploy (apps/deployments: get,patch; core/pods[web]: get)",
        "where: namespace pay",
        "how long: 10m",
        "reason: deploy build 4711",
        "policy: deployers",
        "approvals: 1 of 2 (alice)",
        "run: kubectl zsp approve needs-two -n pay",
        "run: kubectl zsp deny needs-two -n pay",
        "run: kubectl zsp describe needs-two -n pay",
    )
    assert msg.data["commands"][:2] == [
        "kubectl zsp approve needs-two -n pay",
        "kubectl zsp deny needs-two -n pay",
    ]
    assert msg.data["request"] == {"name": "needs-two", "namespace": "pay", "uid": "u-1"}
    assert not msg.warning


@pytest.mark.parametrize("event", [e for e in n.NOTIFY_EVENTS if e != "approvalNeeded"])
def test_only_an_approval_message_carries_approve_and_deny(event: str) -> None:
    msg = n.message(event, ABOUT)
    assert not any("approve" in c or "deny" in c for c in msg.data["commands"])
    assert msg.title.endswith("AccessRequest pay/needs-two")


@pytest.mark.parametrize(
    ("event", "warning"),
    [("issued", False), ("approved", False), ("ended", False), ("denied", True), ("breakGlass", True)],
)
def test_warnings(event: str, warning: bool) -> None:
    assert n.message(event, ABOUT).warning is warning


def test_ephemeral_and_cluster_role() -> None:
    about = n.Subject(
        name="x", namespace="ns", uid="u", ephemeral=True, cluster_role="view", permission="read"
    )
    lines = n.message("issued", about).lines
    assert "for: an ephemeral ServiceAccount" in lines
    assert "what: read (ClusterRole view)" in lines


JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"debug with {JWT} please", "debug with [redacted] please"),
        ("token: abc123", "token: [redacted]"),
        ("client-key-data=LS0tLS1", "client-key-data=[redacted]"),
        ("Authorization: Bearer abc", "Authorization: [redacted] [redacted]"),
        ("deploy build 4711", "deploy build 4711"),
    ],
)
def test_redaction(text: str, expected: str) -> None:
    assert n.redact(text) == expected


def test_a_reason_with_a_token_never_reaches_the_message() -> None:
    about = n.Subject(name="x", namespace="ns", uid="u", reason=f"use {JWT}", outcome=f"failed: {JWT}")
    msg = n.message("issueFailed", about)
    assert JWT not in msg.text
    assert JWT not in str(msg.data)


# --- what a message says, from the request, the decision, the tally or the grant -------------

DEPLOY = (
    PolicyRule(api_groups=["apps"], resources=["deployments"], verbs=["get", "list", "patch", "update"]),
)
PENDING = Decision(
    Outcome.PENDING,
    "allowed once approved",
    "ci-deployers",
    ttl=timedelta(minutes=10),
    permission="deploy",
    rules=DEPLOY,
    approvals_required=2,
)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (
            lambda: n.about_request(factories.request(), PENDING),
            {
                "who asks: system:serviceaccount:ci:pipeline",
                "for: ServiceAccount ci/deployer",
                "what: deploy (apps/deployments: get,list,patch,update)",
                "how long: 10m",
                "policy: ci-deployers",
                "approvals: 0 of 2 (none yet)",
            },
        ),
        (
            lambda: n.about_request(
                factories.request(),
                tally=Tally(approved=True, denied_by=None, counted=("alice", "bob"), ignored=(), missing=0),
            ),
            {"approvals: 2 of 2 (alice, bob)", "reason: deploy build 4711 (pipeline run 88)"},
        ),
        (
            lambda: n.about_request(
                factories.request(
                    {
                        "permission": None,
                        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
                        **factories.EPHEMERAL,
                    }
                ),
                outcome="failed at Role: forbidden",
            ),
            {
                "for: an ephemeral ServiceAccount",
                "what: core/configmaps: get",
                "outcome: failed at Role: forbidden",
            },
        ),
        (
            lambda: n.about_grant(factories.grant(identity=None), None, "Expired: TTL reached"),
            {
                "for: an ephemeral ServiceAccount",
                "until: 2026-03-01T12:05:00.000000Z",
                "policy: ci-deployers",
                "outcome: Expired: TTL reached",
            },
        ),
    ],
)
def test_what_a_message_says_about_a_request_or_grant(build: Any, expected: set[str]) -> None:
    about = build()
    lines = set(n.message("approvalNeeded", about).lines)
    assert expected <= lines, sorted(expected - lines)
