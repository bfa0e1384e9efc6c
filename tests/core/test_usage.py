"""Evidence of use, pure: reading EventLists, attributing uses to grants, summaries and advice."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from core_factories import NOW, policy

from zsp_operator.core.advice import advise, merge_patch, recorded_usage, rule_wire
from zsp_operator.core.models import PolicyRule, TaskGrant, UsageSummary, format_time
from zsp_operator.core.usage import (
    MAX_EVENTS,
    AuditEventsError,
    UsageTally,
    made_under,
    narrowed,
    read_event_list,
    summarize,
)

GRANTEE = "system:serviceaccount:payments:zsp-read-1a2b3c"
JTI = "0b6f3e2a-8d4c-4f1e-b7a9-5c2d1e0f9a83"


def event(
    verb: str = "get",
    resource: str = "pods",
    *,
    group: str = "",
    namespace: str = "payments",
    name: str = "web-1",
    subresource: str = "",
    code: int = 200,
    decision: str | None = "allow",
    username: str = GRANTEE,
    jti: str | None = JTI,
    at: timedelta = timedelta(seconds=10),
    stage: str = "ResponseComplete",
    audit_id: str | None = None,
) -> dict[str, Any]:
    """One audit.k8s.io/v1 Event as kube-apiserver sends it at Metadata level."""
    ref = {"resource": resource, "namespace": namespace, "name": name, "apiGroup": group, "apiVersion": "v1"}
    if subresource:
        ref["subresource"] = subresource
    user: dict[str, Any] = {"username": username, "groups": ["system:serviceaccounts"]}
    if jti:
        user["extra"] = {"authentication.kubernetes.io/credential-id": [f"JTI={jti}"]}
    body: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id or f"{verb}-{resource}-{name}-{code}-{at.total_seconds()}",
        "stage": stage,
        "requestURI": f"/api/v1/namespaces/{namespace}/{resource}/{name}",
        "verb": verb,
        "user": user,
        "objectRef": ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": format_time(NOW + at),
        "stageTimestamp": format_time(NOW + at + timedelta(milliseconds=3)),
    }
    if decision:
        body["annotations"] = {"authorization.k8s.io/decision": decision}
    return body


def event_list(*items: dict[str, Any]) -> bytes:
    return json.dumps(
        {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": list(items)}
    ).encode()


def ephemeral_grant(
    rules: list[dict[str, Any]], *, jti: str | None = JTI, identity: str = "zsp-read-1a2b3c"
) -> TaskGrant:
    return TaskGrant.model_validate(
        {
            "metadata": {"name": "read-1", "namespace": "payments", "uid": "grant-1"},
            "spec": {
                "request": {"name": "read-1", "uid": "request-1"},
                "policy": "readers",
                "mode": "ephemeral" if jti else "bind",
                "identity": {"namespace": "payments", "name": identity},
                "permission": "read",
                "rules": rules,
                "expiresAt": format_time(NOW + timedelta(minutes=10)),
            },
            "status": {"issuedAt": format_time(NOW), **({"tokenCredentialId": jti} if jti else {})},
        }
    )


PODS_AND_DEPLOYMENTS = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
]


# --- reading ---------------------------------------------------------------------------------


def test_an_event_list_keeps_only_what_evidence_needs() -> None:
    uses = read_event_list(event_list(event("list", "pods", name="", code=200)))
    assert len(uses) == 1
    use = uses[0]
    assert (use.verb, use.group, use.resource, use.namespace, use.code, use.allowed) == (
        "list",
        "",
        "pods",
        "payments",
        200,
        True,
    )
    assert use.identity == ("payments", "zsp-read-1a2b3c")
    assert use.credential_id == JTI
    assert use.at == NOW + timedelta(seconds=10)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"stage": "RequestReceived"}, "other stages repeat the same request"),
        ({"stage": "ResponseStarted"}, "other stages repeat the same request"),
        ({"user": {"username": "alice"}}, "people are not grantees"),
        ({"user": {"username": "system:kube-controller-manager"}}, "control plane components"),
        ({"objectRef": None}, "a non-resource URL"),
    ],
)
def test_events_that_cannot_be_evidence_are_dropped_early(changes: dict[str, Any], why: str) -> None:
    body = {**event(), **changes}
    if changes.get("objectRef", "") is None:
        del body["objectRef"]
    assert read_event_list(event_list(body)) == [], why


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body: not JSON"),
        (b"[]", "body: must be a JSON object"),
        (
            json.dumps({"kind": "Event", "apiVersion": "audit.k8s.io/v1"}).encode(),
            "expected apiVersion audit.k8s.io/v1 and kind EventList",
        ),
        (json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1beta1"}).encode(), "kind EventList"),
        (
            json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": {}}).encode(),
            "items: must be a list",
        ),
        (event_list("x"), "items[0]: must be an object"),  # type: ignore[arg-type]
        (event_list({**event(), "verb": ""}), "items[0].verb"),
        (event_list(event(), {**event(), "responseStatus": {"code": "200"}}), "items[1].responseStatus.code"),
        (event_list({**event(), "objectRef": {"namespace": "x"}}), "items[0].objectRef.resource"),
        (
            event_list({**event(), "requestReceivedTimestamp": "yesterday", "stageTimestamp": None}),
            "items[0].requestReceivedTimestamp",
        ),
    ],
)
def test_a_malformed_event_list_is_refused_naming_the_field(body: bytes, field: str) -> None:
    with pytest.raises(AuditEventsError, match=field.replace("[", r"\[").replace("]", r"\]")):
        read_event_list(body)


def test_an_oversized_event_list_is_refused() -> None:
    items = [event()] * (MAX_EVENTS + 1)
    with pytest.raises(AuditEventsError, match="batch-max-size"):
        read_event_list(event_list(*items))


def test_the_decision_annotation_says_denied_when_present_and_the_code_otherwise() -> None:
    uses = read_event_list(
        event_list(
            event(code=403, decision="forbid"),
            event(code=403, decision=None),
            event(code=404, decision="allow"),  # allowed, the object just was not there
        )
    )
    assert [u.allowed for u in uses] == [False, False, True]


# --- attributing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grant_jti", "use_changes", "ended", "attributed"),
    [
        (JTI, {}, None, True),
        (JTI, {"jti": "another-token"}, None, False),  # the same account name, another token
        (JTI, {"username": "system:serviceaccount:payments:someone-else"}, None, False),
        (JTI, {"at": timedelta(hours=5)}, NOW, True),  # the grant's own token: whenever it was used
        (None, {"jti": None}, None, True),  # bound: the grantee inside the window
        (None, {"jti": None, "at": timedelta(seconds=-30)}, None, False),  # before issuance
        (
            None,
            {"jti": None, "at": timedelta(milliseconds=-500)},
            None,
            True,
        ),  # binding a moment before issuedAt
        (
            None,
            {"jti": None, "at": timedelta(seconds=20)},
            NOW + timedelta(seconds=15),
            False,
        ),  # after the end
        (None, {"jti": None, "at": timedelta(seconds=10)}, NOW + timedelta(seconds=15), True),
        (None, {"jti": "long-lived-token"}, None, True),  # bound: any token of the grantee in the window
    ],
)
def test_a_use_belongs_to_a_grant_by_its_token_or_its_window(
    grant_jti: str | None, use_changes: dict[str, Any], ended: Any, attributed: bool
) -> None:
    grant = ephemeral_grant(PODS_AND_DEPLOYMENTS, jti=grant_jti)
    (use,) = read_event_list(event_list(event(**use_changes)))
    assert made_under(use, grant, ended) is attributed


def test_a_tally_counts_covered_uses_denials_and_ignores_repeats_and_the_rest() -> None:
    rules = [PolicyRule.model_validate(r) for r in PODS_AND_DEPLOYMENTS]
    uses = read_event_list(
        event_list(
            event("get", "pods", audit_id="a"),
            event("get", "pods", audit_id="a"),  # the API server sent the batch again
            event("list", "pods", name="", audit_id="b"),
            event(
                "create", "selfsubjectaccessreviews", group="authorization.k8s.io", namespace="", audit_id="c"
            ),
            event("delete", "pods", code=403, decision="forbid", audit_id="d"),
        )
    )
    tally = UsageTally()
    assert [tally.add(u, rules) for u in uses] == ["used", "repeated", "used", "unrelated", "denied"]
    summary = summarize(rules, tally)
    assert [(u.verb, u.resource, u.count) for u in summary.used] == [("get", "pods", 1), ("list", "pods", 1)]
    assert [(d.verb, d.resource, d.count) for d in summary.denied] == [("delete", "pods", 1)]
    assert [rule_wire(r) for r in summary.unused] == [
        {"verbs": ["get", "list", "watch"], "apiGroups": ["apps"], "resources": ["deployments"]}
    ]
    assert summary.events == 3


@pytest.mark.parametrize(
    ("rules", "used", "unused", "proposed"),
    [
        pytest.param(
            [{"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": ["get", "list", "watch"]}],
            [("get", "", "pods"), ("list", "", "pods")],
            [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["watch"]},
            ],
            [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
            id="one-rule-split",
        ),
        pytest.param(
            [{"apiGroups": [""], "resources": ["*"], "verbs": ["*"]}],
            [("get", "", "pods"), ("get", "", "pods/log"), ("list", "", "configmaps")],
            [],
            [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]},
                {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]},
            ],
            id="wildcards-become-what-was-used",
        ),
        pytest.param(
            [
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments"],
                    "verbs": ["get", "patch"],
                    "resourceNames": ["web"],
                }
            ],
            [("get", "apps", "deployments")],
            [
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments"],
                    "verbs": ["patch"],
                    "resourceNames": ["web"],
                }
            ],
            [
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments"],
                    "verbs": ["get"],
                    "resourceNames": ["web"],
                }
            ],
            id="resource-names-kept",
        ),
    ],
)
def test_unused_cells_and_the_narrowed_rules(
    rules: list[dict[str, Any]],
    used: list[tuple[str, str, str]],
    unused: list[dict[str, Any]],
    proposed: list[dict[str, Any]],
) -> None:
    parsed = [PolicyRule.model_validate(r) for r in rules]
    keys = {(verb, group, resource, "payments") for verb, group, resource in used}
    tally = UsageTally()
    tally.used.update(keys)
    assert [rule_wire(r) for r in summarize(parsed, tally).unused] == unused
    assert [rule_wire(r) for r in narrowed(parsed, keys)] == proposed


def test_a_narrowed_rule_set_still_allows_every_use() -> None:
    from zsp_operator.core.rbac import Attributes, rules_allow

    rules = [PolicyRule.model_validate(r) for r in PODS_AND_DEPLOYMENTS]
    keys = {("get", "", "pods", "payments"), ("watch", "apps", "deployments", "payments")}
    smaller = narrowed(rules, keys)
    for verb, group, resource, _ in keys:
        assert rules_allow(smaller, Attributes(verb=verb, group=group, resource=resource))
    assert not rules_allow(smaller, Attributes(verb="list", group="", resource="pods"))


# --- advice ----------------------------------------------------------------------------------


def ended_request(
    permission: str, used: list[tuple[str, str, str]], *, ended: timedelta = timedelta(0), name: str = "r"
) -> dict[str, Any]:
    summary = UsageSummary(
        used=[
            {"verb": v, "apiGroup": g, "resource": r, "namespace": "payments-staging", "count": 1}
            for v, g, r in used
        ]  # type: ignore[misc]
    )
    return {
        "metadata": {"name": name, "namespace": "payments-staging"},
        "spec": {"permission": permission},
        "status": {
            "policy": "ci-deployers",
            "revokedAt": format_time(NOW + ended),
            "usage": summary.to_wire(),
        },
    }


def test_advice_proposes_the_rules_every_grant_used_and_keeps_the_rest_of_the_policy() -> None:
    the_policy = policy()  # deploy: apps/deployments get,list,patch,update; read-only: ClusterRole view
    requests = [
        ended_request("deploy", [("get", "apps", "deployments")]),
        ended_request("deploy", [("get", "apps", "deployments"), ("patch", "apps", "deployments")]),
        ended_request("deploy", [("update", "apps", "deployments")], ended=-timedelta(days=30)),  # too old
        {**ended_request("deploy", [("list", "apps", "deployments")]), "status": {"policy": "other"}},
    ]
    summaries = recorded_usage("ci-deployers", requests, NOW - timedelta(days=7))
    assert len(summaries) == 2
    advice = {a.name: a for a in advise(the_policy, summaries)}
    assert advice["deploy"].grants == 2
    assert [rule_wire(r) for r in advice["deploy"].unused] == [
        {"verbs": ["list", "update"], "apiGroups": ["apps"], "resources": ["deployments"]}
    ]
    assert not advice["read-only"].changes
    assert advice["read-only"].why == "no ended grant with recorded usage"
    patch = merge_patch(the_policy, list(advice.values()))
    assert patch == {
        "spec": {
            "permissions": [
                {
                    "name": "deploy",
                    "rules": [
                        {"verbs": ["get", "patch"], "apiGroups": ["apps"], "resources": ["deployments"]}
                    ],
                },
                {"name": "read-only", "clusterRole": "view"},
            ]
        }
    }


def test_a_cluster_role_permission_is_replaced_by_the_rules_its_grants_used() -> None:
    summaries = [
        (
            "read-only",
            UsageSummary.model_validate(
                ended_request("read-only", [("get", "", "pods"), ("list", "", "pods")])["status"]["usage"]
            ),
        )
    ]
    (deploy, read_only) = advise(policy(), summaries)
    assert not deploy.changes
    assert [rule_wire(r) for r in read_only.proposed or []] == [
        {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}
    ]
    patch = merge_patch(policy(), [deploy, read_only])
    assert patch is not None
    assert patch["spec"]["permissions"][1] == {
        "name": "read-only",
        "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}],
    }


@pytest.mark.parametrize(
    ("used", "why"),
    [
        (
            [
                ("get", "apps", "deployments"),
                ("list", "apps", "deployments"),
                ("patch", "apps", "deployments"),
                ("update", "apps", "deployments"),
            ],
            "every rule was used across 1 grants",
        ),
        ([], "unused in all 1 grants: consider removing the permission"),
    ],
)
def test_nothing_to_change_says_why(used: list[tuple[str, str, str]], why: str) -> None:
    summaries = recorded_usage("ci-deployers", [ended_request("deploy", used)])
    (deploy, _) = advise(policy(), summaries)
    assert not deploy.changes
    assert deploy.why == why
    assert merge_patch(policy(), [deploy]) is None
