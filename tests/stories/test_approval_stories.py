"""Identity and approval stories (every tier): who asked and who approved come from the API
server's authenticated identities, never from anything written into a request.

Covered: a request filed with one ServiceAccount's token and approved by two other people's
tokens is issued only after the second distinct approver; forging `zsp.dev/requester` or
`zsp.dev/approvals` is refused; self-approval is refused, and counts when the policy allows
it; one deny by an eligible approver ends it; no quorum in time ends it as TimedOut;
approving a request that is not Pending is refused with a clear message; a non-approver is
refused; TaskGrants written by anyone but the operator are refused; a policy with
defaultTTL > maxTTL is refused with the field named; break-glass grants need no approval,
are capped, and are marked in status, audit and Events.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness import apply, eventually, running_operator, token_for, wait_for_phase
from tiers import Cluster
from world import World, world
from zsp_operator.core import constants as c
from zsp_operator.kube import Kube, KubeError
from zsp_operator.kube.resources import ACCESS_POLICIES, ACCESS_REQUESTS, EVENTS, TASK_GRANTS

LEADS = [{"kind": "Group", "name": "platform-leads"}]


def approvals(required: int, **more: Any) -> dict[str, Any]:
    return {
        "approval": {"required": required, "approvers": LEADS, "timeout": more.pop("timeout", "30m"), **more}
    }


async def people_may_approve(w: World, *users_and_groups: tuple[str, str]) -> None:
    """Roster people may read and annotate requests in the target namespace (to approve)."""
    rules = [
        {
            "apiGroups": [c.GROUP],
            "resources": [c.PLURAL_REQUEST],
            "verbs": ["get", "list", "watch", "patch", "create"],
        }
    ]
    meta = {"namespace": w.target, "name": "zsp-approvers"}
    subjects = [
        {"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"}
        for kind, name in users_and_groups
    ]
    await apply(
        w.admin,
        [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": rules},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": meta,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "zsp-approvers"},
                "subjects": subjects,
            },
        ],
    )


async def as_person(w: World, name: str) -> Kube:
    return await Kube.from_dict(w.cluster.kubeconfig(w.cluster.user_token(name)))


async def decide_as(w: World, person: str, request: str, verdict: str = "approve", comment: str = "") -> None:
    key = c.ANNOTATION_APPROVE if verdict == "approve" else c.ANNOTATION_DENY
    async with await as_person(w, person) as kube:
        await kube.patch(
            ACCESS_REQUESTS, request, {"metadata": {"annotations": {key: comment or "ok"}}}, w.target
        )


async def test_two_of_three_approvers_issue_only_after_the_second(cluster: Cluster) -> None:
    async with world(cluster, **approvals(2)) as w, running_operator(cluster):
        await people_may_approve(w, ("Group", "platform-leads"))
        await w.file(w.request("needs-two"))
        pending = await wait_for_phase(w.admin, w.target, "needs-two", "Pending")
        assert pending["status"]["decision"]["allowed"] is True
        assert pending["status"]["requester"]["username"] == w.pipeline_user

        await decide_as(w, "alice", "needs-two", comment="looks right")
        await eventually(lambda: _approvals_recorded(w, "needs-two", 1))
        assert await w.admin.get(TASK_GRANTS, "needs-two", w.target) is None, "one approval is not enough"
        assert (await _status(w, "needs-two"))["phase"] == "Pending"

        await decide_as(w, "bob", "needs-two")
        active = await wait_for_phase(w.admin, w.target, "needs-two", "Active")
        records = active["status"]["approvals"]
        assert [(r["username"], r["decision"]) for r in records] == [("alice", "approve"), ("bob", "approve")]
        assert "platform-leads" in records[0]["groups"], "groups come from the authenticated identity"
        assert records[0]["comment"] == "looks right"


async def _status(w: World, name: str) -> dict[str, Any]:
    body = await w.admin.get(ACCESS_REQUESTS, name, w.target) or {}
    return body.get("status") or {}


async def _approvals_recorded(w: World, name: str, count: int) -> bool:
    return len((await _status(w, name)).get("approvals") or []) >= count


async def test_repeating_an_approval_is_refused_with_a_message(cluster: Cluster) -> None:
    async with world(cluster, **approvals(2)) as w, running_operator(cluster):
        await people_may_approve(w, ("Group", "platform-leads"))
        await w.file(w.request("twice"))
        await wait_for_phase(w.admin, w.target, "twice", "Pending")
        await decide_as(w, "alice", "twice")
        with pytest.raises(KubeError) as refused:
            await decide_as(w, "alice", "twice")
        assert "already recorded approve" in refused.value.message


async def test_a_request_someone_approved_cannot_be_changed_into_another(cluster: Cluster) -> None:
    async with world(cluster, **approvals(2)) as w, running_operator(cluster):
        await people_may_approve(w, ("Group", "platform-leads"))
        await w.file(w.request("swap", permission="read-only"))
        await wait_for_phase(w.admin, w.target, "swap", "Pending")
        await decide_as(w, "alice", "swap")
        token = await token_for(w.admin, w.ci, "pipeline")
        async with await Kube.from_dict(w.cluster.kubeconfig(token)) as pipeline:
            with pytest.raises(KubeError) as refused:
                await pipeline.patch(ACCESS_REQUESTS, "swap", {"spec": {"permission": "deploy"}}, w.target)
        assert "already has approvals (alice)" in refused.value.message
        body = await w.admin.get(ACCESS_REQUESTS, "swap", w.target)
        assert body is not None
        assert body["spec"]["permission"] == "read-only"


async def test_forged_requester_and_approvals_are_refused(cluster: Cluster) -> None:
    async with world(cluster, **approvals(1)) as w, running_operator(cluster):
        await people_may_approve(w, ("Group", "platform-leads"))
        forged = w.request("forged")
        forged["metadata"]["annotations"] = {
            c.ANNOTATION_APPROVALS: json.dumps(
                [{"username": "alice", "decision": "approve", "at": "2026-01-01T00:00:00Z"}]
            )
        }
        with pytest.raises(KubeError) as refused:
            await w.file(forged)
        assert c.ANNOTATION_APPROVALS in refused.value.message

        await w.file(w.request("honest"))
        await wait_for_phase(w.admin, w.target, "honest", "Pending")
        fake = json.dumps([{"username": "alice", "decision": "approve", "at": "2026-01-01T00:00:00Z"}])
        async with await as_person(w, "bob") as bob:
            with pytest.raises(KubeError) as refused:
                await bob.patch(
                    ACCESS_REQUESTS,
                    "honest",
                    {"metadata": {"annotations": {c.ANNOTATION_APPROVALS: fake}}},
                    w.target,
                )
            assert "may not be written directly" in refused.value.message
            patch = {"metadata": {"annotations": {c.ANNOTATION_REQUESTER: '{"username": "bob"}'}}}
            with pytest.raises(KubeError) as refused:
                await bob.patch(ACCESS_REQUESTS, "honest", patch, w.target)
            assert "may not be changed" in refused.value.message
        assert (await _status(w, "honest"))["phase"] == "Pending"


@pytest.mark.parametrize("allow_self", [False, True], ids=["refused", "allowed-by-policy"])
async def test_self_approval(cluster: Cluster, allow_self: bool) -> None:
    spec = approvals(1, allowSelfApproval=allow_self)
    spec["requesters"] = LEADS
    async with world(cluster, **spec) as w, running_operator(cluster):
        await people_may_approve(w, ("Group", "platform-leads"))
        async with await as_person(w, "carol") as carol:
            await carol.create(ACCESS_REQUESTS, w.request("mine"))
        await wait_for_phase(w.admin, w.target, "mine", "Pending")
        if not allow_self:
            with pytest.raises(KubeError) as refused:
                await decide_as(w, "carol", "mine")
            assert "may not approve it" in refused.value.message
            assert (await _status(w, "mine"))["phase"] == "Pending"
        else:
            await decide_as(w, "carol", "mine")
            active = await wait_for_phase(w.admin, w.target, "mine", "Active")
            assert active["status"]["approvals"][0]["username"] == "carol"


async def test_one_deny_by_an_eligible_approver_ends_it(cluster: Cluster) -> None:
    async with world(cluster, **approvals(2)) as w, running_operator(cluster):
        await people_may_approve(w, ("Group", "platform-leads"))
        await w.file(w.request("doomed"))
        await wait_for_phase(w.admin, w.target, "doomed", "Pending")
        await decide_as(w, "alice", "doomed")
        await decide_as(w, "bob", "doomed", verdict="deny", comment="not during the freeze")
        denied = await wait_for_phase(w.admin, w.target, "doomed", "Denied")
        assert "bob" in _condition(denied, c.COND_DENIED)["message"]
        with pytest.raises(KubeError) as refused:
            await decide_as(w, "carol", "doomed")
        assert "not Pending" in refused.value.message
        assert await w.admin.get(TASK_GRANTS, "doomed", w.target) is None


async def _issued_events(w: World, name: str) -> list[dict[str, Any]] | None:
    """The request's Events once GrantIssued is among them (Events are posted after the status)."""
    events = await w.admin.list(EVENTS, w.target, field_selector=f"involvedObject.name={name}")
    return events if any(e["reason"] == c.EVENT_GRANT_ISSUED for e in events) else None


