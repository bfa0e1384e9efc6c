"""Evidence of use: the API server's own audit events, sent to the operator's audit webhook,
become each ended grant's `used`, `unused` and `denied`, and `zsp advise` a smaller policy.

Each tier's API server is started for this module with an audit policy and a batching audit
webhook pointed at the operator (kube-apiserver's `--audit-policy-file` and
`--audit-webhook-config-file`; the in-memory server's equivalents), so the whole chain runs:
the grantee's own requests, the API server's events, the webhook's authentication, the
attribution, the status write.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import yaml

from harness import as_user, eventually, running_operator, token_for, wait_for_phase
from tiers import TIER_PARAMS, Cluster, tier_cluster
from world import World, world
from zsp_operator.cli import main
from zsp_operator.core import constants as c
from zsp_operator.core.models import PolicyRule
from zsp_operator.kube import Forbidden, Kube
from zsp_operator.kube.resources import (
    ACCESS_POLICIES,
    ACCESS_REQUESTS,
    PODS,
    SECRETS,
    SELF_SUBJECT_ACCESS_REVIEWS,
)
from zsp_operator.tools.demo_evidence import BATCH_WAIT, Evidence, evidence_files

# What the grants of this module's policy may do: read pods, read deployments.
READ_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
]
READ_PERMISSIONS = [{"name": "read", "rules": READ_RULES}]
# How long the API server's batch may take to arrive, with room to spare.
IN_FLIGHT = BATCH_WAIT * 5


@dataclass(frozen=True)
class Audited:
    """A cluster whose API server sends audit events to whatever listens on the evidence port."""

    cluster: Cluster
    evidence: Evidence

    def operator_flags(self) -> dict[str, Any]:
        return {**self.evidence.operator_settings(), "audit_settle": "3s"}


@pytest.fixture(scope="module", params=TIER_PARAMS)
def audited(request: pytest.FixtureRequest) -> Iterator[Audited]:
    with (
        evidence_files() as evidence,
        tier_cluster(
            request.param, sim_options=evidence.sim_options(), apiserver_args=evidence.apiserver_args()
        ) as cluster,
    ):
        yield Audited(cluster, evidence)


async def _delivered_token(w: World, name: str) -> str:
    secret = await w.admin.get(SECRETS, f"{name}-kubeconfig", w.ci)
    assert secret is not None
    config = yaml.safe_load(base64.b64decode(secret["data"][c.DELIVERY_KEY]))
    token: str = config["users"][0]["user"]["token"]
    return token


async def _read_pods_and_try_a_delete(audited: Audited, token: str, namespace: str) -> None:
    """What the task does with its grant: reads pods (list, get), tries one thing it may not."""
    async with await as_user(audited.cluster, token) as grantee:
        await grantee.list(PODS, namespace)
        assert await grantee.get(PODS, "web-1", namespace) is None  # allowed; there is no such pod
        with pytest.raises(Forbidden):
            await grantee.delete(PODS, "web-1", namespace)
        review = {"spec": {"resourceAttributes": {"verb": "get", "resource": "pods", "namespace": namespace}}}
        await grantee.create(
            SELF_SUBJECT_ACCESS_REVIEWS,
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", **review},
        )


async def _usage(w: World, name: str) -> dict[str, Any]:
    async def recorded() -> dict[str, Any] | None:
        body = await w.admin.get(ACCESS_REQUESTS, name, w.target)
        return (body or {}).get("status", {}).get("usage")

    usage: dict[str, Any] = await eventually(recorded, within=30, every=0.2)
    return usage


def _counts(entries: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
    return {(e["verb"], e.get("apiGroup", ""), e["resource"]): e["count"] for e in entries}


async def test_an_ephemeral_grant_that_only_reads_pods_records_deployments_as_unused(
    audited: Audited,
) -> None:
    cluster = audited.cluster
    async with (
        world(cluster, permissions=READ_PERMISSIONS) as w,
        running_operator(cluster, **audited.operator_flags()) as op,
    ):
        await w.file(w.request("read-1", ephemeral=True, permission="read", ttl="10m"))
        await wait_for_phase(w.admin, w.target, "read-1", "Active")
        token = await _delivered_token(w, "read-1")
        await _read_pods_and_try_a_delete(audited, token, w.target)
        # Another identity doing the same in the same namespace, at the same time, is not the grant's.
        other = await _token_of_deployer(w)
        async with await as_user(cluster, other) as deployer:
            with pytest.raises(Forbidden):
                await deployer.list(PODS, w.target)
        await asyncio.sleep(IN_FLIGHT)  # the API server's batch is on its way before the end
        await w.admin.patch(ACCESS_REQUESTS, "read-1", {"spec": {"done": True}}, w.target)
        await wait_for_phase(w.admin, w.target, "read-1", "Completed")

        usage = await _usage(w, "read-1")
        assert _counts(usage["used"]) == {("list", "", "pods"): 1, ("get", "", "pods"): 1}
        assert all(entry["namespace"] == w.target for entry in usage["used"])
        assert usage["unused"] == [
            {
                "verbs": ["get", "list"],
                "apiGroups": ["apps"],
                "resources": ["deployments"],
                "resourceNames": [],
                "nonResourceURLs": [],
            }
        ]
        assert _counts(usage["denied"]) == {("delete", "", "pods"): 1}, (
            "the deployer's refused list is not the grant's"
        )
        assert usage["events"] == 3

        records = [r for r in op.records_for("read-1", w.target) if r["event"] == "used"]
        assert len(records) == 1, "one audit record, once the usage settled"
        assert records[0]["usage"] == usage
        metrics = op.controller.observer.metrics
        assert metrics.grants_with_unused_rules.labels(w.policy)._value.get() == 1
        assert metrics.denied_during_grants.labels(w.policy)._value.get() == 1


async def test_a_bound_grant_counts_only_what_its_grantee_did_while_it_was_live(audited: Audited) -> None:
    cluster = audited.cluster
    async with (
        world(cluster, permissions=READ_PERMISSIONS) as w,
        running_operator(cluster, **audited.operator_flags()),
    ):
        token = await _token_of_deployer(w)
        async with await as_user(cluster, token) as deployer:
            with pytest.raises(Forbidden):
                await deployer.list(PODS, w.target)  # before the grant: refused, and not the grant's
            await asyncio.sleep(1.5)  # past the second of slack before issuance
            await w.file(w.request("bound-1", permission="read", ttl="10m"))
            await wait_for_phase(w.admin, w.target, "bound-1", "Active")
            await eventually(lambda: _allowed(deployer, w.target), within=10)
            await deployer.get(PODS, "web-1", w.target)
            await asyncio.sleep(IN_FLIGHT)
            await w.admin.patch(ACCESS_REQUESTS, "bound-1", {"spec": {"done": True}}, w.target)
            await wait_for_phase(w.admin, w.target, "bound-1", "Completed")
            with pytest.raises(Forbidden):
                await deployer.list(PODS, w.target)  # after the end: refused, and not the grant's either
        usage = await _usage(w, "bound-1")
        used = _counts(usage["used"])
        assert used[("get", "", "pods")] == 1
        assert used[("list", "", "pods")] >= 1  # the first list that was allowed
        assert usage["denied"] == [], "refusals before issuance and after the end are outside the window"


async def test_only_the_api_server_is_believed_and_bad_lists_change_nothing(audited: Audited) -> None:
    cluster = audited.cluster
    async with (
        world(cluster, permissions=READ_PERMISSIONS) as w,
        running_operator(cluster, **audited.operator_flags()) as op,
    ):
        await w.file(w.request("read-2", ephemeral=True, permission="read", ttl="10m"))
        active = await wait_for_phase(w.admin, w.target, "read-2", "Active")
        identity = active["status"]["identity"]
        forged = _event_list(
            _forged_deployments_read(identity, active["status"]["tokenCredentialId"], w.target)
        )
        ssl_context = ssl.create_default_context(cafile=str(audited.evidence.folder / "ca.crt"))
        async with aiohttp.ClientSession() as session:
            for headers, body, status in (
                ({}, forged, 401),  # no token: anyone on the network
                ({"Authorization": "Bearer guessed"}, forged, 401),
                ({"Authorization": f"Bearer {audited.evidence.token}"}, b"{not json", 400),
                (
                    {"Authorization": f"Bearer {audited.evidence.token}"},
                    json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": "x"}).encode(),
                    400,
                ),
            ):
                async with session.post(
                    audited.evidence.url, data=body, headers=headers, ssl=ssl_context
                ) as answer:
                    assert answer.status == status
        rejected = op.controller.observer.metrics.audit_rejected
        assert rejected.labels("unauthenticated")._value.get() == 2
        assert rejected.labels("malformed")._value.get() == 2

        token = await _delivered_token(w, "read-2")
        await _read_pods_and_try_a_delete(audited, token, w.target)  # the operator carries on as ever
        await asyncio.sleep(IN_FLIGHT)
        await w.admin.patch(ACCESS_REQUESTS, "read-2", {"spec": {"done": True}}, w.target)
        usage = await _usage(w, "read-2")
        assert ("get", "apps", "deployments") not in _counts(usage["used"]), (
            "the forged events were not believed"
        )
        assert _counts(usage["used"]) == {("list", "", "pods"): 1, ("get", "", "pods"): 1}


async def test_zsp_advise_proposes_the_rules_several_grants_used(audited: Audited) -> None:
    cluster = audited.cluster
    async with (
        world(cluster, permissions=READ_PERMISSIONS) as w,
        running_operator(cluster, **audited.operator_flags()),
    ):
        for name in ("adv-1", "adv-2"):
            await w.file(w.request(name, ephemeral=True, permission="read", ttl="10m"))
            await wait_for_phase(w.admin, w.target, name, "Active")
            token = await _delivered_token(w, name)
            async with await as_user(cluster, token) as grantee:
                await grantee.list(PODS, w.target)
                if name == "adv-2":
                    await grantee.get(PODS, "web-1", w.target)
            await asyncio.sleep(IN_FLIGHT)
            await w.admin.patch(ACCESS_REQUESTS, name, {"spec": {"done": True}}, w.target)
        for name in ("adv-1", "adv-2"):
            await _usage(w, name)

        out = await asyncio.to_thread(
            _zsp, ["advise", w.policy, "--kubeconfig", str(cluster.kubeconfig_path), "-o", "json"]
        )
        advice = json.loads(out)
        assert advice["grants"] == 2
        (read,) = advice["permissions"]
        assert read["proposed"] == [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]
        assert read["unused"] == [
            {"verbs": ["get", "list"], "apiGroups": ["apps"], "resources": ["deployments"]}
        ]
        assert advice["patch"] == {"spec": {"permissions": [{"name": "read", "rules": read["proposed"]}]}}

        # The patch applies as printed, and the policy then allows exactly what was used.
        text = await asyncio.to_thread(
            _zsp, ["advise", w.policy, "--kubeconfig", str(cluster.kubeconfig_path)]
        )
        await w.admin.patch(ACCESS_POLICIES, w.policy, yaml.safe_load(text))
        policy = await w.admin.get(ACCESS_POLICIES, w.policy)
        assert policy is not None
        (permission,) = policy["spec"]["permissions"]
        assert permission["name"] == "read"
        assert _rules(permission["rules"]) == _rules(read["proposed"])


# --- helpers --------------------------------------------------------------------------------


def _rules(wire: list[dict[str, Any]]) -> list[PolicyRule]:
    return [PolicyRule.model_validate(rule) for rule in wire]


def _zsp(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return out.getvalue()


async def _token_of_deployer(w: World) -> str:
    return await token_for(w.admin, w.ci, "deployer")


async def _allowed(kube: Kube, namespace: str) -> bool:
    try:
        await kube.list(PODS, namespace)
    except Forbidden:
        return False
    return True


def _forged_deployments_read(identity: dict[str, str], jti: str, namespace: str) -> dict[str, Any]:
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": "forged-1",
        "stage": "ResponseComplete",
        "verb": "get",
        "user": {
            "username": f"system:serviceaccount:{identity['namespace']}:{identity['name']}",
            "extra": {"authentication.kubernetes.io/credential-id": [f"JTI={jti}"]},
        },
        "objectRef": {"resource": "deployments", "namespace": namespace, "apiGroup": "apps", "name": "web"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2099-01-01T00:00:00.000000Z",
        "annotations": {"authorization.k8s.io/decision": "allow"},
    }


def _event_list(*items: dict[str, Any]) -> bytes:
    return json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": list(items)}).encode()
