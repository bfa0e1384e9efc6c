"""The audit chain a security reviewer follows, against an API server (every tier).

Covered: an ephemeral request leaves exactly requested, decided, issued, revoked in the audit
log, each naming the request the same way and carrying what is known then; the issued
record's object uids are the objects' own; its credential id is the `jti` of the token in
the delivered kubeconfig, and the API server reports that same id (`JTI=<jti>`) in the
userInfo of every call made with the token, which is what its audit log records, so the two
logs join both ways; no record holds the token or the kubeconfig; the metrics move by
exactly the story; the request and its TaskGrant carry Events with specific reasons; the
chain `zsp describe` rebuilds from status and Events names the same steps. An approver's
denial is an `approved`-style record of its own (`denied`, final) and a Warning Event.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import yaml

from harness import Operator, apply, eventually, running_operator, wait_for_phase
from tiers import Cluster
from world import World, world
from zsp_operator.core import constants as c
from zsp_operator.kube import Kube
from zsp_operator.kube.resources import ACCESS_REQUESTS, EVENTS, SECRETS
from zsp_operator.observe import reasons
from zsp_operator.observe.chain import chain_from
from zsp_operator.observe.metrics import Metrics

CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def records_of(op: Operator, name: str) -> list[dict[str, Any]]:
    return [r for r in op.audit_records() if (r.get("request") or {}).get("name") == name]


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def events_of(
    w: World, name: str, settled: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The Events about `name` once `settled` says so: they are posted after the audit line."""

    async def listed() -> list[dict[str, Any]] | None:
        events = await w.admin.list(EVENTS, w.target, field_selector=f"involvedObject.name={name}")
        return events if settled(events) else None

    found: list[dict[str, Any]] = await eventually(listed)
    return found


async def test_an_ephemeral_grant_can_be_followed_from_request_to_api_server_and_back(
    cluster: Cluster,
) -> None:
    async with world(cluster) as w, running_operator(cluster) as op:
        m = op.controller.observer.metrics
        key = {"policy": w.policy}
        before = {
            "allowed": value(m, "zsp_requests_total", decision="allowed", **key),
            "expired": value(m, "zsp_revocations_total", reason="Expired"),
            "latency": value(m, "zsp_issue_latency_seconds_count"),
            "lag": value(m, "zsp_revocation_lag_seconds_count"),
            "lag_within_1s": value(m, "zsp_revocation_lag_seconds_bucket", le="1.0"),
        }
        await w.file(w.request("chain-1", ephemeral=True, ttl="3s"))
        active = await wait_for_phase(w.admin, w.target, "chain-1", "Active")
        # The gauge moves just after the status write the phase poll saw.
        await eventually(lambda: value(m, "zsp_active_grants", mode="ephemeral", **key) == 1)
        assert value(m, "zsp_requests_total", decision="allowed", **key) == before["allowed"] + 1

        secret = await w.admin.get(SECRETS, "chain-1-kubeconfig", w.ci)
        assert secret is not None
        kubeconfig = base64.b64decode(secret["data"][c.DELIVERY_KEY]).decode()
        token = yaml.safe_load(kubeconfig)["users"][0]["user"]["token"]
        jti = jwt_claims(token).get("jti")

        # The API server's own view of the token: the userInfo its audit log records for every call.
        async with await Kube.from_dict(cluster.kubeconfig(token)) as grantee:
            seen_by_api_server = await grantee.whoami()
        identity = active["status"]["identity"]
        assert (
            seen_by_api_server["username"]
            == f"system:serviceaccount:{identity['namespace']}:{identity['name']}"
        )

        expired = await wait_for_phase(w.admin, w.target, "chain-1", "Expired", within=10)
        await eventually(lambda: [r for r in records_of(op, "chain-1") if r["event"] == "revoked"])
        records = records_of(op, "chain-1")

        # Exactly the expected chain, every record naming the request the same way.
        assert [r["event"] for r in records] == ["requested", "decided", "issued", "revoked"]
        assert [r["phase"] for r in records] == ["Pending", "Approved", "Active", "Expired"]
        reference = {"name": "chain-1", "namespace": w.target, "uid": active["metadata"]["uid"]}
        for record in records:
            assert record["schema"] == "zsp.dev/audit/v1"
            assert record["request"] == reference
            assert record["requester"]["username"] == w.pipeline_user
            assert record["grantee"]["mode"] == "ephemeral"
            assert record["permission"] == "deploy"
        requested, decided, issued, revoked = records
        assert requested["reason"] == f"story {w.id}: deploy build 4711"
        assert (decided["outcome"], decided["policy"]) == ("allowed", w.policy)
        assert decided["rules"][0]["resources"] == ["deployments"]
        for record in (issued, revoked):
            assert record["policy"] == w.policy
            assert record["grantee"]["username"] == seen_by_api_server["username"]
            assert record["expiresAt"] == active["status"]["expiresAt"]
            assert record["grant"]["name"] == "chain-1"
        # The objects created, with their uids, in the order issuance made them.
        kinds = [o["kind"] for o in issued["objects"]]
        assert kinds == ["ServiceAccount", "Role", "RoleBinding", "Secret"]
        assert all(o["uid"] for o in issued["objects"])
        sa = next(o for o in issued["objects"] if o["kind"] == "ServiceAccount")
        assert (sa["namespace"], sa["name"]) == (identity["namespace"], identity["name"])
        assert issued["latencySeconds"] >= 0

        # The credential id joins our records with the API server's audit log, both ways.
        assert jti, "the TokenRequest API put a jti in the token"
        assert issued["tokenCredentialId"] == revoked["tokenCredentialId"] == jti
        assert expired["status"]["tokenCredentialId"] == jti
        assert seen_by_api_server["extra"][CREDENTIAL_ID] == [f"JTI={jti}"]
        assert (revoked["endReason"], revoked["phase"]) == ("Expired", "Expired")
        assert revoked["lagSeconds"] == expired["status"]["revocationLagSeconds"]
        assert revoked["lagSeconds"] < 1.0
        assert revoked["revokedAt"] == expired["status"]["revokedAt"]

        # Never any token or secret material.
        audit_text = op.audit.getvalue()
        for secret_text in (token, kubeconfig, secret["data"][c.DELIVERY_KEY], token.split(".")[2]):
            assert secret_text not in audit_text
        assert not any({"token", "kubeconfig", "data"} & r.keys() for r in records)

        # The metrics moved by exactly this story.
        assert value(m, "zsp_active_grants", mode="ephemeral", **key) == 0
        assert value(m, "zsp_revocations_total", reason="Expired") == before["expired"] + 1
        assert value(m, "zsp_issue_latency_seconds_count") == before["latency"] + 1
        assert value(m, "zsp_revocation_lag_seconds_count") == before["lag"] + 1
        assert value(m, "zsp_revocation_lag_seconds_bucket", le="1.0") == before["lag_within_1s"] + 1

        # Events on the request and on its TaskGrant, specific and Normal for an ordinary grant.
        # Four on the request, two on its grant.
        events = await events_of(w, "chain-1", lambda found: len(found) >= 6)
        on_request = sorted(
            (e["reason"], e["type"]) for e in events if e["involvedObject"]["kind"] == c.KIND_REQUEST
        )
        assert on_request == sorted(
            [
                (reasons.REQUEST_RECEIVED, "Normal"),
                (reasons.REQUEST_ALLOWED, "Normal"),
                (reasons.GRANT_ISSUED, "Normal"),
                (reasons.GRANT_REVOKED, "Normal"),
            ]
        )
        on_grant = {
            (e["reason"], e["involvedObject"]["uid"])
            for e in events
            if e["involvedObject"]["kind"] == c.KIND_GRANT
        }
        assert on_grant == {
            (reasons.GRANT_ISSUED, issued["grant"]["uid"]),
            (reasons.GRANT_REVOKED, issued["grant"]["uid"]),
        }
        issued_event = next(e for e in events if e["reason"] == reasons.GRANT_ISSUED)
        assert f"JTI={jti}" in issued_event["message"]

        # `zsp describe`'s chain names the same steps as the audit log.
        chain = chain_from(expired, events)
        assert [s.event for s in chain] == [r["event"] for r in records]
        assert chain[2].details.get("tokenCredentialId") == jti