def _condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(cond for cond in body["status"]["conditions"] if cond["type"] == type_)


async def test_a_non_approver_is_refused(cluster: Cluster) -> None:
    async with world(cluster, **approvals(1)) as w, running_operator(cluster):
        await people_may_approve(w, ("Group", "platform-leads"), ("User", "dave"))
        await w.file(w.request("guarded"))
        await wait_for_phase(w.admin, w.target, "guarded", "Pending")
        with pytest.raises(KubeError) as refused:
            await decide_as(w, "dave", "guarded")
        assert "dave is not an approver" in refused.value.message
        assert "Group platform-leads" in refused.value.message


async def test_no_quorum_in_time_is_timed_out(cluster: Cluster) -> None:
    async with world(cluster, **approvals(1, timeout="2s")) as w, running_operator(cluster):
        await w.file(w.request("slow"))
        timed_out = await wait_for_phase(w.admin, w.target, "slow", "TimedOut", within=10)
        assert _condition(timed_out, c.COND_DENIED)["reason"] == c.REASON_TIMED_OUT


async def test_approving_an_active_request_is_refused_clearly(cluster: Cluster) -> None:
    async with world(cluster) as w, running_operator(cluster):
        await people_may_approve(w, ("Group", "platform-leads"))
        await w.file(w.request("auto"))
        await wait_for_phase(w.admin, w.target, "auto", "Active")
        with pytest.raises(KubeError) as refused:
            await decide_as(w, "alice", "auto")
        assert "is Active, not Pending" in refused.value.message


