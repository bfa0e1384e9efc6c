"""Crash safety (every tier): an operator that dies between any two steps of issuing or
revoking leaves nothing behind once a new one is running.

Each story stops the operator while one API call hangs (what a crash looks like from the
cluster: work half done, nothing rolled back), starts a fresh operator, and checks the
outcome with the grantee's own token and the objects left in the cluster. Also covered: a
policy deleted while the operator was down revokes its grants at start.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator

import pytest
import yaml

from faults import FaultyKube
from harness import (
    can,
    eventually,
    managed_objects,
    running_operator,
    token_dies,
    token_for,
    wait_for_phase,
)
from tiers import Cluster
from world import World, world
from zsp_operator.kube import Kube
from zsp_operator.kube.resources import ACCESS_POLICIES, ACCESS_REQUESTS, SECRETS, TASK_GRANTS


@contextlib.asynccontextmanager
async def crashing_operator(cluster: Cluster, kind: str, verb: str) -> AsyncIterator[FaultyKube]:
    """An operator whose `verb` on `kind` never returns; leaving the block 'kills' it."""
    faulty: list[FaultyKube] = []

    def wrap(kube: Kube) -> Kube:
        faulty.append(FaultyKube(kube, kind, verb, mode="hang"))
        return faulty[0]

    async with running_operator(cluster, wrap=wrap):
        yield faulty[0]


async def nothing_left(w: World) -> bool:
    return await managed_objects(w.admin, [w.target, w.ci]) == []


ISSUE_STEPS = [
    pytest.param("ServiceAccount", "create", id="after-taskgrant"),
    pytest.param("Role", "create", id="after-serviceaccount"),
    pytest.param("RoleBinding", "create", id="after-role"),
    pytest.param("ServiceAccount", "create/token", id="after-rolebinding"),
    pytest.param("Secret", "create", id="after-token"),
    pytest.param("TaskGrant", "patch/status", id="after-secret"),
]


@pytest.mark.parametrize(("kind", "verb"), ISSUE_STEPS)
async def test_a_crash_during_issuance_resumes_and_leaves_nothing_behind(
    cluster: Cluster, kind: str, verb: str
) -> None:
    async with world(cluster) as w:
        async with crashing_operator(cluster, kind, verb) as faulty:
            await w.file(w.request("crash-1", ephemeral=True))
            await asyncio.wait_for(faulty.tripped.wait(), timeout=15)
        # A new operator takes over what the dead one left: the request was allowed and its
        # TaskGrant reserved, so the issuance resumes, reusing what the grant's uid marks as its own.
        async with running_operator(cluster):
            settled = await wait_for_phase(w.admin, w.target, "crash-1", "Active", "Failed")
            assert settled["status"]["phase"] == "Active", settled["status"]
            token = await _delivered_token(w, "crash-1")
            assert await can(cluster, token, "patch", "deployments", w.target, group="apps") is True
            await w.admin.patch(ACCESS_REQUESTS, "crash-1", {"spec": {"done": True}}, w.target)
            await wait_for_phase(w.admin, w.target, "crash-1", "Completed")
            await _nothing_left_eventually(w)
            assert await w.admin.get(TASK_GRANTS, "crash-1", w.target) is None


async def _nothing_left_eventually(w: World) -> None:
    try:
        await eventually(lambda: nothing_left(w))
    except AssertionError:
        left = await managed_objects(w.admin, [w.target, w.ci])
        request = await w.admin.get(ACCESS_REQUESTS, "crash-1", w.target)
        raise AssertionError(
            f"something of the grant remains: {left}; {(request or {}).get('status')}"
        ) from None


async def _delivered_token(w: World, name: str) -> str:
    secret = await w.admin.get(SECRETS, f"{name}-kubeconfig", w.ci)
    assert secret is not None
    config = yaml.safe_load(base64.b64decode(secret["data"]["kubeconfig"]))
    token: str = config["users"][0]["user"]["token"]
    return token


# The call the dead operator never finished, and whether the grantee's identity was gone by then
# (the ServiceAccount goes right after the binding and the TaskGrant's mark for deletion).
REVOKE_STEPS = [
    pytest.param("ServiceAccount", "delete", False, id="after-rolebinding-deleted"),
    pytest.param("Role", "delete", True, id="after-serviceaccount-deleted"),
    pytest.param("Secret", "delete", True, id="after-role-deleted"),
    pytest.param("TaskGrant", "delete", False, id="before-taskgrant-deleted"),
]


@pytest.mark.parametrize(("kind", "verb", "identity_gone"), REVOKE_STEPS)
async def test_a_crash_during_revocation_finishes_it_on_restart(
    cluster: Cluster, kind: str, verb: str, identity_gone: bool
) -> None:
    async with world(cluster) as w:
        async with crashing_operator(cluster, kind, verb) as faulty:
            await w.file(w.request("crash-2", ephemeral=True))
            await wait_for_phase(w.admin, w.target, "crash-2", "Active")
            token = await _delivered_token(w, "crash-2")
            await w.admin.patch(ACCESS_REQUESTS, "crash-2", {"spec": {"done": True}}, w.target)
            await asyncio.wait_for(faulty.tripped.wait(), timeout=15)
            # The binding went first: the privilege is already gone when the process dies.
            if identity_gone:
                await token_dies(cluster, token, "patch", "deployments", w.target, group="apps")
            else:
                allowed = await can(cluster, token, "patch", "deployments", w.target, group="apps")
                assert allowed is False, "the token still authenticates, and is refused"
        async with running_operator(cluster):
            done = await wait_for_phase(w.admin, w.target, "crash-2", "Completed")
            assert "spec.done" in done["status"]["endReason"]
            assert await eventually(lambda: nothing_left(w))
            assert await eventually(lambda: _grant_gone(w, "crash-2"))


async def _grant_gone(w: World, name: str) -> bool:
    return await w.admin.get(TASK_GRANTS, name, w.target) is None


async def test_a_policy_deleted_while_the_operator_was_down_revokes_at_start(cluster: Cluster) -> None:
    async with world(cluster) as w:
        async with running_operator(cluster):
            await w.file(w.request("orphaned-by-policy"))
            await wait_for_phase(w.admin, w.target, "orphaned-by-policy", "Active")
        deployer = await token_for(w.admin, w.ci, "deployer")
        assert await can(cluster, deployer, "patch", "deployments", w.target, group="apps") is True
        await w.admin.delete(ACCESS_POLICIES, w.policy)
        async with running_operator(cluster):
            revoked = await wait_for_phase(w.admin, w.target, "orphaned-by-policy", "Revoked")
            assert w.policy in revoked["status"]["endReason"]
            assert await eventually(lambda: _refused(cluster, deployer, w))


async def _refused(cluster: Cluster, token: str, w: World) -> bool:
    return await can(cluster, token, "patch", "deployments", w.target, group="apps") is False