async def test_an_approvers_denial_is_a_final_denied_record_and_a_warning(cluster: Cluster) -> None:
    spec = {"approval": {"required": 1, "approvers": [{"kind": "Group", "name": "platform-leads"}]}}
    async with world(cluster, **spec) as w, running_operator(cluster) as op:
        await may_approve(w)
        await w.file(w.request("chain-2"))
        await wait_for_phase(w.admin, w.target, "chain-2", "Pending")
        async with await Kube.from_dict(cluster.kubeconfig(cluster.user_token("alice"))) as alice:
            patch = {"metadata": {"annotations": {c.ANNOTATION_DENY: "not during the freeze"}}}
            await alice.patch(ACCESS_REQUESTS, "chain-2", patch, w.target)
        denied = await wait_for_phase(w.admin, w.target, "chain-2", "Denied")
        await eventually(lambda: len(records_of(op, "chain-2")) == 3)

        requested, decided, by_alice = records_of(op, "chain-2")
        assert (requested["event"], decided["event"], decided["outcome"]) == (
            "requested",
            "decided",
            "pending",
        )
        assert by_alice["event"] == "denied"
        assert (by_alice["by"], by_alice["final"], by_alice["phase"]) == ("approver", True, "Denied")
        assert by_alice["approver"]["username"] == "alice"
        assert "platform-leads" in by_alice["approver"]["groups"]
        assert by_alice["comment"] == "not during the freeze"
        m = op.controller.observer.metrics
        assert value(m, "zsp_approvals_total", decision="deny", counted="true", policy=w.policy) == 1
        assert value(m, "zsp_requests_total", decision="pending", policy=w.policy) == 1

        conditions = {cond["type"]: cond for cond in denied["status"]["conditions"]}
        assert conditions["Denied"]["reason"] == c.REASON_APPROVER_DENIED
        assert conditions["Ready"]["status"] == "False"
        assert conditions["Approved"]["reason"] != c.REASON_PENDING, "no stale 'awaiting approval'"

        last = reasons.DENIAL_RECORDED
        found = await events_of(w, "chain-2", lambda found: any(e["reason"] == last for e in found))
        events = {(e["reason"], e["type"]) for e in found}
        assert (reasons.APPROVAL_REQUIRED, "Normal") in events
        assert (reasons.DENIAL_RECORDED, "Warning") in events
        assert [s.event for s in chain_from(denied)] == ["requested", "decided", "denied"]


async def may_approve(w: World) -> None:
    """The platform leads may annotate requests in the target namespace (how approvals are made)."""
    meta = {"namespace": w.target, "name": "zsp-approvers"}
    rules = [{"apiGroups": [c.GROUP], "resources": [c.PLURAL_REQUEST], "verbs": ["get", "patch"]}]
    await apply(
        w.admin,
        [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": rules},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": meta,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": meta["name"]},
                "subjects": [
                    {"kind": "Group", "name": "platform-leads", "apiGroup": "rbac.authorization.k8s.io"}
                ],
            },
        ],
    )
