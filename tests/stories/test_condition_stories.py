"""AccessPolicy conditions against an API server (every tier), with the real operator.

Covered: a condition decides at request time and a denial names it and its message, while a
request that meets it is issued and the grantee's own token is allowed; admission refuses a
policy whose expression does not compile, naming the condition and the position; a live grant
is revoked, with a ConditionNoLongerHolds Warning naming the condition, when the namespace is
relabelled so a condition fails, when the task object changes so a condition fails, and when
the operator's clock crosses a working-hours boundary (an injected clock set just before it);
a reason holding a token is refused before anything records it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harness import StoryClock, eventually, job, running_operator, token_for, wait_for_phase
from tiers import Cluster
from world import World, deployer_can_patch, deployer_refused, world
from zsp_operator.core import constants as c
from zsp_operator.kube import KubeError
from zsp_operator.kube.resources import ACCESS_POLICIES, ACCESS_REQUESTS, EVENTS, JOBS, NAMESPACES

TICKET = {
    "name": "ticket",
    "expression": 'request.spec.reason.matches("^OPS-[0-9]+ ")',
    "message": "the reason must start with an OPS ticket number",
}
NOT_PROD = {
    "name": "not-prod",
    "expression": '!("tier" in namespaceObject.metadata.labels) || namespaceObject.metadata.labels["tier"] != "prod"',
    "message": "never in a namespace labelled tier=prod",
}
APPROVED_JOB = {
    "name": "approved-job",
    "expression": 'task != null && task.metadata.labels["change"] == "approved"',
    "message": "the Job must carry change=approved",
}
BEFORE_FIVE = {
    "name": "before-five",
    "expression": "now.getHours() < 17",
    "message": "only before 17:00 UTC",
}


async def test_a_condition_decides_at_request_time_and_a_denial_names_it(cluster: Cluster) -> None:
    async with world(cluster, conditions=[TICKET]) as w, running_operator(cluster):
        await w.file(w.request("no-ticket"))
        denied = await wait_for_phase(w.admin, w.target, "no-ticket", "Denied")
        reason = denied["status"]["decision"]["reason"]
        assert 'condition "ticket"' in reason
        assert TICKET["message"] in reason

        deployer = await token_for(w.admin, w.ci, "deployer")
        await w.file(w.request("with-ticket", reason="OPS-4711 deploy build 88"))
        await wait_for_phase(w.admin, w.target, "with-ticket", "Active")
        assert await deployer_can_patch(w, deployer) is True


async def test_admission_refuses_an_expression_that_does_not_compile(cluster: Cluster) -> None:
    async with world(cluster) as w, running_operator(cluster):
        body = w.policy_body(conditions=[{"name": "hours", "expression": "now + 1"}])
        body["metadata"]["name"] = f"broken-{w.id}"
        with pytest.raises(KubeError) as refused:
            await w.admin.create(ACCESS_POLICIES, body)
        assert refused.value.status in (400, 422)
        message = str(refused.value)
        assert "spec.conditions[0]" in message
        assert "condition 'hours': expression at line 1, column 5" in message
        assert await w.admin.get(ACCESS_POLICIES, f"broken-{w.id}") is None


async def _revoked_for(w: World, name: str, condition: str) -> None:
    revoked = await wait_for_phase(w.admin, w.target, name, "Revoked")
    end = revoked["status"]["endReason"]
    assert c.EVENT_CONDITION_NO_LONGER_HOLDS in end
    assert f'condition "{condition}"' in end

    async def warned() -> bool:
        events = await w.admin.list(EVENTS, w.target)
        return any(
            e.get("reason") == c.EVENT_CONDITION_NO_LONGER_HOLDS
            and e.get("type") == "Warning"
            and (e.get("involvedObject") or {}).get("name") == name
            for e in events
        )

    assert await eventually(warned), "a ConditionNoLongerHolds Warning on the request"


async def test_relabelling_the_namespace_so_a_condition_fails_revokes(cluster: Cluster) -> None:
    async with world(cluster, conditions=[NOT_PROD]) as w, running_operator(cluster):
        deployer = await token_for(w.admin, w.ci, "deployer")
        await w.file(w.request("relabel-1"))
        await wait_for_phase(w.admin, w.target, "relabel-1", "Active")
        assert await deployer_can_patch(w, deployer) is True

        # Still selected by the policy: only the condition stops holding.
        await w.admin.patch(NAMESPACES, w.target, {"metadata": {"labels": {"tier": "prod"}}})
        await _revoked_for(w, "relabel-1", "not-prod")
        assert await eventually(lambda: deployer_refused(w, deployer))


def _job(w: World, change: str) -> dict[str, Any]:
    body = job("deploy-job", w.ci, labels={"change": change})
    body["spec"]["suspend"] = True  # nothing runs it here: only its labels matter to the story
    return body


async def test_a_task_object_that_changes_so_a_condition_fails_revokes(cluster: Cluster) -> None:
    async with world(cluster, conditions=[APPROVED_JOB]) as w, running_operator(cluster):
        deployer = await token_for(w.admin, w.ci, "deployer")
        await w.admin.create(JOBS, _job(w, "approved"))
        task_ref = {"apiVersion": "batch/v1", "kind": "Job", "namespace": w.ci, "name": "deploy-job"}
        await w.file(w.request("task-1", taskRef=task_ref))
        await wait_for_phase(w.admin, w.target, "task-1", "Active")
        assert await deployer_can_patch(w, deployer) is True

        await w.admin.patch(JOBS, "deploy-job", {"metadata": {"labels": {"change": "withdrawn"}}}, w.ci)
        await _revoked_for(w, "task-1", "approved-job")
        assert await eventually(lambda: deployer_refused(w, deployer))


async def test_the_clock_crossing_a_working_hours_boundary_revokes(cluster: Cluster) -> None:
    clock = StoryClock()
    real = datetime.now(UTC)
    boundary = real.replace(hour=17, minute=0, second=0, microsecond=0)
    if boundary <= real:
        boundary += timedelta(days=1)
    # The operator's clock reads four seconds before 17:00: the grant is allowed, then is not.
    clock.offset = boundary - timedelta(seconds=4) - real
    async with world(cluster, conditions=[BEFORE_FIVE]) as w, running_operator(cluster, clock=clock):
        deployer = await token_for(w.admin, w.ci, "deployer")
        await w.file(w.request("hours-1", ttl="30m"))
        await wait_for_phase(w.admin, w.target, "hours-1", "Active")
        assert await deployer_can_patch(w, deployer) is True

        await _revoked_for(w, "hours-1", "before-five")
        assert await eventually(lambda: deployer_refused(w, deployer))


async def test_a_reason_holding_a_token_is_refused_before_anything_records_it(cluster: Cluster) -> None:
    async with world(cluster) as w, running_operator(cluster) as op:
        token = await token_for(w.admin, w.ci, "deployer")
        with pytest.raises(KubeError) as refused:
            await w.file(w.request("pasted", reason=f"deploy with {token}"))
        # The refusal answers the one who pasted it (the real API server quotes the value back).
        assert "never put credentials in a request" in str(refused.value)
        assert await w.admin.get(ACCESS_REQUESTS, "pasted", w.target) is None
        assert token not in op.audit.getvalue()
