"""Stories: two replicas, one Lease — exactly one acts, and a standby takes over in time.

Each replica runs as the operator's own ServiceAccount, whose Role may read and renew
only the `zsp-operator` Lease in zsp-system.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harness import eventually, operator_token, replica, token_for, wait_for_phase
from tiers import Cluster
from world import deployer_can_patch, deployer_refused, world
from zsp_operator.core.lease import LeaseRecord
from zsp_operator.kube import Kube, NotFound
from zsp_operator.kube.resources import LEASES, MUTATING_WEBHOOKS
from zsp_operator.process.leader import LeaderElector, LeadershipLost

NAMESPACE, NAME = "zsp-system", "zsp-operator"
# Short terms so a story sees a whole takeover; the defaults are 15s / 10s / 2s.
ELECTED: dict[str, Any] = {
    "leader_elect": True,
    "lease_namespace": NAMESPACE,
    "lease_duration": "3s",
    "renew_deadline": "2s",
    "retry_period": "1s",
}


async def holder(admin: Kube) -> str | None:
    body = await admin.get(LEASES, NAME, NAMESPACE)
    return LeaseRecord.from_spec((body or {}).get("spec")).holder


async def forget_lease(admin: Kube) -> None:
    """Each story starts with no Lease: an earlier one may have left an intruder in it."""
    with contextlib.suppress(NotFound):
        await admin.delete(LEASES, NAME, NAMESPACE)


async def test_one_replica_acts_and_a_standby_takes_over_before_the_grant_expires(
    cluster: Cluster,
) -> None:
    async with world(cluster) as w:
        await forget_lease(w.admin)
        first_run = replica(cluster, **ELECTED)
        first = await first_run.__aenter__()
        try:
            leader = await holder(w.admin)
            assert leader, "the first replica holds the Lease"
            served_by_leader = await webhook_urls(w.admin)
            async with replica(cluster, ready=False, **ELECTED) as second:
                # The standby answers admission too (with --dev it points the webhooks at
                # itself); only the Lease holder acts on what is admitted.
                await eventually(lambda: _changed(w.admin, served_by_leader))
                deployer = await token_for(w.admin, w.ci, "deployer")
                await w.file(w.request("handover", ttl="6s"))
                await wait_for_phase(w.admin, w.target, "handover", "Active")
                assert await deployer_can_patch(w, deployer) is True
                assert [r["event"] for r in first.records_for("handover", w.target)][-1] == "issued"
                assert second.audit_records() == [], "the standby did nothing at all"
                assert await holder(w.admin) == leader, "the standby never took the Lease"

                # The leader leaves cleanly (a rolling update): it lets go of the Lease,
                # and the standby revokes the grant on time.
                await first_run.__aexit__(None, None, None)
                first_run = None
                await eventually(lambda: _held_by_other(w.admin, leader), within=5)
                expired = await wait_for_phase(w.admin, w.target, "handover", "Expired", within=15)
                assert await eventually(lambda: deployer_refused(w, deployer)), "refused once revoked"
                # The audit record follows the request's status: it is written once the
                # revocation's bookkeeping is done (the finalizer released), a call later.
                (revoked,) = await eventually(
                    lambda: [r for r in second.records_for("handover", w.target) if r["event"] == "revoked"]
                )
                assert revoked["endReason"] == "Expired"
                assert revoked["lagSeconds"] == expired["status"]["revocationLagSeconds"]
                assert not [r for r in first.records_for("handover", w.target) if r["event"] == "revoked"]
        finally:
            if first_run is not None:
                await first_run.__aexit__(None, None, None)
            await forget_lease(w.admin)


async def test_a_leader_whose_lease_is_taken_steps_down(cluster: Cluster) -> None:
    async with world(cluster) as w:
        await forget_lease(w.admin)
        running = replica(cluster, **ELECTED)
        leader = await running.__aenter__()
        try:
            body = await w.admin.get(LEASES, NAME, NAMESPACE)
            assert body is not None
            now = datetime.now(UTC)
            await w.admin.replace(
                LEASES, {**body, "spec": LeaseRecord("intruder", 30, now, now, 1).to_spec()}
            )
            await eventually(leader.task.done, within=10)
            assert await holder(w.admin) == "intruder", "stepping down leaves the Lease alone"
        finally:
            with pytest.raises(LeadershipLost, match="intruder"):
                await running.__aexit__(None, None, None)
            await forget_lease(w.admin)


async def test_two_candidates_racing_for_a_free_lease_never_both_win(cluster: Cluster) -> None:
    async with world(cluster) as w:
        await forget_lease(w.admin)
        kubes = [await Kube.from_dict(cluster.kubeconfig(await operator_token(cluster))) for _ in range(2)]
        try:
            terms = {"duration": timedelta(seconds=30), "renew_deadline": timedelta(seconds=20)}
            electors = [
                LeaderElector(
                    kube, NAMESPACE, NAME, f"candidate-{i}", retry_period=timedelta(seconds=1), **terms
                )
                for i, kube in enumerate(kubes)
            ]
            for _ in range(3):  # create, then renew-or-refuse, twice
                won = await asyncio.gather(*(e.try_once() for e in electors))
                assert sorted(won) == [False, True]
            winner = electors[won.index(True)].identity
            assert await holder(w.admin) == winner
            body = await w.admin.get(LEASES, NAME, NAMESPACE)
            assert body is not None
            assert LeaseRecord.from_spec(body["spec"]).transitions == 0, "nobody took over"
        finally:
            for kube in kubes:
                await kube.close()
            await forget_lease(w.admin)


async def webhook_urls(admin: Kube) -> list[str]:
    body = await admin.get(MUTATING_WEBHOOKS, "zsp.dev")
    return [hook["clientConfig"].get("url", "") for hook in (body or {}).get("webhooks") or []]


async def _changed(admin: Kube, before: list[str]) -> bool:
    now = await webhook_urls(admin)
    return bool(now) and now != before


async def _held_by_other(admin: Kube, leader: str) -> bool:
    return (await holder(admin)) not in (None, leader)
