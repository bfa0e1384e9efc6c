"""Grant lifecycle stories against an API server (every tier), with the real operator.

Covered: bind mode end to end, checked with the grantee's own token before and after;
ephemeral mode with a delivered kubeconfig that works and then stops authenticating;
expiry within a second of expiresAt; `done`, taskRef Job completion (a Job created after its
grant is waited for), request deletion,
policy deletion, namespace relabel and grantee deletion each revoke; a failure injected at
each issuance step leaves nothing behind; restart revokes what expired and re-arms the
rest; orphans with our labels are removed at start; a terminal request re-applied never
grants again; the requester comes from the token that created the request.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import pytest
import yaml

from faults import FaultyKube
from harness import (
    StoryClock,
    can,
    eventually,
    job,
    job_succeeded,
    managed_objects,
    running_operator,
    token_dies,
    token_for,
    wait_for_phase,
)
from tiers import Cluster
from world import World, deployer_can_patch, deployer_refused, world
from zsp_operator.core import constants as c
from zsp_operator.kube import Invalid, Kube, KubeError
from zsp_operator.kube.resources import (
    ACCESS_POLICIES,
    ACCESS_REQUESTS,
    EVENTS,
    JOBS,
    NAMESPACES,
    ROLE_BINDINGS,
    SECRETS,
    SERVICE_ACCOUNTS,
    TASK_GRANTS,
    VALIDATING_WEBHOOKS,
    Resource,
)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_bind_mode_grant_works_until_done(cluster: Cluster) -> None:
    async with world(cluster) as w, running_operator(cluster) as op:
        deployer = await token_for(w.admin, w.ci, "deployer")
        assert await deployer_can_patch(w, deployer) is False, "no standing privilege before the request"

        await w.file(w.request("deploy-1", ttl="10m"))
        active = await wait_for_phase(w.admin, w.target, "deploy-1", "Active")
        status = active["status"]
        assert status["requester"]["username"] == w.pipeline_user
        assert status["policy"] == w.policy
        assert status["identity"] == {"namespace": w.ci, "name": "deployer"}
        grant = await w.admin.get(TASK_GRANTS, "deploy-1", w.target)
        assert grant is not None
        assert grant["metadata"]["ownerReferences"][0]["uid"] == active["metadata"]["uid"]
        assert await deployer_can_patch(w, deployer) is True, "the grantee's own token is now allowed"
        assert await can(cluster, deployer, "delete", "deployments", w.target, group="apps") is False

        await w.admin.patch(ACCESS_REQUESTS, "deploy-1", {"spec": {"done": True}}, w.target)
        done = await wait_for_phase(w.admin, w.target, "deploy-1", "Completed")
        assert done["status"]["revokedAt"]
        assert await eventually(lambda: deployer_refused(w, deployer)), "refused once revoked"
        assert await eventually(lambda: _nothing_managed(w)), "every object issued is gone"
        chain = ["requested", "decided", "issued", "revoked"]
        # The `revoked` line is written once the TaskGrant is gone, just after the poll above.
        await eventually(lambda: [r["event"] for r in op.records_for("deploy-1", w.target)] == chain)


async def _nothing_managed(w: World) -> bool:
    return await managed_objects(w.admin, [w.target, w.ci]) == []


async def test_ephemeral_grant_delivers_a_kubeconfig_that_dies_at_expiry(cluster: Cluster) -> None:
    async with world(cluster) as w, running_operator(cluster) as op:
        await w.file(w.request("eph-1", ephemeral=True, ttl="4s"))
        active = await wait_for_phase(w.admin, w.target, "eph-1", "Active")
        identity = active["status"]["identity"]
        assert identity["namespace"] == w.target
        assert identity["name"].startswith("zsp-eph-1-")

        secret = await w.admin.get(SECRETS, "eph-1-kubeconfig", w.ci)
        assert secret is not None
        config = yaml.safe_load(base64.b64decode(secret["data"][c.DELIVERY_KEY]))
        token = config["users"][0]["user"]["token"]
        assert config["contexts"][0]["context"]["namespace"] == w.target
        assert await deployer_can_patch(w, token) is True, "the delivered kubeconfig's token works"
        grant = await w.admin.get(TASK_GRANTS, "eph-1", w.target)
        assert grant is not None
        assert active["status"]["tokenCredentialId"] == grant["status"]["tokenCredentialId"]
        assert active["status"]["tokenCredentialId"], "the token's jti is recorded"

        expired = await wait_for_phase(w.admin, w.target, "eph-1", "Expired", within=10)
        lag = (when(expired["status"]["revokedAt"]) - when(expired["status"]["expiresAt"])).total_seconds()
        assert lag < 1.0, f"revoked {lag:.3f}s after expiresAt"
        assert expired["status"]["revocationLagSeconds"] < 1.0
        await token_dies(cluster, token, "patch", "deployments", w.target, group="apps")
        assert await eventually(lambda: _gone(w.admin, SERVICE_ACCOUNTS, identity["name"], w.target))
        assert await eventually(lambda: _nothing_managed(w))
        assert "token" not in op.audit.getvalue().lower().replace("tokencredentialid", "")


async def _gone(kube: Kube, res: Resource, name: str, namespace: str) -> bool:
    return await kube.get(res, name, namespace) is None


async def test_taskref_job_completion_revokes(cluster: Cluster) -> None:
    async with world(cluster) as w, running_operator(cluster):
        await w.admin.create(JOBS, job("deploy-job", w.ci))
        task_ref = {"apiVersion": "batch/v1", "kind": "Job", "namespace": w.ci, "name": "deploy-job"}
        await w.file(w.request("job-1", taskRef=task_ref))
        await wait_for_phase(w.admin, w.target, "job-1", "Active")
        await w.admin.patch(JOBS, "deploy-job", job_succeeded(), w.ci, status=True)
        done = await wait_for_phase(w.admin, w.target, "job-1", "Completed")
        assert "deploy-job" in done["status"]["endReason"]


async def test_a_task_created_after_its_grant_is_waited_for_then_followed(cluster: Cluster) -> None:
    """A GitOps PreSync request names its Sync Job, which does not exist yet when it is granted."""
    async with world(cluster) as w, running_operator(cluster):
        deployer = await token_for(w.admin, w.ci, "deployer")
        task_ref = {"apiVersion": "batch/v1", "kind": "Job", "namespace": w.ci, "name": "sync-job"}
        await w.file(w.request("presync-1", taskRef=task_ref))
        await wait_for_phase(w.admin, w.target, "presync-1", "Active")
        assert await deployer_can_patch(w, deployer) is True
        await w.admin.create(JOBS, job("sync-job", w.ci))
        await w.admin.patch(JOBS, "sync-job", job_succeeded(), w.ci, status=True)
        done = await wait_for_phase(w.admin, w.target, "presync-1", "Completed")
        # Ended by the Job finishing, not by its absence before it was created.
        assert "sync-job finished" in done["status"]["endReason"], done["status"]["endReason"]
        assert await eventually(lambda: deployer_refused(w, deployer))


@pytest.mark.parametrize(
    "end", ["request-deleted", "policy-deleted", "namespace-relabelled", "grantee-deleted"]
)
async def test_drift_revokes_the_grant(cluster: Cluster, end: str) -> None:
    async with world(cluster) as w, running_operator(cluster):
        deployer = await token_for(w.admin, w.ci, "deployer")
        await w.file(w.request("drift-1"))
        await wait_for_phase(w.admin, w.target, "drift-1", "Active")
        assert await deployer_can_patch(w, deployer) is True
        if end == "request-deleted":
            await w.admin.delete(ACCESS_REQUESTS, "drift-1", w.target)
        elif end == "policy-deleted":
            await w.admin.delete(ACCESS_POLICIES, w.policy)
        elif end == "namespace-relabelled":
            await w.admin.patch(
                NAMESPACES, w.target, {"metadata": {"labels": {"zsp.dev/story": "elsewhere"}}}
            )
        else:
            await w.admin.delete(SERVICE_ACCOUNTS, "deployer", w.ci)
        assert await eventually(lambda: _no_bindings(w)), "the RoleBinding is gone"
        assert await eventually(lambda: _gone(w.admin, TASK_GRANTS, "drift-1", w.target))
        if end != "request-deleted":
            revoked = await wait_for_phase(w.admin, w.target, "drift-1", "Revoked")
            assert revoked["status"]["endReason"]
        if end != "grantee-deleted":
            assert await eventually(lambda: deployer_refused(w, deployer))


async def _no_bindings(w: World) -> bool:
    return not (
        await w.admin.list(ROLE_BINDINGS, w.target, label_selector=f"{c.LABEL_MANAGED_BY}={c.OPERATOR_NAME}")
    )


ISSUANCE_STEPS = [
    pytest.param("TaskGrant", "create", False, id="taskgrant"),
    pytest.param("ServiceAccount", "create", True, id="serviceaccount"),
    pytest.param("Role", "create", True, id="role"),
    pytest.param("RoleBinding", "create", True, id="rolebinding"),
    pytest.param("ServiceAccount", "create/token", True, id="tokenrequest"),
    pytest.param("Secret", "create", True, id="delivery-secret"),
    pytest.param("TaskGrant", "patch/status", True, id="grant-status"),
]


@pytest.mark.parametrize(("kind", "verb", "ephemeral"), ISSUANCE_STEPS)
async def test_a_failure_at_any_issuance_step_leaves_nothing(
    cluster: Cluster, kind: str, verb: str, ephemeral: bool
) -> None:
    faulty: list[FaultyKube] = []

    def wrap(kube: Kube) -> Kube:
        faulty.append(FaultyKube(kube, kind, verb))
        return faulty[0]

    async with world(cluster) as w, running_operator(cluster, wrap=wrap):
        await w.file(w.request("fail-1", ephemeral=ephemeral))
        failed = await wait_for_phase(w.admin, w.target, "fail-1", "Failed")
        assert faulty[0].tripped.is_set(), "the fault was injected"
        assert "injected failure" in failed["status"]["endReason"]
        assert await eventually(lambda: _nothing_left(w))
        assert await w.admin.get(SECRETS, "fail-1-kubeconfig", w.ci) is None


async def _nothing_left(w: World) -> bool:
    return (
        await managed_objects(w.admin, [w.target, w.ci]) == []
        and await w.admin.get(TASK_GRANTS, "fail-1", w.target) is None
    )


async def test_restart_revokes_what_expired_and_rearms_the_rest(cluster: Cluster) -> None:
    clock = StoryClock()
    async with world(cluster) as w:
        async with running_operator(cluster, clock=clock):
            await w.file(w.request("short", ttl="2s"))
            await w.file(
                w.request(
                    "long",
                    ttl="15s",
                    grantee={"ephemeral": {}},
                    delivery={"namespace": w.ci, "secretName": "long-kc"},
                ),
            )
            await wait_for_phase(w.admin, w.target, "short", "Active")
            await wait_for_phase(w.admin, w.target, "long", "Active")
        # The operator is down while the short grant's TTL runs out.
        clock.advance(2.5)
        assert await w.admin.get(TASK_GRANTS, "short", w.target) is not None, (
            "nothing revokes while it is down"
        )
        async with running_operator(cluster, clock=clock) as op:
            expired = await wait_for_phase(w.admin, w.target, "short", "Expired", within=5)
            assert "not running" in expired["status"]["endReason"]
            assert await phase_of_request(w, "long") == "Active"
            assert op.controller.expiry.deadline(await _grant_uid(w, "long")) is not None, "re-armed"
            await wait_for_phase(w.admin, w.target, "long", "Expired", within=20)
            assert await eventually(lambda: _nothing_managed(w))


async def phase_of_request(w: World, name: str) -> str | None:
    body = await w.admin.get(ACCESS_REQUESTS, name, w.target)
    return ((body or {}).get("status") or {}).get("phase")


async def _grant_uid(w: World, name: str) -> str:
    grant = await w.admin.get(TASK_GRANTS, name, w.target)
    assert grant is not None
    return str(grant["metadata"]["uid"])


async def test_objects_left_by_a_vanished_grant_are_removed_at_start(cluster: Cluster) -> None:
    async with world(cluster) as w:
        orphan = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {
                "name": "zsp-leftover",
                "namespace": w.target,
                "labels": {c.LABEL_MANAGED_BY: c.OPERATOR_NAME, c.LABEL_GRANT_UID: "00000000-dead"},
            },
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "namespace": w.ci, "name": "deployer"}],
        }
        await w.admin.create(ROLE_BINDINGS, orphan)
        async with running_operator(cluster):
            assert await eventually(lambda: _gone(w.admin, ROLE_BINDINGS, "zsp-leftover", w.target))


async def test_a_terminal_request_reapplied_never_grants_again(cluster: Cluster) -> None:
    async with world(cluster) as w, running_operator(cluster) as op:
        await w.file(w.request("once", ttl="2s"))
        await wait_for_phase(w.admin, w.target, "once", "Active")
        expired = await wait_for_phase(w.admin, w.target, "once", "Expired", within=6)
        # A GitOps controller re-applies the same manifest (an update with no real change),
        # then someone edits it; neither brings privilege back.
        body = dict(expired)
        body["metadata"] = dict(body["metadata"], labels={"argocd.argoproj.io/instance": "payments"})
        await w.admin.replace(ACCESS_REQUESTS, body)
        with pytest.raises(KubeError) as refused:
            await w.admin.patch(ACCESS_REQUESTS, "once", {"spec": {"ttl": "5m"}}, w.target)
        assert "only spec.done may change" in refused.value.message
        # The one edit admission lets through comes last: the operator acknowledges it (status
        # observedGeneration) once it has seen the request as it is now, re-applied and edited.
        edited = await w.admin.patch(ACCESS_REQUESTS, "once", {"spec": {"done": True}}, w.target)
        seen = await eventually(lambda: _observed(w, "once", edited["metadata"]["generation"]))
        assert seen["status"]["phase"] == "Expired"
        assert seen["status"]["revokedAt"] == expired["status"]["revokedAt"]
        assert await w.admin.get(TASK_GRANTS, "once", w.target) is None
        assert [r["event"] for r in op.records_for("once", w.target)].count("issued") == 1
        ignored = await eventually(lambda: _events_with_reason(w, "once", c.EVENT_EDIT_IGNORED))
        assert "one-shot" in ignored[0]["message"]


async def _observed(w: World, name: str, generation: int) -> dict[str, Any] | None:
    """The request once the operator has acknowledged `generation`."""
    body = await w.admin.get(ACCESS_REQUESTS, name, w.target)
    return body if ((body or {}).get("status") or {}).get("observedGeneration") == generation else None


async def test_a_request_no_policy_allows_is_denied_with_the_field_named(cluster: Cluster) -> None:
    async with world(cluster) as w, running_operator(cluster):
        await w.file(w.request("nope", permission="delete-everything"))
        denied = await wait_for_phase(w.admin, w.target, "nope", "Denied")
        reason = denied["status"]["decision"]["reason"]
        assert w.policy in reason, "names the closest policy"
        assert "spec.permission" in reason
        assert await w.admin.get(TASK_GRANTS, "nope", w.target) is None


async def test_admission_refuses_a_ttl_above_the_named_policys_maximum(cluster: Cluster) -> None:
    async with world(cluster) as w, running_operator(cluster):
        with pytest.raises(KubeError) as refused:
            await w.file(w.request("greedy", ttl="3h", policy=w.policy))
        assert "spec.ttl" in refused.value.message
        assert "1h" in refused.value.message


async def test_the_requester_is_the_token_that_created_it_not_what_it_says(cluster: Cluster) -> None:
    async with world(cluster) as w, running_operator(cluster):
        forged = w.request("forged")
        forged["metadata"]["annotations"] = {
            c.ANNOTATION_REQUESTER: '{"username": "system:serviceaccount:kube-system:admin"}'
        }
        with pytest.raises(KubeError) as refused:
            await w.file(forged)
        assert c.ANNOTATION_REQUESTER in refused.value.message
        # Created as an admin who is not a listed requester: the stamp says so, and it is denied.
        await w.admin.create(ACCESS_REQUESTS, w.request("by-admin"))
        denied = await wait_for_phase(w.admin, w.target, "by-admin", "Denied")
        assert denied["status"]["requester"]["username"] != w.pipeline_user
        assert "requester" in denied["status"]["decision"]["reason"]


async def test_a_malformed_request_is_refused_by_the_api_with_the_field(cluster: Cluster) -> None:
    async with world(cluster) as w, running_operator(cluster):
        bad = w.request("blank", reason="   ")
        with pytest.raises((Invalid, KubeError)) as refused:
            await w.file(bad)
        assert "reason" in refused.value.message


async def test_an_edit_that_slips_past_admission_is_ignored_with_a_warning(cluster: Cluster) -> None:
    """Defence in depth: with the validating webhook gone, the operator itself ignores the edit."""
    async with world(cluster) as w, running_operator(cluster):
        await w.file(w.request("steady", ttl="10m"))
        active = await wait_for_phase(w.admin, w.target, "steady", "Active")
        await w.admin.delete(VALIDATING_WEBHOOKS, c.GROUP)
        edited = await w.admin.patch(
            ACCESS_REQUESTS, "steady", {"spec": {"ttl": "55m", "permission": "read-only"}}, w.target
        )
        events = await eventually(lambda: _events_with_reason(w, "steady", c.EVENT_EDIT_IGNORED))
        assert events[0]["type"] == "Warning"
        assert "only spec.done: true may change" in events[0]["message"]
        after = await eventually(lambda: _observed(w, "steady", edited["metadata"]["generation"]))
        assert after["status"]["phase"] == "Active"
        assert after["status"]["expiresAt"] == active["status"]["expiresAt"], "the grant keeps its terms"


async def _events_with_reason(w: World, name: str, reason: str) -> list[dict[str, Any]]:
    events = await w.admin.list(EVENTS, w.target, field_selector=f"involvedObject.name={name}")
    return [e for e in events if e["reason"] == reason]
