"""Standing-privilege stories against an API server (every tier), with the real operator.

Covered: a hand-made binding carrying the operator's labels (copied from a live grant, or
naming a grant that never existed) is removed within a second, reported, and the live grant
is left alone; a grant's binding edited to add a subject, or its Role's rules edited, is
removed and the grant revoked; bindings left by a crash (grant gone, or grant ended before its
teardown ran) are removed at start and the ended grant's revocation finished; audit mode
reports an unmanaged binding in an enforced namespace once and deletes nothing; enforce mode
deletes unmanaged bindings (at start and when made) and spares the allowlist, system bindings,
the operator's own and live grants'; labelling a namespace enforced sweeps it at once; the start
sweep and the resync alone (no watch) catch bindings; ClusterRoleBindings are reported, and
deleted only with --enforce-cluster-bindings; a persistence-capable request is denied unless
the policy allows it, and then flagged in status, grant, audit record, metric and `zsp audit`;
`zsp audit` on a live cluster tells granted, orphaned and standing bindings apart.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest

from harness import (
    OPERATOR_USER,
    Operator,
    Sweeps,
    can,
    eventually,
    operator_token,
    running_operator,
    token_for,
    wait_for_phase,
)
from tiers import Cluster
from world import World, world
from zsp_operator.cli.standing_report import collect
from zsp_operator.core import constants as c
from zsp_operator.engine.clock import utcnow
from zsp_operator.engine.sweeper import Sweeper
from zsp_operator.engine.view import ClusterView
from zsp_operator.kube import Kube
from zsp_operator.kube.resources import (
    ACCESS_REQUESTS,
    CLUSTER_ROLE_BINDINGS,
    EVENTS,
    NAMESPACES,
    ROLE_BINDINGS,
    ROLES,
    TASK_GRANTS,
    Resource,
)
from zsp_operator.observe.observer import AuditLog, Metrics, Observer
from zsp_operator.settings import Settings, SweepMode

RBAC = "rbac.authorization.k8s.io/v1"
WITHIN = 1.0  # seconds: the issue's promise for managed bindings and enforce mode


def binding(
    name: str,
    namespace: str | None,
    subjects: list[dict[str, str]],
    role: tuple[str, str] = ("Role", "pod-reader"),
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels or {}}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": RBAC,
        "kind": "RoleBinding" if namespace else "ClusterRoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role[0], "name": role[1]},
        "subjects": subjects,
    }


def sa(namespace: str, name: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "namespace": namespace, "name": name}


async def enforce(w: World) -> None:
    await w.admin.patch(NAMESPACES, w.target, {"metadata": {"labels": {c.LABEL_ENFORCE: "true"}}})


async def pod_reader(w: World) -> None:
    """The Role hand-made bindings use: its rules are known on every tier (unlike an aggregated
    ClusterRole such as view, which stays empty without kube-controller-manager)."""
    role = {
        "apiVersion": RBAC,
        "kind": "Role",
        "metadata": {"name": "pod-reader", "namespace": w.target},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
    }
    await w.admin.create(ROLES, role)


async def seconds_until_gone(
    kube: Kube, res: Resource, name: str, namespace: str | None, limit: float = 5
) -> float:
    """How long after now the object disappears (fails after `limit` seconds)."""
    started = time.monotonic()
    while await kube.get(res, name, namespace) is not None:
        assert time.monotonic() - started < limit, f"{res.kind} {name} still there after {limit}s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def live_binding(w: World, request: str) -> dict[str, Any]:
    grant = await w.admin.get(TASK_GRANTS, request, w.target)
    assert grant is not None
    (found,) = await w.admin.list(
        ROLE_BINDINGS, w.target, label_selector=f"{c.LABEL_GRANT_UID}={grant['metadata']['uid']}"
    )
    return found


def counted(op: Operator, metric: str, **labels: str) -> float:
    return op.controller.observer.metrics.registry.get_sample_value(metric, labels) or 0.0


def records(op: Operator, event: str, name: str) -> list[dict[str, Any]]:
    return [r for r in op.audit_records() if r["event"] == event and r["binding"]["name"] == name]


def in_namespace(op: Operator, event: str, namespace: str) -> list[dict[str, Any]]:
    # Only this story's: on a shared real control plane, earlier stories' namespaces may
    # still be terminating, with bindings the sweeper has its own opinion of.
    return [
        r for r in op.audit_records() if r["event"] == event and r["binding"].get("namespace") == namespace
    ]


async def warnings(kube: Kube, namespace: str, reason: str, about: str) -> list[dict[str, Any]]:
    found = await kube.list(EVENTS, namespace)
    return [e for e in found if e.get("reason") == reason and e["involvedObject"].get("name") == about]


async def deployer_can_get_pods(w: World) -> bool | None:
    return await can(w.cluster, await token_for(w.admin, w.ci, "deployer"), "get", "pods", w.target)


# --- bindings with the operator's labels -------------------------------------------------------


@pytest.mark.parametrize("claim", ["copied-from-a-live-grant", "made-up-grant"])
async def test_a_hand_made_binding_with_the_operators_labels_is_removed_within_a_second(
    cluster: Cluster, claim: str
) -> None:
    async with world(cluster) as w, running_operator(cluster) as op:
        await w.file(w.request("task-1"))
        await wait_for_phase(w.admin, w.target, "task-1", "Active")
        issued = await live_binding(w, "task-1")
        labels = dict(issued["metadata"]["labels"])
        genuine = {"uid": labels[c.LABEL_GRANT_UID], "binding": issued["metadata"]["uid"]}
        if claim == "made-up-grant":
            labels[c.LABEL_GRANT_UID] = "00000000-0000-0000-0000-000000000000"
        await w.admin.create(
            ROLE_BINDINGS, binding("sneaky", w.target, [sa(w.ci, "pipeline")], labels=labels)
        )

        elapsed = await seconds_until_gone(w.admin, ROLE_BINDINGS, "sneaky", w.target)
        assert elapsed < WITHIN, f"removed after {elapsed:.2f}s"
        (record,) = await eventually(lambda: records(op, "standing-binding-removed", "sneaky"))
        assert record["state"] == ("forged" if claim == "copied-from-a-live-grant" else "orphaned")
        assert counted(op, "zsp_standing_bindings_removed_total", mode="audit") >= 1
        # The Warning lands where people look: the grant's request, or else the namespace.
        where, about = (w.target, "task-1") if claim == "copied-from-a-live-grant" else ("default", w.target)
        assert await eventually(lambda: warnings(w.admin, where, c.EVENT_STANDING_BINDING_REMOVED, about))
        # The genuine grant is not punished for a copy of its labels: the record is written once
        # the sweeper has decided about the grant too, and it says the grant was not revoked.
        assert record.get("grantRevoked") is None
        assert not op.controller.revoker.in_progress(genuine["uid"])
        assert not op.controller.revoker.has_ended(genuine["uid"])
        assert (await w.admin.get(ACCESS_REQUESTS, "task-1", w.target) or {})["status"]["phase"] == "Active"
        assert (await live_binding(w, "task-1"))["metadata"]["uid"] == genuine["binding"]


@pytest.mark.parametrize("edit", ["subject-added", "role-rules-edited"])
async def test_a_grants_binding_changed_after_issuance_is_removed_and_the_grant_revoked(
    cluster: Cluster, edit: str
) -> None:
    async with world(cluster) as w, running_operator(cluster) as op:
        await w.file(w.request("task-1"))
        await wait_for_phase(w.admin, w.target, "task-1", "Active")
        rb = await live_binding(w, "task-1")
        name = rb["metadata"]["name"]
        if edit == "subject-added":
            subjects = [*rb["subjects"], sa(w.ci, "pipeline")]
            await w.admin.patch(ROLE_BINDINGS, name, {"subjects": subjects}, w.target)
        else:
            role = await w.admin.get(ROLES, rb["roleRef"]["name"], w.target)
            assert role is not None
            rules = [*role["rules"], {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
            await w.admin.patch(ROLES, role["metadata"]["name"], {"rules": rules}, w.target)

        elapsed = await seconds_until_gone(w.admin, ROLE_BINDINGS, name, w.target)
        assert elapsed < WITHIN, f"removed after {elapsed:.2f}s"
        revoked = await wait_for_phase(w.admin, w.target, "task-1", "Revoked")
        assert "changed after issuance" in revoked["status"]["endReason"]
        (record,) = await eventually(lambda: records(op, "standing-binding-removed", name))
        assert (record["state"], record["grantRevoked"]) == ("tampered", True)
        pipeline = await token_for(w.admin, w.ci, "pipeline")
        deployer = await token_for(w.admin, w.ci, "deployer")
        for token in (pipeline, deployer):
            assert await eventually(lambda t=token: _refused(w, t, "patch", "deployments", "apps"))


async def _refused(w: World, token: str, verb: str, resource: str, group: str = "") -> bool:
    return await can(w.cluster, token, verb, resource, w.target, group) is False


@pytest.mark.parametrize("crash", ["grant-gone", "grant-ended-before-teardown"])
async def test_bindings_left_by_a_crash_are_removed_at_start(cluster: Cluster, crash: str) -> None:
    async with world(cluster) as w:
        await pod_reader(w)
        if crash == "grant-gone":
            labels = {
                c.LABEL_MANAGED_BY: c.OPERATOR_NAME,
                c.LABEL_GRANT: "deploy-0",
                c.LABEL_GRANT_UID: "11111111-2222-3333-4444-555555555555",
            }
            name = "zsp-deploy-0-abc"
            await w.admin.create(
                ROLE_BINDINGS, binding(name, w.target, [sa(w.ci, "deployer")], labels=labels)
            )
            probe = ("get", "pods", "")  # what Role pod-reader lets the deployer do
        else:
            async with running_operator(cluster):
                await w.file(w.request("task-1"))
                await wait_for_phase(w.admin, w.target, "task-1", "Active")
            # The revoker had recorded the end, then the operator died before deleting anything.
            ended = {
                "type": "Ready",
                "status": "False",
                "reason": c.REASON_REVOKED,
                "message": "revoked by hand before the crash",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
            await w.admin.patch(
                TASK_GRANTS, "task-1", {"status": {"conditions": [ended]}}, w.target, status=True
            )
            name = (await live_binding(w, "task-1"))["metadata"]["name"]
            probe = ("patch", "deployments", "apps")  # what the grant's Role lets the deployer do
        deployer = await token_for(w.admin, w.ci, "deployer")
        verb, resource, group = probe
        assert await can(cluster, deployer, verb, resource, w.target, group) is True, (
            "the leftover still grants"
        )

        async with running_operator(cluster) as op:
            await seconds_until_gone(w.admin, ROLE_BINDINGS, name, w.target)
            if crash == "grant-gone":
                (record,) = await eventually(lambda: records(op, "standing-binding-removed", name))
                assert record["state"] == "orphaned"
            else:
                # The revoker finishes what it started (the sweeper would too, were it first).
                revoked = await wait_for_phase(w.admin, w.target, "task-1", "Revoked")
                assert revoked["status"]["endReason"] == "revoked by hand before the crash"
                assert await eventually(lambda: _gone(w.admin, TASK_GRANTS, "task-1", w.target))
            assert await eventually(lambda: _refused(w, deployer, verb, resource, group))


async def _gone(kube: Kube, res: Resource, name: str, namespace: str | None) -> bool:
    return await kube.get(res, name, namespace) is None


# --- unmanaged bindings ----------------------------------------------------------------------------


async def test_audit_mode_reports_standing_bindings_once_and_deletes_nothing(cluster: Cluster) -> None:
    async with world(cluster) as w:
        await enforce(w)
        await pod_reader(w)
        await w.admin.create(ROLE_BINDINGS, binding("before-start", w.target, [sa(w.ci, "deployer")]))
        async with running_operator(cluster, wrap=Sweeps, resync="1s") as op:
            await w.admin.create(ROLE_BINDINGS, binding("after-start", w.target, [sa(w.ci, "deployer")]))
            for name in ("before-start", "after-start"):
                (record,) = await eventually(lambda n=name: records(op, "standing-binding-found", n))
                assert (record["state"], record["mode"]) == ("standing", "audit")
            await Sweeps.of(op).one_passes()  # nothing new to say about the same bindings
            for name in ("before-start", "after-start"):
                assert len(records(op, "standing-binding-found", name)) == 1
            assert counted(op, "zsp_standing_bindings_found_total", mode="audit") >= 2
            assert not in_namespace(op, "standing-binding-removed", w.target)
            assert await eventually(lambda: warnings(w.admin, "default", c.EVENT_STANDING_BINDING, w.target))
            for name in ("before-start", "after-start"):
                assert await w.admin.get(ROLE_BINDINGS, name, w.target) is not None
            assert await deployer_can_get_pods(w) is True


async def test_enforce_mode_deletes_standing_bindings_and_spares_the_allowlist(cluster: Cluster) -> None:
    async with world(cluster) as w:
        await enforce(w)
        await pod_reader(w)
        await w.admin.create(ROLE_BINDINGS, binding("before-start", w.target, [sa(w.ci, "deployer")]))
        spared = {
            "kept": [sa(w.ci, "deployer")],  # allowlisted by NS/NAME
            "controller": [sa("kube-system", "replicaset-controller")],  # the control plane's
            "operator": [sa("zsp-system", "zsp-operator")],  # the operator's own
        }
        for name, subjects in spared.items():
            await w.admin.create(ROLE_BINDINGS, binding(name, w.target, subjects))
        # The world's own `zsp-requester-pipeline` (the right to ask) is allowlisted by a pattern.
        allow = f"{w.target}/kept,zsp-requester-*"
        settings: dict[str, Any] = {"sweep_mode": "enforce", "sweep_allowlist": allow, "resync": "1s"}
        async with running_operator(cluster, wrap=Sweeps, **settings) as op:
            assert op.controller.identity == OPERATOR_USER
            await seconds_until_gone(w.admin, ROLE_BINDINGS, "before-start", w.target)
            sweeps = Sweeps.of(op)
            async with sweeps.held():  # what follows is the watch's doing, not a sweep's
                await w.admin.create(ROLE_BINDINGS, binding("after-start", w.target, [sa(w.ci, "deployer")]))
                elapsed = await seconds_until_gone(w.admin, ROLE_BINDINGS, "after-start", w.target)
                assert elapsed < WITHIN, f"removed after {elapsed:.2f}s"

                await w.file(w.request("task-1"))  # the right to ask still works
                await wait_for_phase(w.admin, w.target, "task-1", "Active")
                granted = (await live_binding(w, "task-1"))["metadata"]["name"]
            # A whole sweep after the grant went live judged every binding here again.
            await sweeps.one_passes()
            for name in [*spared, "zsp-requester-pipeline", granted]:
                assert await w.admin.get(ROLE_BINDINGS, name, w.target) is not None, f"{name} was spared"
            removed = in_namespace(op, "standing-binding-removed", w.target)
            assert sorted((r["binding"]["name"], r["state"]) for r in removed) == [
                ("after-start", "standing"),
                ("before-start", "standing"),
            ]
            assert counted(op, "zsp_standing_bindings_removed_total", mode="enforce") >= 2


async def test_cluster_role_bindings_are_reported_and_deleted_only_when_told(cluster: Cluster) -> None:
    async with world(cluster) as w:
        name = f"standing-{w.id}"
        # Other stories' ClusterRoleBindings are none of this story's business.
        others = ",".join(b["metadata"]["name"] for b in await w.admin.list(CLUSTER_ROLE_BINDINGS))
        try:
            await w.admin.create(
                CLUSTER_ROLE_BINDINGS, binding(name, None, [sa(w.ci, "deployer")], ("ClusterRole", "view"))
            )
            async with running_operator(
                cluster, wrap=Sweeps, sweep_mode="enforce", sweep_allowlist=others, resync="1s"
            ) as op:
                (record,) = await eventually(lambda: records(op, "standing-binding-found", name))
                assert record["binding"]["kind"] == "ClusterRoleBinding"
                await Sweeps.of(op).one_passes()
                assert await w.admin.get(CLUSTER_ROLE_BINDINGS, name) is not None, "reported, not deleted"
                assert len(records(op, "standing-binding-found", name)) == 1
                assert not records(op, "standing-binding-removed", name)
            async with running_operator(
                cluster, sweep_mode="enforce", sweep_allowlist=others, enforce_cluster_bindings=True
            ) as op:
                await seconds_until_gone(w.admin, CLUSTER_ROLE_BINDINGS, name, None)
                assert records(op, "standing-binding-removed", name)
        finally:
            await w.admin.delete(CLUSTER_ROLE_BINDINGS, name)


async def test_labelling_a_namespace_enforced_sweeps_it_at_once(cluster: Cluster) -> None:
    async with world(cluster) as w:
        await pod_reader(w)
        await w.admin.create(ROLE_BINDINGS, binding("old-habit", w.target, [sa(w.ci, "deployer")]))
        settings: dict[str, Any] = {
            "sweep_mode": "enforce",
            "sweep_allowlist": "zsp-requester-*",
            "resync": "1s",
        }
        async with running_operator(cluster, wrap=Sweeps, **settings) as op:
            sweeps = Sweeps.of(op)
            await sweeps.one_passes()
            assert await w.admin.get(ROLE_BINDINGS, "old-habit", w.target) is not None, "not enforced yet"
            async with sweeps.held():  # the namespace's watch event alone, no sweep
                await enforce(w)
                elapsed = await seconds_until_gone(w.admin, ROLE_BINDINGS, "old-habit", w.target)
                assert elapsed < WITHIN, f"removed after {elapsed:.2f}s"


@asynccontextmanager
async def sweeper_alone(cluster: Cluster, **settings: Any) -> AsyncIterator[Sweeper]:
    """The sweeper without kopf: no watch event ever reaches it, only its own sweeps."""
    async with await Kube.from_dict(cluster.kubeconfig(await operator_token(cluster))) as kube:
        observer = Observer(kube, AuditLog(utcnow, io.StringIO()), Metrics(), utcnow)
        sweeper = Sweeper(kube, observer, Settings(**settings), ClusterView(), lambda *_: None, OPERATOR_USER)
        await sweeper.start()
        try:
            yield sweeper
        finally:
            await sweeper.stop()


async def test_the_start_sweep_and_the_resync_catch_what_no_watch_reported(cluster: Cluster) -> None:
    async with world(cluster) as w:
        await enforce(w)
        await pod_reader(w)
        await w.admin.create(ROLE_BINDINGS, binding("before-start", w.target, [sa(w.ci, "deployer")]))
        settings = {"sweep_mode": SweepMode.ENFORCE, "sweep_allowlist": ["zsp-requester-*"]}
        async with sweeper_alone(cluster, resync=timedelta(seconds=1), **settings):
            assert await w.admin.get(ROLE_BINDINGS, "before-start", w.target) is None, "gone at start"
            await w.admin.create(ROLE_BINDINGS, binding("missed", w.target, [sa(w.ci, "deployer")]))
            elapsed = await seconds_until_gone(w.admin, ROLE_BINDINGS, "missed", w.target)
            assert elapsed < 2.0, f"the next resync should have removed it; still there after {elapsed:.2f}s"
        assert await w.admin.get(ROLE_BINDINGS, "zsp-requester-pipeline", w.target) is not None


# --- persistence-capable grants ------------------------------------------------------------------

READ_SECRETS = {
    "name": "read-secrets",
    "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
}


@pytest.mark.parametrize("allowed", [False, True], ids=["denied", "allowed-and-flagged"])
async def test_a_persistence_capable_request_needs_the_policys_consent(
    cluster: Cluster, allowed: bool
) -> None:
    policy = {"permissions": [READ_SECRETS], "allowPersistence": allowed}
    async with world(cluster, **policy) as w, running_operator(cluster) as op:
        await w.file(w.request("task-secrets", permission="read-secrets"))
        if not allowed:
            denied = await wait_for_phase(w.admin, w.target, "task-secrets", "Denied")
            assert "can outlive revocation" in denied["status"]["decision"]["reason"]
            assert "allowPersistence: true" in denied["status"]["decision"]["reason"]
            assert await w.admin.get(TASK_GRANTS, "task-secrets", w.target) is None
            return
        active = await wait_for_phase(w.admin, w.target, "task-secrets", "Active")
        assert active["status"]["persistenceCapable"] is True
        grant = await w.admin.get(TASK_GRANTS, "task-secrets", w.target)
        assert grant is not None
        assert grant["spec"]["persistenceCapable"] is True
        (issued,) = await eventually(
            lambda: [
                r
                for r in op.audit_records()
                if r["event"] == "issued" and r["request"]["name"] == "task-secrets"
            ]
        )
        assert issued.get("persistenceCapable") is True
        assert counted(op, "zsp_persistence_capable_grants_total", policy=w.policy) == 1

        report = await collect(w.admin, w.target)
        deployer = next(
            s for s in report.subjects if (s.subject.namespace, s.subject.name) == (w.ci, "deployer")
        )
        assert deployer.persistence_capable_grant
        assert not deployer.standing, "a grant is not standing privilege, however risky"
        (finding,) = deployer.bindings
        assert (finding.state.value, finding.grant) == ("granted", f"{w.target}/task-secrets")


async def test_zsp_audit_on_a_live_cluster_tells_granted_orphaned_and_standing_apart(
    cluster: Cluster,
) -> None:
    async with world(cluster) as w:
        async with running_operator(cluster):
            await w.file(w.request("task-1"))
            await wait_for_phase(w.admin, w.target, "task-1", "Active")
        granted = (await live_binding(w, "task-1"))["metadata"]["name"]
        await pod_reader(w)
        orphan = {c.LABEL_MANAGED_BY: c.OPERATOR_NAME, c.LABEL_GRANT: "gone", c.LABEL_GRANT_UID: "uid-gone"}
        await w.admin.create(
            ROLE_BINDINGS, binding("leftover", w.target, [sa(w.ci, "deployer")], labels=orphan)
        )
        await w.admin.create(ROLE_BINDINGS, binding("standing", w.target, [sa(w.ci, "deployer")]))

        report = await collect(w.admin, w.target)
        deployer = next(
            s for s in report.subjects if (s.subject.namespace, s.subject.name) == (w.ci, "deployer")
        )
        states = {f.binding.name: f.state.value for f in deployer.bindings}
        assert states == {granted: "granted", "leftover": "orphaned", "standing": "standing"}
        assert deployer.standing
        pipeline = next(
            s for s in report.subjects if (s.subject.namespace, s.subject.name) == (w.ci, "pipeline")
        )
        assert {f.binding.name: f.state.value for f in pipeline.bindings} == {
            "zsp-requester-pipeline": "standing"
        }
