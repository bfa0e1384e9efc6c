"""Policy decisions in the pure core.

Covered: each check passing and failing (requester, namespace by name and selector, grantee in
bind and ephemeral mode, permission by name, catalogued ClusterRole, explicit rules, TTL, limits,
exclusive environments, persistence, approvers), several mismatches collected, the closest
policy chosen and named, the choice among matching policies, TTL default / at max / above max,
the break-glass cap, limits that ignore the request's own grant and expired or revoked grants,
a named policy that is missing, and no policies at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest
from core_factories import (
    EPHEMERAL,
    LABELS,
    NOW,
    REQUEST_UID,
    VIEW_RULES,
    grant,
    policy,
    request,
    requester,
)

from zsp_operator.core.grantindex import GrantIndex
from zsp_operator.core.models import AccessPolicy, AccessRequest, LabelSelector, PolicyRule, TaskGrant
from zsp_operator.core.policy import Decision, Outcome, decide, selector_matches

CATALOG = {"view": [PolicyRule.model_validate(r) for r in VIEW_RULES]}
TOKEN_RULE = {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}


def run(
    req: AccessRequest | None = None,
    policies: Sequence[AccessPolicy] | None = None,
    grants: Sequence[TaskGrant] = (),
    *,
    catalog: Mapping[str, Sequence[PolicyRule]] = CATALOG,
    break_glass_max_ttl: timedelta = timedelta(hours=1),
) -> Decision:
    return decide(
        req or request(),
        [policy()] if policies is None else policies,
        GrantIndex.of(grants),
        LABELS,
        NOW,
        catalog=catalog,
        break_glass_max_ttl=break_glass_max_ttl,
    )


def assert_denied_for(decision: Decision, fragment: str) -> None:
    assert decision.outcome is Outcome.DENIED, decision.reason
    assert decision.reason
    assert any(fragment in m for m in decision.mismatches), decision.mismatches
    assert fragment in decision.reason


# --- one row per check ----------------------------------------------------------------------

# (policy changes, request changes, request kwargs, None if allowed else a mismatch fragment)
CHECKS: list[Any] = [
    pytest.param({}, {}, {}, None, id="baseline-allowed"),
    # requester
    pytest.param({}, {}, {"who": requester("alice", "platform-oncall")}, None, id="requester-by-group"),
    pytest.param(
        {"requesters": [{"kind": "User", "name": "alice"}]},
        {},
        {"who": requester("alice")},
        None,
        id="requester-by-user",
    ),
    pytest.param(
        {},
        {},
        {"who": requester("system:serviceaccount:ci:intruder", "system:serviceaccounts")},
        'requester "system:serviceaccount:ci:intruder" (groups: system:serviceaccounts) is not among the '
        'requesters of policy "ci-deployers" (ServiceAccount ci/pipeline, Group platform-oncall)',
        id="requester-not-listed",
    ),
    pytest.param(
        {}, {}, {"anonymous": True}, "the request has no authenticated requester", id="requester-missing"
    ),
    pytest.param(
        {"requesters": []},
        {},
        {},
        'requesters of policy "ci-deployers" is empty, so nobody may file',
        id="requesters-empty",
    ),
    # namespace
    pytest.param({"namespaces.selector": None}, {}, {}, None, id="namespace-by-name"),
    pytest.param(
        {"namespaces.names": []}, {}, {"namespace": "payments-prod"}, None, id="namespace-by-match-labels"
    ),
    pytest.param(
        {
            "namespaces.selector": {
                "matchExpressions": [{"key": "zsp.dev/environment", "operator": "In", "values": ["staging"]}]
            }
        },
        {},
        {"namespace": "billing"},
        None,
        id="namespace-by-expression",
    ),
    pytest.param(
        {},
        {},
        {"namespace": "billing"},
        'namespace "billing" (team=billing, zsp.dev/environment=staging) is not allowed by namespaces.names '
        '(payments-staging) or namespaces.selector (team=payments) of policy "ci-deployers"',
        id="namespace-not-allowed",
    ),
    pytest.param(
        {"namespaces": {}},
        {},
        {},
        "has neither names nor a selector, so grants may land nowhere",
        id="namespaces-empty",
    ),
    # grantee
    pytest.param(
        {},
        {"grantee.serviceAccount.name": "admin"},
        {},
        'spec.grantee.serviceAccount ci/admin is not among grantees.serviceAccounts of policy "ci-deployers" '
        "(ci/deployer)",
        id="grantee-not-listed",
    ),
    pytest.param({}, EPHEMERAL, {}, None, id="ephemeral-allowed"),
    pytest.param(
        {"grantees.ephemeral": None},
        EPHEMERAL,
        {},
        "spec.grantee.ephemeral is not allowed",
        id="ephemeral-not-enabled",
    ),
    pytest.param(
        {"grantees.ephemeral.enabled": False},
        EPHEMERAL,
        {},
        "spec.grantee.ephemeral is not allowed",
        id="ephemeral-disabled",
    ),
    pytest.param(
        {},
        {**EPHEMERAL, "delivery": None},
        {},
        "spec.delivery is missing",
        id="ephemeral-without-delivery",
    ),
    pytest.param(
        {},
        {**EPHEMERAL, "delivery.namespace": "payments-staging"},
        {},
        'spec.delivery.namespace "payments-staging" is not in grantees.ephemeral.deliveryNamespaces',
        id="ephemeral-delivery-elsewhere",
    ),
    # permission
    pytest.param(
        {},
        {"permission": "admin"},
        {},
        'spec.permission "admin" is not a permission of policy "ci-deployers": use one of deploy, read-only',
        id="permission-unknown",
    ),
    pytest.param({}, {"permission": "read-only"}, {}, None, id="catalogued-cluster-role"),
    pytest.param(
        {"permissions.1.clusterRole": "edit"},
        {},
        {},
        None,
        id="uncatalogued-role-unused",
    ),
    pytest.param(
        {"permissions": [{"name": "read-only", "clusterRole": "edit"}]},
        {"permission": "read-only"},
        {},
        'uses ClusterRole "edit", which is not in the operator\'s catalog',
        id="uncatalogued-cluster-role",
    ),
    pytest.param(
        {},
        {
            "permission": None,
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}],
        },
        {},
        None,
        id="rules-covered",
    ),
    pytest.param(
        {},
        {"permission": None, "rules": [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]},
        {},
        None,
        id="rules-covered-by-catalogued-role",
    ),
    pytest.param(
        {},
        {
            "permission": None,
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["delete"]}],
        },
        {},
        "spec.rules[0] {verbs: [delete], apiGroups: [apps], resources: [deployments]} is not covered by the "
        'permissions of policy "ci-deployers" (deploy, read-only)',
        id="rules-not-covered",
    ),
    pytest.param(
        {},
        {"permission": None, "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]},
        {},
        "has nonResourceURLs, which a grant's namespaced Role cannot hold",
        id="rules-non-resource",
    ),
    pytest.param(
        {},
        {"permission": None, "rules": [{"resources": ["deployments"], "verbs": ["get"]}]},
        {},
        "grants nothing without apiGroups and resources",
        id="rules-without-groups",
    ),
    pytest.param(
        {"permissions.0.rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]},
        {},
        {},
        'rule 0 of permission "deploy" {verbs: [get], nonResourceURLs: [/metrics]} has nonResourceURLs, '
        "which a grant's namespaced Role cannot hold: remove them from policy",
        id="permission-non-resource",
    ),
    # TTL
    pytest.param({}, {"ttl": "1h"}, {}, None, id="ttl-at-max"),
    pytest.param(
        {},
        {"ttl": "2h"},
        {},
        'spec.ttl 2h exceeds maxTTL 1h of policy "ci-deployers": ask for 1h or less',
        id="ttl-above-max",
    ),
    pytest.param({}, {"ttl": "0s"}, {}, "spec.ttl 0s is not positive", id="ttl-zero"),
    pytest.param(
        {"defaultTTL": "0s"},
        {"ttl": None},
        {},
        'defaultTTL 0s of policy "ci-deployers" is not positive: set spec.ttl',
        id="default-ttl-zero",
    ),
    # approvals
    pytest.param(
        {"approval.required": 2, "approval.approvers": []},
        {},
        {},
        'approval.required is 2 but approval.approvers of policy "ci-deployers" is empty, so nobody can approve',
        id="approvers-missing",
    ),
    # persistence
    pytest.param(
        {"permissions.0.rules": [TOKEN_RULE]},
        {},
        {},
        'rule 0 of permission "deploy" {verbs: [create], apiGroups: [""], resources: [serviceaccounts/token]} can '
        "outlive revocation: it can mint ServiceAccount tokens that outlive the grant, and policy "
        '"ci-deployers" does not allow that: narrow the rule, or set allowPersistence: true on the policy if '
        "this is intended",
        id="persistence-denied",
    ),
    pytest.param(
        {"permissions.0.rules": [TOKEN_RULE]},
        {"permission": None, "rules": [TOKEN_RULE]},
        {},
        "spec.rules[0] {verbs: [create]",
        id="persistence-in-requested-rules",
    ),
]


@pytest.mark.parametrize(("policy_changes", "request_changes", "request_kwargs", "expected"), CHECKS)
def test_each_check(
    policy_changes: dict[str, Any],
    request_changes: dict[str, Any],
    request_kwargs: dict[str, Any],
    expected: str | None,
) -> None:
    decision = run(request(request_changes, **request_kwargs), [policy(changes=policy_changes)])
    if expected is None:
        assert decision.outcome is Outcome.ALLOWED, decision.mismatches
        assert decision.policy == "ci-deployers"
        assert decision.mismatches == ()
    else:
        assert_denied_for(decision, expected)
        assert decision.policy == "ci-deployers"
        assert decision.ttl is None


# --- what an allowed decision carries --------------------------------------------------------


def test_allowed_decision_carries_the_grant() -> None:
    decision = run()
    assert decision.outcome is Outcome.ALLOWED
    assert decision.reason == (
        'policy "ci-deployers" allows permission "deploy" for ServiceAccount ci/deployer in namespace '
        '"payments-staging" for 10m without approval'
    )
    assert decision.ttl == timedelta(minutes=10)
    assert decision.permission == "deploy"
    assert [r.resources for r in decision.rules] == [["deployments"]]
    assert decision.cluster_role is None
    assert decision.persistence == ()
    assert not decision.break_glass
    assert decision.approvals_required == 0


def test_cluster_role_permission_has_no_inline_rules() -> None:
    decision = run(request({"permission": "read-only"}))
    assert decision.cluster_role == "view"
    assert decision.rules == ()


def test_ephemeral_reason_names_the_delivery_secret() -> None:
    decision = run(request(EPHEMERAL))
    assert "an ephemeral ServiceAccount delivered to Secret ci/deploy-4711-kubeconfig" in decision.reason


def test_pending_when_approvals_are_required() -> None:
    decision = run(policies=[policy(changes={"approval.required": 2})])
    assert decision.outcome is Outcome.PENDING
    assert decision.approvals_required == 2
    assert decision.ttl == timedelta(minutes=10)
    assert decision.reason.endswith("once 2 approvers from Group platform-leads approve")


@pytest.mark.parametrize(
    ("ttl", "default", "expected"),
    [
        pytest.param(None, "15m", timedelta(minutes=15), id="default"),
        pytest.param(None, "1h", timedelta(hours=1), id="default-at-max"),
        pytest.param("1h", "15m", timedelta(hours=1), id="asked-at-max"),
        pytest.param("90s", "15m", timedelta(seconds=90), id="asked-below-default"),
    ],
)
def test_ttl(ttl: str | None, default: str, expected: timedelta) -> None:
    decision = run(request({"ttl": ttl}), [policy(changes={"defaultTTL": default})])
    assert decision.outcome is Outcome.ALLOWED
    assert decision.ttl == expected


def test_ttl_above_max_is_refused_not_capped() -> None:
    decision = run(request({"ttl": "61m"}))
    assert decision.outcome is Outcome.DENIED
    assert decision.ttl is None
    assert decision.mismatches == (
        'spec.ttl 1h1m exceeds maxTTL 1h of policy "ci-deployers": ask for 1h or less',
    )


# --- break-glass ------------------------------------------------------------------------------

BREAK_GLASS = {"breakGlass": True, "maxTTL": "4h", "approval.required": 2}


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [
        pytest.param("30m", None, id="below-cap"),
        pytest.param("1h", None, id="at-cap"),
        pytest.param(
            "2h",
            'spec.ttl 2h exceeds the break-glass maximum 1h (policy "ci-deployers" is breakGlass): ask for 1h or less',
            id="above-cap-below-max",
        ),
        pytest.param(
            "5h",
            "spec.ttl 5h exceeds the break-glass maximum 1h",
            id="above-both",
        ),
    ],
)
def test_break_glass_caps_ttl(ttl: str, expected: str | None) -> None:
    decision = run(request({"ttl": ttl}), [policy(changes=BREAK_GLASS)])
    if expected is None:
        assert decision.outcome is Outcome.ALLOWED
        assert decision.break_glass
        assert decision.approvals_required == 0
        assert "break-glass" in decision.reason
        assert "Warning event" in decision.reason
    else:
        assert_denied_for(decision, expected)


def test_break_glass_default_ttl_above_cap_names_default() -> None:
    decision = run(request({"ttl": None}), [policy(changes={**BREAK_GLASS, "defaultTTL": "2h"})])
    assert_denied_for(
        decision,
        'defaultTTL 2h of policy "ci-deployers" exceeds the break-glass maximum 1h (policy "ci-deployers" is '
        "breakGlass): ask for 1h or less in spec.ttl",
    )


def test_break_glass_cap_is_configurable() -> None:
    decision = run(
        request({"ttl": "2h"}), [policy(changes=BREAK_GLASS)], break_glass_max_ttl=timedelta(hours=3)
    )
    assert decision.outcome is Outcome.ALLOWED


def test_break_glass_cap_never_raises_max_ttl() -> None:
    decision = run(
        request({"ttl": "2h"}),
        [policy(changes={**BREAK_GLASS, "maxTTL": "1h"})],
        break_glass_max_ttl=timedelta(hours=3),
    )
    assert_denied_for(decision, 'spec.ttl 2h exceeds maxTTL 1h of policy "ci-deployers"')


# --- limits and environments ---------------------------------------------------------------

LIMITS = [
    pytest.param(
        {},
        [grant()],
        'limits.activePerGrantee 1 of policy "ci-deployers" is reached: ServiceAccount '
        "ci/deployer already holds 1 live grant (payments-staging/deploy-4700)",
        id="per-grantee",
    ),
    pytest.param({}, [grant(request_uid=REQUEST_UID)], None, id="own-grant-excluded"),
    pytest.param({}, [grant(expires_in=timedelta(0))], None, id="expired-at-now-excluded"),
    pytest.param({}, [grant(expires_in=-timedelta(minutes=1))], None, id="expired-excluded"),
    pytest.param({}, [grant(revoked=True)], None, id="revoked-excluded"),
    pytest.param({}, [grant(identity=("ci", "other"))], None, id="other-grantee"),
    pytest.param({}, [grant(identity=None)], None, id="ephemeral-grant-other-identity"),
    pytest.param({"limits.activePerGrantee": 2}, [grant()], None, id="per-grantee-below"),
    pytest.param(
        {"limits.activePerGrantee": None, "limits.activePerRequester": 2},
        [grant("a", identity=("ci", "x")), grant("b", identity=("ci", "y"))],
        'limits.activePerRequester 2 of policy "ci-deployers" is reached: requester '
        '"system:serviceaccount:ci:pipeline" already has 2 live grants',
        id="per-requester",
    ),
    pytest.param(
        {"limits.activePerGrantee": None, "limits.activePerRequester": 1},
        [grant("a", requested_by="someone-else")],
        None,
        id="per-requester-other-requester",
    ),
    pytest.param(
        {"limits.activePerGrantee": None, "limits.activePerPolicy": 2},
        [
            grant("a", identity=("ci", "x"), requested_by="u1"),
            grant("b", identity=("ci", "y"), requested_by="u2"),
        ],
        'limits.activePerPolicy 2 of policy "ci-deployers" is reached: 2 live grants were issued under it',
        id="per-policy",
    ),
    pytest.param(
        {"limits.activePerGrantee": None, "limits.activePerPolicy": 1},
        [grant("a", identity=("ci", "x"), policy_name="other-policy")],
        None,
        id="per-policy-other-policy",
    ),
    pytest.param(
        {"limits": {"exclusiveEnvironments": True}},
        [grant("prod-1", "payments-prod")],
        'limits.exclusiveEnvironments of policy "ci-deployers": ServiceAccount ci/deployer holds live grant '
        'payments-prod/prod-1 in namespace "payments-prod" (zsp.dev/environment=production), but namespace '
        '"payments-staging" has zsp.dev/environment=staging',
        id="exclusive-environments",
    ),
    pytest.param(
        {"limits": {"exclusiveEnvironments": True}},
        [grant("sandbox-1", "payments-sandbox")],
        "(no zsp.dev/environment label)",
        id="exclusive-environments-unlabelled",
    ),
    pytest.param(
        {"limits": {"exclusiveEnvironments": True}},
        [grant("eu-1", "payments-staging-eu")],
        None,
        id="same-environment",
    ),
    pytest.param(
        {"limits": {"exclusiveEnvironments": True}},
        [grant("prod-1", "payments-prod", expires_in=-timedelta(seconds=1))],
        None,
        id="exclusive-environments-expired",
    ),
    pytest.param({"limits": {}}, [grant("prod-1", "payments-prod")], None, id="environments-not-exclusive"),
]


@pytest.mark.parametrize(("policy_changes", "grants", "expected"), LIMITS)
def test_limits_over_live_grants(
    policy_changes: dict[str, Any], grants: list[TaskGrant], expected: str | None
) -> None:
    decision = run(policies=[policy(changes=policy_changes)], grants=grants)
    if expected is None:
        assert decision.outcome is Outcome.ALLOWED, decision.mismatches
    else:
        assert_denied_for(decision, expected)


def test_ephemeral_grantee_ignores_per_grantee_and_environment_limits() -> None:
    changes = {"limits": {"activePerGrantee": 1, "exclusiveEnvironments": True}}
    decision = run(request(EPHEMERAL), [policy(changes=changes)], [grant("prod-1", "payments-prod")])
    assert decision.outcome is Outcome.ALLOWED


# --- persistence ------------------------------------------------------------------------------


def test_persistence_allowed_is_still_flagged() -> None:
    changes = {"permissions.0.rules": [TOKEN_RULE], "allowPersistence": True}
    decision = run(policies=[policy(changes=changes)])
    assert decision.outcome is Outcome.ALLOWED
    assert decision.persistence_capable
    assert decision.persistence == (
        'rule 0 of permission "deploy" {verbs: [create], apiGroups: [""], resources: [serviceaccounts/token]} '
        "can outlive revocation: it can mint ServiceAccount tokens that outlive the grant",
    )
    assert "can outlive revocation, which the policy allows (allowPersistence)" in decision.reason


def test_persistence_of_catalogued_cluster_role_is_analysed() -> None:
    catalog = {
        "view": [PolicyRule.model_validate({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})]
    }
    decision = run(request({"permission": "read-only"}), catalog=catalog)
    assert_denied_for(decision, 'rule 0 of ClusterRole "view" {verbs: [get]')
    assert decision.persistence
    assert decision.cluster_role == "view"


def test_denial_still_reports_persistence() -> None:
    decision = run(request({"ttl": "2h"}), [policy(changes={"permissions.0.rules": [TOKEN_RULE]})])
    assert decision.outcome is Outcome.DENIED
    assert len(decision.persistence) == 1
    assert len(decision.mismatches) == 2


# --- several policies -------------------------------------------------------------------------


def test_all_mismatches_are_collected() -> None:
    req = request({"ttl": "2h", "grantee.serviceAccount.name": "admin"}, namespace="billing", anonymous=True)
    decision = run(req)
    assert decision.outcome is Outcome.DENIED
    assert len(decision.mismatches) == 4
    fragments = ["no authenticated requester", 'namespace "billing"', "ci/admin", "spec.ttl 2h"]
    for fragment, mismatch in zip(fragments, decision.mismatches, strict=True):
        assert fragment in mismatch
    assert decision.reason == 'no policy allows this request; closest is "ci-deployers": ' + "; ".join(
        decision.mismatches
    )


def test_closest_policy_has_fewest_mismatches() -> None:
    far = policy("aaa-far", {"requesters": [], "namespaces": {}})
    near = policy("zzz-near", {"maxTTL": "5m", "defaultTTL": "5m"})
    decision = run(policies=[far, near])
    assert decision.policy == "zzz-near"
    assert decision.reason == (
        'no policy allows this request; closest is "zzz-near": spec.ttl 10m exceeds maxTTL 5m of policy '
        '"zzz-near": ask for 5m or less'
    )


def test_closest_policy_tie_goes_to_the_first_name() -> None:
    one = policy("beta", {"maxTTL": "5m", "defaultTTL": "5m"})
    two = policy("alpha", {"maxTTL": "5m", "defaultTTL": "5m"})
    assert run(policies=[one, two]).policy == "alpha"


@pytest.mark.parametrize(
    ("policies", "chosen", "outcome"),
    [
        pytest.param(
            [policy("a", {"approval.required": 1}), policy("b")], "b", Outcome.ALLOWED, id="fewest-approvals"
        ),
        pytest.param([policy("b"), policy("a")], "a", Outcome.ALLOWED, id="then-name"),
        pytest.param(
            [
                policy("a", {"approval.required": 1}),
                policy("b", {"approval.required": 2, "breakGlass": True}),
            ],
            "b",
            Outcome.ALLOWED,
            id="break-glass-counts-zero",
        ),
        pytest.param(
            [policy("a", {"approval.required": 3}), policy("b", {"approval.required": 1})],
            "b",
            Outcome.PENDING,
            id="pending-with-fewest",
        ),
    ],
)
def test_choice_among_matching_policies(policies: list[AccessPolicy], chosen: str, outcome: Outcome) -> None:
    decision = run(policies=policies)
    assert (decision.policy, decision.outcome) == (chosen, outcome)


def test_named_policy_is_the_only_candidate() -> None:
    strict = policy("strict", {"maxTTL": "5m", "defaultTTL": "5m"})
    decision = run(request({"policy": "strict"}), [policy("lenient"), strict])
    assert decision.policy == "strict"
    assert decision.reason.startswith(
        'policy "strict" named in spec.policy does not allow this request: spec.ttl'
    )


def test_named_policy_missing() -> None:
    decision = run(request({"policy": "ghost"}), [policy("a"), policy("b")])
    assert decision.outcome is Outcome.DENIED
    assert decision.policy is None
    assert decision.reason == (
        'spec.policy "ghost" names no AccessPolicy (known: a, b): name an existing policy, or remove '
        "spec.policy to try every policy"
    )
    assert decision.mismatches == (decision.reason,)


def test_no_policies() -> None:
    decision = run(policies=[])
    assert decision.outcome is Outcome.DENIED
    assert decision.policy is None
    assert "no AccessPolicy exists" in decision.reason
    assert decision.mismatches == (decision.reason,)


def test_decide_is_deterministic_in_policy_order() -> None:
    policies = [
        policy("c", {"requesters": []}),
        policy("a", {"namespaces": {}}),
        policy("b", {"maxTTL": "5m", "defaultTTL": "5m"}),
    ]
    assert run(policies=policies) == run(policies=list(reversed(policies)))


# --- label selectors ------------------------------------------------------------------------

LABELS_STAGING = {"team": "payments", "zsp.dev/environment": "staging"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        pytest.param({}, True, id="empty-matches-all"),
        pytest.param({"matchLabels": {"team": "payments"}}, True, id="match-labels"),
        pytest.param({"matchLabels": {"team": "billing"}}, False, id="match-labels-other-value"),
        pytest.param({"matchLabels": {"tier": "web"}}, False, id="match-labels-absent"),
        pytest.param(
            {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "payments"]}]},
            True,
            id="in",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}, False, id="in-other"
        ),
        pytest.param(
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}, False, id="in-absent"
        ),
        pytest.param(
            {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, True, id="notin"
        ),
        pytest.param(
            {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["payments"]}]},
            False,
            id="notin-hit",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]},
            True,
            id="notin-absent",
        ),
        pytest.param({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, True, id="exists"),
        pytest.param(
            {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, False, id="exists-absent"
        ),
        pytest.param(
            {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, True, id="does-not-exist"
        ),
        pytest.param(
            {"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]},
            False,
            id="does-not-exist-present",
        ),
        pytest.param(
            {
                "matchLabels": {"team": "payments"},
                "matchExpressions": [{"key": "tier", "operator": "Exists"}],
            },
            False,
            id="all-must-hold",
        ),
    ],
)
def test_selector_matches(selector: dict[str, Any], matches: bool) -> None:
    assert selector_matches(LabelSelector.model_validate(selector), LABELS_STAGING) is matches
