"""The rendered chart applied to an API server, on both tiers (sim always, envtest when
KUBEBUILDER_ASSETS is set).

Covered:
- every rendered object of a kind the server serves is accepted by a server-side dry run
  (defaults, the cert-manager variant, and the audit webhook with its NodePort Service and
  NetworkPolicy rule; kinds the server does not serve, such as cert-manager's or the
  Prometheus Operator's, are left out);
- the FlowSchema and PriorityLevelConfiguration, made invalid one field at a time, are
  refused with the same message on both tiers, and what is left out is defaulted alike;
- with the chart's RBAC created for real, the API server's own authorizer answers for the
  operator's ServiceAccount: Leases only in the release namespace and only the named one
  after creation, `bind` only on catalogued ClusterRoles, the CA bundle only in the chart's
  own webhook configurations, which it may not create.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from chartkit import Rendered, render
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from tiers import TIER_PARAMS, Cluster, api_error, call_json, tier_cluster, unique_name


@pytest.fixture(scope="module", params=TIER_PARAMS)
def apiserver(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    with tier_cluster(request.param) as found:
        yield found


@pytest.fixture
async def api(apiserver: Cluster) -> AsyncIterator[client.ApiClient]:
    async with apiserver.api_client() as api_client:
        yield api_client


async def _get(api: client.ApiClient, path: str) -> dict[str, Any]:
    return await call_json(
        api.call_api(
            path,
            "GET",
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
        )
    )


async def served_kinds(api: client.ApiClient) -> dict[tuple[str, str], tuple[str, bool]]:
    """(apiVersion, kind) -> (plural, namespaced), from discovery."""
    versions = ["v1"]
    groups = (await _get(api, "/apis"))["groups"]
    versions += [v["groupVersion"] for g in groups for v in g["versions"]]
    served: dict[tuple[str, str], tuple[str, bool]] = {}
    for version in versions:
        path = "/api/v1" if version == "v1" else f"/apis/{version}"
        for resource in (await _get(api, path))["resources"]:
            if "/" not in resource["name"]:
                served[(version, resource["kind"])] = (resource["name"], resource["namespaced"])
    return served


async def create(
    api: client.ApiClient, doc: dict[str, Any], plural: str, namespaced: bool, *, dry_run: bool
) -> dict[str, Any]:
    version = doc["apiVersion"]
    base = "/api/v1" if version == "v1" else f"/apis/{version}"
    namespace = doc["metadata"].get("namespace")
    path = f"{base}/namespaces/{namespace}/{plural}" if namespaced else f"{base}/{plural}"
    return await call_json(
        api.call_api(
            path,
            "POST",
            query_params=[("dryRun", "All")] if dry_run else [],
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=doc,
            auth_settings=["BearerToken"],
            _preload_content=False,
        )
    )


async def create_namespace(api: client.ApiClient, hint: str) -> str:
    name = unique_name(hint)
    await call_json(
        client.CoreV1Api(api).create_namespace({"metadata": {"name": name}}, _preload_content=False)
    )
    return name


def chart_for(namespace: str, values: dict[str, Any]) -> Rendered:
    """The chart with names of its own: several renders share one API server."""
    webhook = {"configurationName": f"{namespace}.zsp.dev", **values.get("webhook", {})}
    return render({**values, "fullnameOverride": namespace, "webhook": webhook}, namespace=namespace)


AUDIT_WEBHOOK: dict[str, Any] = {
    "auditWebhook": {
        "enabled": True,
        "certSecret": "zsp-audit-tls",
        "tokenSecret": {"name": "zsp-audit-token"},
        "clientCASecret": {"name": "zsp-audit-client-ca"},
        "service": {"type": "NodePort"},
    },
    "networkPolicy": {"enabled": True, "auditWebhookFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
}


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"webhook": {"certificate": {"source": "cert-manager"}}, "podDisruptionBudget": {"enabled": True}},
        AUDIT_WEBHOOK,
    ],
    ids=["defaults", "cert-manager", "audit-webhook"],
)
async def test_every_rendered_object_passes_a_server_side_dry_run(
    api: client.ApiClient, variant: dict[str, Any]
) -> None:
    served = await served_kinds(api)
    namespace = await create_namespace(api, "chart-dry-run")
    rendered = chart_for(namespace, variant)
    accepted = []
    for doc in rendered.docs:
        where = served.get((doc["apiVersion"], doc["kind"]))
        if where is None:
            continue
        try:
            await create(api, doc, *where, dry_run=True)
        except ApiException as error:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} refused: {error.body!r}")
        accepted.append(doc["kind"])
    assert {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "FlowSchema",
        "PriorityLevelConfiguration",
    } <= set(accepted)


async def allowed(
    api: client.ApiClient, user: str, verb: str, group: str, resource: str, **where: str
) -> bool:
    """The API server's SubjectAccessReview answer for a ServiceAccount; `resource` may be
    `plural/subresource`, `where` holds namespace and name."""
    plural, _, subresource = resource.partition("/")
    attributes = {"verb": verb, "group": group, "resource": plural, **where}
    if subresource:
        attributes["subresource"] = subresource
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "resourceAttributes": attributes,
        },
    }
    answer = await call_json(
        client.AuthorizationV1Api(api).create_subject_access_review(review, _preload_content=False)
    )
    return bool(answer["status"].get("allowed"))


async def test_the_api_server_authorizes_exactly_what_the_chart_means(api: client.ApiClient) -> None:
    served = await served_kinds(api)
    namespace = await create_namespace(api, "chart-rbac")
    rendered = chart_for(namespace, {"operator": {"catalog": ["view"]}})
    for doc in rendered.docs:
        if doc["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
            await create(api, doc, *served[(doc["apiVersion"], doc["kind"])], dry_run=False)
    user = f"system:serviceaccount:{namespace}:{rendered.one('ServiceAccount')['metadata']['name']}"
    lease = rendered.env_values["ZSP_LEASE_NAME"]
    configuration = f"{namespace}.zsp.dev"
    coordination, rbac, admission = (
        "coordination.k8s.io",
        "rbac.authorization.k8s.io",
        "admissionregistration.k8s.io",
    )

    expectations = [
        # Leader election: its own Lease, in its own namespace.
        ((("create", coordination, "leases"), {"namespace": namespace}), True),
        ((("update", coordination, "leases"), {"namespace": namespace, "name": lease}), True),
        ((("get", coordination, "leases"), {"namespace": namespace, "name": lease}), True),
        ((("update", coordination, "leases"), {"namespace": namespace, "name": "someone-else"}), False),
        ((("create", coordination, "leases"), {"namespace": "default"}), False),
        ((("delete", coordination, "leases"), {"namespace": namespace, "name": lease}), False),
        # bind on catalogued ClusterRoles only.
        ((("bind", rbac, "clusterroles"), {"name": "view"}), True),
        ((("bind", rbac, "clusterroles"), {"name": "cluster-admin"}), False),
        ((("escalate", rbac, "clusterroles"), {"name": "view"}), False),
        # The CA bundle of the chart's own webhook configurations; never new ones.
        ((("patch", admission, "mutatingwebhookconfigurations"), {"name": configuration}), True),
        ((("patch", admission, "validatingwebhookconfigurations"), {"name": configuration}), True),
        ((("patch", admission, "validatingwebhookconfigurations"), {"name": "other.example.org"}), False),
        ((("create", admission, "mutatingwebhookconfigurations"), {}), False),
        # Issuance: delivery Secrets and tokens of ServiceAccounts anywhere.
        ((("create", "", "secrets"), {"namespace": "default"}), True),
        ((("create", "", "serviceaccounts/token"), {"namespace": "default", "name": "x"}), True),
    ]
    wrong = []
    for ((verb, group, resource), where), expected in expectations:
        answer = await allowed(api, user, verb, group, resource, **where)
        if answer != expected:
            wrong.append(f"{verb} {group}/{resource} {where}: allowed={answer}, expected {expected}")
    assert wrong == []


# --- API Priority and Fairness objects, refused and defaulted as the real server does ---------

Doc = dict[str, Any]
FLOW_SCHEMAS = ("flowschemas", False)
PRIORITY_LEVELS = ("prioritylevelconfigurations", False)
REQUEST_VERBS = '"create", "delete", "deletecollection", "get", "list", "patch", "proxy", "update", "watch"'


def _rule(doc: Doc) -> Doc:
    rule: Doc = doc["spec"]["rules"][0]
    return rule


def _queuing(doc: Doc) -> Doc:
    queuing: Doc = doc["spec"]["limited"]["limitResponse"]["queuing"]
    return queuing


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    """Set a dotted path under the object (list indexes as numbers)."""

    def change(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value

    return change


def _drop(path: str) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        del node[last]

    return change


RULE = "spec.rules.0"
RESOURCES = f"{RULE}.resourceRules.0"
QUEUING = "spec.limited.limitResponse.queuing"

FLOW_SCHEMA_REFUSALS: list[tuple[str, Callable[[Doc], None], str]] = [
    (
        "precedence-too-high",
        _set("spec.matchingPrecedence", 10001),
        "spec.matchingPrecedence: Invalid value: 10001: must not be greater than 10000",
    ),
    (
        "precedence-of-exempt",
        _set("spec.matchingPrecedence", 1),
        "spec.matchingPrecedence: Invalid value: 1: only the schema named 'exempt' may have "
        "matchingPrecedence 1",
    ),
    (
        "precedence-negative",
        _set("spec.matchingPrecedence", -3),
        "spec.matchingPrecedence: Invalid value: -3: must be a positive value",
    ),
    (
        "distinguisher",
        _set("spec.distinguisherMethod", {"type": "ByGroup"}),
        'spec.distinguisherMethod.type: Unsupported value: {"Type":"ByGroup"}: supported values: '
        '"ByNamespace", "ByUser"',
    ),
    (
        "no-priority-level",
        _set("spec.priorityLevelConfiguration.name", ""),
        "spec.priorityLevelConfiguration.name: Required value: must reference a priority level",
    ),
    (
        "authorization-verb",
        _set(f"{RESOURCES}.verbs", ["get", "bind"]),
        f'spec.rules[0].resourceRules[0].verbs: Unsupported value: ["get","bind"]: supported values: '
        f"{REQUEST_VERBS}",
    ),
    (
        "wildcard-and-verb",
        _set(f"{RESOURCES}.verbs", ["*", "get"]),
        'spec.rules[0].resourceRules[0].verbs: Invalid value: ["*","get"]: if \'*\' is present, must '
        "not specify other verbs",
    ),
    (
        "namespaced-without-namespaces",
        lambda doc: (_drop(f"{RESOURCES}.namespaces")(doc), _set(f"{RESOURCES}.clusterScope", False)(doc)),
        "spec.rules[0].resourceRules[0].namespaces: Required value: resource rules that are not "
        "cluster scoped must supply at least one namespace",
    ),
    (
        "bad-namespace",
        _set(f"{RESOURCES}.namespaces", ["Team_A"]),
        'spec.rules[0].resourceRules[0].namespaces[0]: Invalid value: "Team_A": each member of this '
        "list must be '*' or a DNS-1123 label; a lowercase RFC 1123 label must consist of lower case "
        "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. "
        "'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    ),
    (
        "account-without-namespace",
        _drop(f"{RULE}.subjects.0.serviceAccount.namespace"),
        "spec.rules[0].subjects[0].serviceAccount.namespace: Required value: must specify namespace "
        "for service account",
    ),
    (
        "subject-kind",
        _set(f"{RULE}.subjects.0.kind", "Robot"),
        'spec.rules[0].subjects[0].kind: Unsupported value: "Robot": supported values: "Group", '
        '"ServiceAccount", "User"',
    ),
    (
        "user-beside-account",
        _set(f"{RULE}.subjects.0.user", {"name": "someone"}),
        "spec.rules[0].subjects[0].user: Forbidden: user is forbidden when subject kind is not 'User'",
    ),
    (
        "no-rules-for-requests",
        _drop(f"{RULE}.resourceRules"),
        "spec.rules[0]: Required value: at least one of resourceRules and nonResourceRules has to be "
        "non-empty",
    ),
    (
        "non-resource-glob",
        _set(f"{RULE}.nonResourceRules", [{"verbs": ["get"], "nonResourceURLs": ["/apis*"]}]),
        'spec.rules[0].nonResourceRules[0].nonResourceURLs[0]: Invalid value: "/apis*": wildcard can '
        "only do suffix matching",
    ),
]

PRIORITY_LEVEL_REFUSALS: list[tuple[str, Callable[[Doc], None], str]] = [
    (
        "type",
        _set("spec.type", "Bogus"),
        'spec.type: Unsupported value: "Bogus": supported values: "Exempt", "Limited"',
    ),
    (
        "exempt-not-named-exempt",
        _set("spec.type", "Exempt"),
        "[spec.type: Invalid value: \"Exempt\": must be 'Exempt' if and only if `name` is 'exempt', "
        "spec.limited: Forbidden: must be nil if the type is not Limited]",
    ),
    (
        "limited-without-settings",
        _drop("spec.limited"),
        "spec.limited: Required value: must not be empty when type is Limited",
    ),
    (
        "negative-shares",
        _set("spec.limited.nominalConcurrencyShares", -1),
        "spec.limited.nominalConcurrencyShares: Invalid value: -1: must be a non-negative integer",
    ),
    (
        "lend-more-than-all",
        _set("spec.limited.lendablePercent", 101),
        "spec.limited.lendablePercent: Invalid value: 101: must be between 0 and 100, inclusive",
    ),
    (
        "negative-borrowing",
        _set("spec.limited.borrowingLimitPercent", -5),
        "spec.limited.borrowingLimitPercent: Invalid value: -5: if specified, must be a non-negative integer",
    ),
    (
        "response-type",
        _set("spec.limited.limitResponse.type", "Drop"),
        'spec.limited.limitResponse.type: Unsupported value: "Drop": supported values: "Queue", "Reject"',
    ),
    (
        "reject-with-queues",
        _set("spec.limited.limitResponse.type", "Reject"),
        "spec.limited.limitResponse.queuing: Forbidden: must be nil if limited.limitResponse.type is not "
        "Limited",
    ),
    (
        "queue-without-queues",
        _drop(QUEUING),
        "spec.limited.limitResponse.queuing: Required value: must not be empty if "
        "limited.limitResponse.type is Limited",
    ),
    (
        "hand-larger-than-deck",
        _set(f"{QUEUING}.handSize", 17),
        "spec.limited.limitResponse.queuing.handSize: Invalid value: 17: should not be greater than "
        "queues (16)",
    ),
    (
        "too-much-entropy",
        lambda doc: _queuing(doc).update(queues=10_000_000, handSize=3),
        "spec.limited.limitResponse.queuing.handSize: Invalid value: 3: required entropy bits of "
        "deckSize 10000000 and handSize 3 should not be greater than 60",
    ),
    (
        "too-many-queues",
        lambda doc: _queuing(doc).update(queues=10_000_001, handSize=1),
        "spec.limited.limitResponse.queuing.queues: Invalid value: 10000001: must not be greater than "
        "10000000",
    ),
    (
        "negative-queue-length",
        _set(f"{QUEUING}.queueLengthLimit", -2),
        "spec.limited.limitResponse.queuing.queueLengthLimit: Invalid value: -2: must be positive",
    ),
]


async def refusal(api: client.ApiClient, doc: Doc, where: tuple[str, bool]) -> str:
    """The message of a refused server-side dry-run create (AssertionError if accepted)."""
    try:
        await create(api, doc, *where, dry_run=True)
    except ApiException as error:
        body = api_error(error)
        assert body.get("code") == 422, body
        message: str = body["message"]
        return message
    raise AssertionError(f"accepted: {doc}")


@pytest.mark.parametrize(
    ("case", "change", "complaint"), FLOW_SCHEMA_REFUSALS, ids=[c[0] for c in FLOW_SCHEMA_REFUSALS]
)
async def test_an_invalid_flow_schema_is_refused_as_the_api_server_refuses_it(
    api: client.ApiClient, case: str, change: Callable[[Doc], None], complaint: str
) -> None:
    doc = copy.deepcopy(chart_for(unique_name(f"fs-{case}"), {}).one("FlowSchema"))
    change(doc)
    name = doc["metadata"]["name"]
    prefix = f'FlowSchema.flowcontrol.apiserver.k8s.io "{name}" is invalid: '
    assert await refusal(api, doc, FLOW_SCHEMAS) == prefix + complaint


@pytest.mark.parametrize(
    ("case", "change", "complaint"), PRIORITY_LEVEL_REFUSALS, ids=[c[0] for c in PRIORITY_LEVEL_REFUSALS]
)
async def test_an_invalid_priority_level_is_refused_as_the_api_server_refuses_it(
    api: client.ApiClient, case: str, change: Callable[[Doc], None], complaint: str
) -> None:
    doc = copy.deepcopy(chart_for(unique_name(f"pl-{case}"), {}).one("PriorityLevelConfiguration"))
    change(doc)
    name = doc["metadata"]["name"]
    prefix = f'PriorityLevelConfiguration.flowcontrol.apiserver.k8s.io "{name}" is invalid: '
    assert await refusal(api, doc, PRIORITY_LEVELS) == prefix + complaint


async def test_what_the_flow_control_objects_leave_out_is_defaulted(api: client.ApiClient) -> None:
    name = unique_name("apf-defaults")
    schema = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name},
        "spec": {
            "priorityLevelConfiguration": {"name": name},
            "rules": [
                {
                    "subjects": [{"kind": "Group", "group": {"name": "zsp-operators"}}],
                    "resourceRules": [
                        {"verbs": ["get"], "apiGroups": ["zsp.dev"], "resources": ["*"], "namespaces": ["*"]}
                    ],
                }
            ],
        },
    }
    created = await create(api, schema, *FLOW_SCHEMAS, dry_run=True)
    assert created["spec"]["matchingPrecedence"] == 1000
    assert created["metadata"]["generation"] == 1
    level = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": name},
        "spec": {"type": "Limited", "limited": {"limitResponse": {"type": "Queue", "queuing": {}}}},
    }
    created = await create(api, level, *PRIORITY_LEVELS, dry_run=True)
    assert created["spec"]["limited"] == {
        "nominalConcurrencyShares": 30,
        "lendablePercent": 0,
        "limitResponse": {"type": "Queue", "queuing": {"queues": 64, "handSize": 8, "queueLengthLimit": 50}},
    }