async def test_taskgrants_written_by_anyone_but_the_operator_are_refused(cluster: Cluster) -> None:
    async with world(cluster) as w, running_operator(cluster):
        grant = {
            "apiVersion": c.API_VERSION,
            "kind": c.KIND_GRANT,
            "metadata": {"name": "homemade", "namespace": w.target},
            "spec": {
                "request": {"name": "none", "uid": "none"},
                "policy": w.policy,
                "mode": "bind",
                "identity": {"namespace": w.ci, "name": "deployer"},
                "expiresAt": "2030-01-01T00:00:00Z",
            },
        }
        with pytest.raises(KubeError) as refused:
            await w.admin.create(TASK_GRANTS, grant)
        assert "written only by the operator" in refused.value.message


async def test_a_contradictory_policy_is_refused_with_the_field(cluster: Cluster) -> None:
    async with world(cluster) as w, running_operator(cluster):
        bad = w.policy_body(defaultTTL="2h", maxTTL="1h")
        bad["metadata"]["name"] = f"contradiction-{w.id}"
        with pytest.raises(KubeError) as refused:
            await w.admin.create(ACCESS_POLICIES, bad)
        assert "defaultTTL" in refused.value.message
        impossible = w.policy_body(approval={"required": 3, "approvers": [{"kind": "User", "name": "alice"}]})
        impossible["metadata"]["name"] = f"impossible-{w.id}"
        with pytest.raises(KubeError) as refused:
            await w.admin.create(ACCESS_POLICIES, impossible)
        assert "spec.approval.required" in refused.value.message


async def test_break_glass_needs_no_approval_is_capped_and_loud(cluster: Cluster) -> None:
    spec = {**approvals(2), "breakGlass": True, "maxTTL": "2h", "defaultTTL": "10m"}
    async with world(cluster, **spec) as w, running_operator(cluster, break_glass_max_ttl="30m") as op:
        await w.file(w.request("too-long", ttl="45m"))
        denied = await wait_for_phase(w.admin, w.target, "too-long", "Denied")
        assert "break-glass" in denied["status"]["decision"]["reason"]

        await w.file(w.request("incident", ttl="20m"))
        active = await wait_for_phase(w.admin, w.target, "incident", "Active")
        assert active["status"]["breakGlass"] is True
        assert active["status"]["approvals"] == []
        # The audit line and the metric come just after the status write, the Events last.
        events = await eventually(lambda: _issued_events(w, "incident"))
        records = op.records_for("incident", w.target)
        assert any(r["event"] == "issued" and r.get("breakGlass") for r in records)
        assert op.controller.observer.metrics.break_glass_grants.labels(w.policy)._value.get() == 1
        assert {e["type"] for e in events} == {"Warning"}, "every break-glass Event is a Warning"
        assert c.EVENT_GRANT_ISSUED in {e["reason"] for e in events}
