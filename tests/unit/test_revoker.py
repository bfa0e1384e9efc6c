"""The revoker: the privilege goes first, the bookkeeping follows, and it never gives up.

Covered, at the `Kube` interface with the loop's clock fast-forwarded: a revocation deletes
the RoleBinding by uid first, then marks the TaskGrant for deletion (uid precondition),
deletes the ServiceAccount, the Role and the delivery Secret by uid, records the end on the
request with its resourceVersion, and releases the finalizer last; the request's revokedAt
(and, at expiry, the lag) is when the binding went, not when the bookkeeping finished. A
failing step, whatever the error, is retried with a backoff that stays under the
retryable step, for as long as it fails, without cutting the binding again or writing the
end twice. `mark_cut` skips the cut; a second `revoke_soon` or `finish_soon` joins the
running revocation (`in_progress`). `finish_soon` finishes a TaskGrant someone else marked
for deletion, with the reason re-derived; a grant that never went live only loses its
finalizer; `discard_soon` removes a grant without reporting an end.

Behind the cuts: while another grant's binding is being cut, no bookkeeping starts and the
one under way pauses before its next step; a burst cuts every binding before any bookkeeping,
which then runs `concurrency` at a time in the order the bindings went; a cut waiting to retry
holds nothing back; stop() cancels the waiting bookkeeping and reports nothing, and a
restart finds the grant unmarked and revokes it again; the drain rate the scheduler leads by
counts cuts only while cuts queue, not while bookkeeping does. `FollowUps` admits in order,
a bounded number at a time, never while cuts are pending (noticed without a poke), and gives
back the place and the slot of a cancelled waiter.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from recording_kube import Call, ManualClock, RecordingKube

from zsp_operator.core import constants as c
from zsp_operator.core import lifecycle
from zsp_operator.core.lifecycle import Decided, Issued
from zsp_operator.core.models import (
    AccessRequestStatus,
    NamespacedName,
    ObjectRef,
    TaskGrant,
    format_time,
)
from zsp_operator.engine.cache import ObjectCache
from zsp_operator.engine.grant_objects import GrantService
from zsp_operator.engine.revoker import FollowUps, Revoker
from zsp_operator.engine.status_writer import StatusWriter
from zsp_operator.engine.view import ClusterView
from zsp_operator.kube import Forbidden, KubeError
from zsp_operator.kube.resources import (
    ACCESS_REQUESTS,
    ROLE_BINDINGS,
    ROLES,
    SECRETS,
    SERVICE_ACCOUNTS,
    TASK_GRANTS,
)
from zsp_operator.observe.observer import Observer
from zsp_operator.settings import Settings

pytestmark = pytest.mark.looptime

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NS = "payments"
GRANT_UID = "grant-1"
OBJECT = "zsp-deploy-1"  # the grant's ServiceAccount, Role and RoleBinding
SECRET_NS, SECRET = "ci", "deploy-kubeconfig"
# What the grant created, in the order issuance recorded it (not the order teardown follows).
CREATED = (
    (SERVICE_ACCOUNTS, NS, OBJECT, "sa-1"),
    (ROLES, NS, OBJECT, "role-1"),
    (ROLE_BINDINGS, NS, OBJECT, "rb-1"),
    (SECRETS, SECRET_NS, SECRET, "secret-1"),
)

CUT = ("delete", "RoleBinding")
MARK = ("delete", "TaskGrant")
TEARDOWN = [("delete", "ServiceAccount"), ("delete", "Role"), ("delete", "Secret")]
END = ("patch/status", "AccessRequest")
RELEASE = ("patch", "TaskGrant")
REVOCATION = [CUT, MARK, *TEARDOWN, END, RELEASE]
WITHIN = 24 * 3600.0  # loop seconds (fast-forwarded) a revocation may take


class Told(Observer):
    """What the revoker reported: errors by kind, and each end."""

    def __init__(self) -> None:  # no audit log, metrics or Events: only what is said
        self.errors: list[str] = []
        self.ends: list[tuple[str, str, float | None, AccessRequestStatus | None]] = []

    def error(self, kind: str) -> None:
        self.errors.append(kind)

    async def revoked(
        self,
        grant: TaskGrant,
        reason: str,
        message: str,
        lag: float | None,
        token_credential_id: str | None,
        request_status: AccessRequestStatus | None = None,
    ) -> None:
        self.ends.append((grant.metadata.uid, reason, lag, request_status))


def created(n: int = 1) -> tuple[tuple[Any, str, str, str], ...]:
    """What grant `n` created (grant 1: `CREATED`)."""
    if n == 1:
        return CREATED
    return tuple(
        (
            res,
            ns,
            name.replace("-1", f"-{n}") if res is not SECRETS else f"{name}-{n}",
            uid.replace("-1", f"-{n}"),
        )
        for res, ns, name, uid in CREATED
    )


def grant_body(
    *, expires_at: datetime, deleting: bool = False, ready: dict[str, Any] | None = None, n: int = 1
) -> dict[str, Any]:
    """Grant `n` (grant 1: deploy-1, uid grant-1) of request `n`."""
    metadata: dict[str, Any] = {
        "name": f"deploy-{n}",
        "namespace": NS,
        "uid": f"grant-{n}",
        "finalizers": [c.FINALIZER],
    }
    if deleting:
        metadata["deletionTimestamp"] = format_time(T0)
    secret = created(n)[3][2]
    return {
        "metadata": metadata,
        "spec": {
            "request": {"name": f"deploy-{n}", "uid": f"req-{n}"},
            "policy": "ci-deployers",
            "mode": "ephemeral",
            "identity": {"namespace": NS, "name": f"zsp-deploy-{n}"},
            "expiresAt": format_time(expires_at),
            "delivery": {"namespace": SECRET_NS, "secretName": secret},
        },
        "status": {
            "objects": [
                {"apiVersion": res.api_version, "kind": res.kind, "name": name, "namespace": ns, "uid": uid}
                for res, ns, name, uid in created(n)
            ],
            "conditions": [ready] if ready else [],
        },
    }


def active_request(expires_at: datetime, n: int = 1) -> dict[str, Any]:
    status = AccessRequestStatus()
    for event in (
        Decided("allowed", "policy ci-deployers allows deploy", "ci-deployers", None),
        Issued(
            ObjectRef(name=f"deploy-{n}", uid=f"grant-{n}"),
            NamespacedName(namespace=NS, name=f"zsp-deploy-{n}"),
            T0,
            expires_at,
        ),
    ):
        status = lifecycle.apply(status, event, T0, 1)
    return {
        "metadata": {"name": f"deploy-{n}", "namespace": NS, "uid": f"req-{n}", "generation": 1},
        "spec": {"reason": "deploy build 4711"},
        "status": status.to_wire(),
    }


@dataclass
class Rig:
    kube: RecordingKube
    clock: ManualClock
    told: Told
    view: ClusterView
    revoker: Revoker
    grant: TaskGrant
    request_version: str  # the request's resourceVersion before the revocation
    started: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def writes(self) -> list[tuple[str, str, str, str | None]]:
        """(verb, kind, name, precondition: the uid of a delete, the resourceVersion of a patch)."""
        return [(w.verb, w.kind, w.name, w.uid or w.resource_version) for w in self.kube.writes()]

    def request_status(self) -> AccessRequestStatus:
        body = self.kube.stored(ACCESS_REQUESTS, "deploy-1", NS)
        assert body is not None
        return AccessRequestStatus.model_validate(body["status"])

    def left(self) -> set[str]:
        """Kinds still stored, the request aside."""
        return {kind for kind, _, _ in self.kube.objects} - {"AccessRequest"}


async def rig(
    *, expires_at: datetime = T0 + timedelta(minutes=10), deleting: bool = False, **grant: Any
) -> Rig:
    clock = ManualClock(T0)

    def one_second_per_write(_: Call) -> None:
        clock.advance(1)  # so each timestamp tells which write it followed

    kube = RecordingKube(on_write=one_second_per_write)
    body = kube.add(TASK_GRANTS, grant_body(expires_at=expires_at, deleting=deleting, **grant))
    for res, ns, name, uid in CREATED:
        labels = {c.LABEL_GRANT_UID: GRANT_UID, c.LABEL_MANAGED_BY: c.OPERATOR_NAME}
        kube.add(res, {"metadata": {"name": name, "namespace": ns, "uid": uid, "labels": labels}})
    request = kube.add(ACCESS_REQUESTS, active_request(expires_at))
    told, view = Told(), ClusterView()
    grant_obj = view.put_grant(body)
    assert grant_obj is not None
    grants = GrantService(kube, Settings(), clock, ObjectCache())
    revoker = Revoker(grants, StatusWriter(kube, clock), told, view, clock)
    return Rig(kube, clock, told, view, revoker, grant_obj, request["metadata"]["resourceVersion"])


def ready(status: AccessRequestStatus) -> tuple[str, str, str] | None:
    cond = lifecycle.condition(status.conditions, c.COND_READY)
    return (cond.status, cond.reason, cond.message) if cond is not None else None


def first_successes(calls: list[Call]) -> list[tuple[str, str]]:
    """Each write step once, in the order it first succeeded."""
    seen: list[tuple[str, str]] = []
    for call in calls:
        if call.error is None and call.step not in seen:
            seen.append(call.step)
    return seen


@pytest.mark.parametrize(
    ("reason", "starts_at_expiry", "lag"),
    [(c.REASON_REVOKED, False, None), (c.REASON_EXPIRED, True, 1.0)],
    ids=["revoked", "expired"],
)
async def test_the_binding_goes_first_and_the_finalizer_last(
    reason: str, starts_at_expiry: bool, lag: float | None
) -> None:
    r = await rig(expires_at=T0 if starts_at_expiry else T0 + timedelta(minutes=10))
    await asyncio.wait_for(r.revoker.revoke_soon(r.grant, reason, "why it ended"), WITHIN)
    assert r.writes() == [
        ("delete", "RoleBinding", OBJECT, "rb-1"),
        ("delete", "TaskGrant", "deploy-1", GRANT_UID),
        ("delete", "ServiceAccount", OBJECT, "sa-1"),
        ("delete", "Role", OBJECT, "role-1"),
        ("delete", "Secret", SECRET, "secret-1"),
        ("patch/status", "AccessRequest", "deploy-1", r.request_version),
        ("patch", "TaskGrant", "deploy-1", None),
    ]
    release = r.kube.writes()[-1].patch
    assert release == [
        {"op": "test", "path": "/metadata/uid", "value": "grant-1"},
        {"op": "test", "path": "/metadata/finalizers/0", "value": c.FINALIZER},
        {"op": "remove", "path": "/metadata/finalizers/0"},
    ]
    assert r.left() == set(), "the TaskGrant goes once its finalizer is released"
    status = r.request_status()
    assert ready(status) == ("False", reason, "why it ended")
    # When the binding went (the first write), not when the status was written (the sixth).
    assert status.revoked_at == r.started + timedelta(seconds=1)
    assert status.revocation_lag_seconds == lag
    assert [end[:3] for end in r.told.ends] == [(GRANT_UID, reason, lag)]
    assert r.told.ends[0][3] == status
    assert GRANT_UID not in r.view.grants
    assert r.revoker.has_ended(GRANT_UID)
    assert not r.revoker.in_progress(GRANT_UID)
    await r.revoker.stop()


def retryable_step(attempt: int) -> float:
    """The longest wait the revoker may take after failure `attempt` (0-based): 0.1 s doubling to 30 s."""
    return min(0.1 * 2.0**attempt, 30.0)


@pytest.mark.parametrize(
    ("step", "error", "times"),
    [
        (CUT, KubeError(500, "InternalError", "etcdserver: request timed out"), 3),
        (MARK, KubeError(0, "Unreachable", "connection refused"), 3),
        # Not the long permanent step: the privilege may still be live.
        (("delete", "Role"), Forbidden(403, "Forbidden", "cannot delete roles"), 3),
        (END, KubeError(503, "ServiceUnavailable", "apiserver is shutting down"), 3),
        (RELEASE, KubeError(500, "InternalError", "boom"), 3),
        (("delete", "ServiceAccount"), KubeError(500, "InternalError", "boom"), 40),
    ],
    ids=["cut", "mark", "teardown-403", "request-end", "release", "never-gives-up"],
)
async def test_a_failing_step_is_retried_with_backoff_until_it_succeeds(
    step: tuple[str, str], error: KubeError, times: int
) -> None:
    r = await rig()
    r.kube.fail(*step, *([error] * times))
    await asyncio.wait_for(r.revoker.revoke_soon(r.grant, c.REASON_REVOKED, "deleted"), WITHIN)

    attempts = [call for call in r.kube.writes() if call.step == step]
    assert [call.error is not None for call in attempts] == [True] * times + [False]
    assert r.told.errors == ["revoke"] * times
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    assert all(0 <= gap <= retryable_step(k) + 1e-3 for k, gap in enumerate(gaps)), gaps
    assert sum(gaps) > 0, "it waits between attempts"

    assert first_successes(r.kube.writes()) == REVOCATION
    assert r.kube.steps().count(CUT) == (times + 1 if step == CUT else 1), "the binding is cut once"
    assert r.kube.steps(failed=False).count(END) == 1, "the end is written once"
    assert r.kube.steps()[-1] == RELEASE
    assert r.left() == set()
    assert ready(r.request_status()) == ("False", c.REASON_REVOKED, "deleted")
    assert len(r.told.ends) == 1
    await r.revoker.stop()


async def test_a_grant_whose_binding_was_cut_at_start_skips_the_cut() -> None:
    r = await rig()
    r.revoker.mark_cut(GRANT_UID)
    await asyncio.wait_for(r.revoker.revoke_soon(r.grant, c.REASON_REVOKED, "deleted"), WITHIN)
    assert r.kube.steps() == [MARK, *TEARDOWN, END, RELEASE]
    # The privilege went before this revocation started.
    assert r.request_status().revoked_at == r.started
    await r.revoker.stop()


async def test_a_second_end_joins_the_running_revocation() -> None:
    r = await rig()
    gate = r.kube.hold(*MARK)
    first = r.revoker.revoke_soon(r.grant, c.REASON_EXPIRED, "the grant's TTL ran out")
    await asyncio.wait_for(gate.reached.wait(), WITHIN)
    assert r.revoker.in_progress(GRANT_UID)
    assert r.revoker.revoke_soon(r.grant, c.REASON_REVOKED, "deleted") is first
    marked = r.kube.stored(TASK_GRANTS, "deploy-1", NS)
    assert marked is not None
    assert r.revoker.finish_soon(marked, request_done=False) is first
    gate.opened.set()
    await asyncio.wait_for(first, WITHIN)
    assert not r.revoker.in_progress(GRANT_UID)
    assert r.kube.steps() == REVOCATION
    assert [end[1] for end in r.told.ends] == [c.REASON_EXPIRED]
    await r.revoker.stop()


READY_EXPIRED = {
    "type": c.COND_READY,
    "status": "False",
    "reason": c.REASON_EXPIRED,
    "message": "the grant's TTL ran out",
    "lastTransitionTime": format_time(T0),
}


@pytest.mark.parametrize(
    ("expires_in", "request_done", "recorded", "reason", "message"),
    [
        (timedelta(minutes=-1), False, None, c.REASON_EXPIRED, "the grant's TTL ran out"),
        (timedelta(minutes=5), True, None, c.REASON_COMPLETED, "spec.done was set: the task is finished"),
        (timedelta(minutes=5), False, None, c.REASON_REVOKED, "the TaskGrant was deleted"),
        # What the grant recorded before a restart wins over what holds now.
        (timedelta(minutes=5), True, READY_EXPIRED, c.REASON_EXPIRED, "the grant's TTL ran out"),
    ],
    ids=["expired", "done", "deleted", "recorded"],
)
async def test_a_grant_marked_for_deletion_is_finished_with_its_reason(
    expires_in: timedelta, request_done: bool, recorded: dict[str, Any] | None, reason: str, message: str
) -> None:
    r = await rig(expires_at=T0 + expires_in, deleting=True, ready=recorded)
    marked = r.kube.stored(TASK_GRANTS, "deploy-1", NS)
    assert marked is not None
    await asyncio.wait_for(r.revoker.finish_soon(marked, request_done), WITHIN)
    # Marked already: no second delete of the TaskGrant; the binding still goes first.
    assert r.kube.steps() == [CUT, *TEARDOWN, END, RELEASE]
    assert r.left() == set()
    status = r.request_status()
    assert ready(status) == ("False", reason, message)
    assert status.revoked_at == r.started + timedelta(seconds=4)  # after the teardown's four deletes
    assert status.revocation_lag_seconds is None
    assert [end[:3] for end in r.told.ends] == [(GRANT_UID, reason, None)]
    await r.revoker.stop()


async def test_a_grant_that_never_went_live_only_loses_its_finalizer() -> None:
    r = await rig(deleting=True)
    r.revoker.never_live(GRANT_UID)
    marked = r.kube.stored(TASK_GRANTS, "deploy-1", NS)
    assert marked is not None
    await asyncio.wait_for(r.revoker.finish_soon(marked, request_done=False), WITHIN)
    assert r.kube.steps() == [RELEASE]
    assert r.told.ends == []
    assert ready(r.request_status()) == ("True", c.REASON_ISSUED, "grant deploy-1 is live")
    await r.revoker.stop()


async def test_a_discarded_grant_is_removed_without_an_end() -> None:
    r = await rig()
    await asyncio.wait_for(r.revoker.discard_soon(r.grant), WITHIN)
    assert r.kube.steps() == [CUT, *TEARDOWN, MARK, RELEASE]
    assert r.left() == set()
    assert r.told.ends == []
    assert ready(r.request_status()) == ("True", c.REASON_ISSUED, "grant deploy-1 is live")
    await r.revoker.stop()


# -- the bookkeeping waits behind the cuts -------------------------------------------------------


class HeldCuts(GrantService):
    """Cuts of the grants named in `held` wait, before their first call, until their event is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held: dict[str, asyncio.Event] = {}

    def hold(self, n: int) -> asyncio.Event:
        return self.held.setdefault(f"deploy-{n}", asyncio.Event())

    async def cut_bindings(self, grant: TaskGrant) -> datetime:
        gate = self.held.get(grant.name)
        if gate is not None:
            await gate.wait()
        return await super().cut_bindings(grant)


@dataclass
class Many:
    kube: RecordingKube
    told: Told
    grants: HeldCuts
    revoker: Revoker
    granted: list[TaskGrant]

    def of(self, n: int) -> list[tuple[str, str]]:
        """The write steps of grant `n`, in order."""
        return [call.step for call in self.kube.writes() if self.grant_of(call) == n]

    def order(self, step: tuple[str, str] | None = None) -> list[tuple[str, int]]:
        """(kind, grant) of every write (or every `step`), in order: what went when."""
        return [
            (call.kind, self.grant_of(call))
            for call in self.kube.writes()
            if step is None or call.step == step
        ]

    def grant_of(self, call: Call) -> int:
        for n in range(1, len(self.granted) + 1):
            if call.name in {f"deploy-{n}", f"zsp-deploy-{n}", created(n)[3][2]}:
                return n
        raise AssertionError(f"{call} is of no grant")


def many(count: int, *, concurrency: int = 16) -> Many:
    clock = ManualClock(T0)
    kube = RecordingKube()
    view = ClusterView()
    granted = []
    for n in range(1, count + 1):
        body = kube.add(TASK_GRANTS, grant_body(expires_at=T0 + timedelta(minutes=10), n=n))
        labels = {c.LABEL_GRANT_UID: f"grant-{n}", c.LABEL_MANAGED_BY: c.OPERATOR_NAME}
        for res, ns, name, uid in created(n):
            kube.add(res, {"metadata": {"name": name, "namespace": ns, "uid": uid, "labels": labels}})
        kube.add(ACCESS_REQUESTS, active_request(T0 + timedelta(minutes=10), n))
        grant = view.put_grant(body)
        assert grant is not None
        granted.append(grant)
    told = Told()
    grants = HeldCuts(kube, Settings(), clock, ObjectCache())
    revoker = Revoker(grants, StatusWriter(kube, clock), told, view, clock, concurrency=concurrency)
    return Many(kube, told, grants, revoker, granted)


async def test_the_bookkeeping_waits_while_another_grant_is_being_cut() -> None:
    m = many(2)
    second_cut = m.grants.hold(2)
    first = m.revoker.revoke_soon(m.granted[0], c.REASON_REVOKED, "deleted")
    second = m.revoker.revoke_soon(m.granted[1], c.REASON_REVOKED, "deleted")
    await asyncio.sleep(60)
    # Grant 1's binding went; its TaskGrant, ServiceAccount, Role... wait for grant 2's cut.
    assert m.order() == [("RoleBinding", 1)]
    assert m.revoker.in_progress("grant-1")
    assert not first.done()
    second_cut.set()
    await asyncio.wait_for(asyncio.gather(first, second), WITHIN)
    assert m.order()[:2] == [("RoleBinding", 1), ("RoleBinding", 2)], "both cuts before any bookkeeping"
    # Each grant's steps in the revocation order.
    assert m.of(1) == REVOCATION
    assert m.of(2) == REVOCATION
    assert sorted(end[0] for end in m.told.ends) == ["grant-1", "grant-2"]
    assert m.kube.objects.keys() == {("AccessRequest", NS, "deploy-1"), ("AccessRequest", NS, "deploy-2")}
    await m.revoker.stop()


async def test_bookkeeping_under_way_pauses_before_its_next_step_while_a_cut_runs() -> None:
    m = many(2)
    marking = m.kube.hold(*MARK)
    first = m.revoker.revoke_soon(m.granted[0], c.REASON_REVOKED, "deleted")
    await asyncio.wait_for(marking.reached.wait(), WITHIN)  # grant 1 is marking its TaskGrant
    second_cut = m.grants.hold(2)
    second = m.revoker.revoke_soon(m.granted[1], c.REASON_REVOKED, "deleted")
    await asyncio.sleep(0)
    marking.opened.set()
    await asyncio.sleep(60)
    assert m.order() == [("RoleBinding", 1), ("TaskGrant", 1)], "grant 1's teardown waits for grant 2's cut"
    second_cut.set()
    await asyncio.wait_for(asyncio.gather(first, second), WITHIN)
    assert m.order()[:3] == [("RoleBinding", 1), ("TaskGrant", 1), ("RoleBinding", 2)]
    assert m.of(1) == REVOCATION
    assert m.of(2) == REVOCATION
    assert len(m.told.ends) == 2
    await m.revoker.stop()


async def test_a_burst_cuts_every_binding_before_the_bookkeeping_and_keeps_it_bounded() -> None:
    m = many(40, concurrency=4)
    cuts = asyncio.Event()  # one for all: every cut starts, then they go together
    for n in range(1, 41):
        m.grants.held[f"deploy-{n}"] = cuts
    marking = m.kube.hold(*MARK)
    tasks = [m.revoker.revoke_soon(grant, c.REASON_REVOKED, "deleted") for grant in m.granted]
    await asyncio.sleep(1)
    cuts.set()
    await asyncio.wait_for(marking.reached.wait(), WITHIN)
    await asyncio.sleep(1)
    assert [kind for kind, _ in m.order()[:40]] == ["RoleBinding"] * 40
    assert m.kube.steps().count(MARK) == 4, "four revocations' bookkeeping at a time"
    assert m.revoker.follow_ups.active == 4
    assert m.revoker.follow_ups.queued == 36
    marking.opened.set()
    await asyncio.wait_for(asyncio.gather(*tasks), WITHIN)
    for n in range(1, 41):
        assert m.of(n) == REVOCATION
    assert len(m.told.ends) == 40
    # The bookkeeping is admitted in the order the bindings went.
    assert [n for _, n in m.order(MARK)] == [n for _, n in m.order(CUT)]
    await m.revoker.stop()


async def test_expiries_waiting_for_a_scheduler_slot_are_cut_before_any_bookkeeping() -> None:
    m = many(3, concurrency=1)
    m.revoker.expiry.start()
    for grant in m.granted:
        m.revoker.expiry.arm(grant.metadata.uid, T0 - timedelta(seconds=1))  # due: one slot for three
    await asyncio.sleep(60)
    assert m.order(CUT) == [("RoleBinding", 1), ("RoleBinding", 2), ("RoleBinding", 3)]
    assert m.order()[:3] == m.order(CUT), "the bookkeeping waited while expiries waited for the slot"
    for n in (1, 2, 3):
        assert m.of(n) == REVOCATION
    assert [end[:2] for end in m.told.ends] == [(f"grant-{n}", c.REASON_EXPIRED) for n in (1, 2, 3)]
    await m.revoker.stop()


async def test_a_failing_cut_does_not_hold_the_bookkeeping_back_while_it_waits_to_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("zsp_operator.engine.revoker.backoff", lambda _failures: 10.0)
    m = many(2)
    m.kube.fail(*CUT, KubeError(500, "InternalError", "boom"))  # grant 1's cut: retried in 10 s
    second_cut = m.grants.hold(2)
    first = m.revoker.revoke_soon(m.granted[0], c.REASON_REVOKED, "deleted")
    second = m.revoker.revoke_soon(m.granted[1], c.REASON_REVOKED, "deleted")
    await asyncio.sleep(1)
    second_cut.set()
    await asyncio.wait_for(second, 1)  # grant 1 waits to retry its cut: nothing holds grant 2 back
    assert m.of(2) == REVOCATION
    assert not first.done()
    assert m.of(1) == [CUT]
    await asyncio.wait_for(first, WITHIN)
    assert m.of(1) == [CUT, *REVOCATION]
    await m.revoker.stop()


async def test_stop_cancels_the_waiting_bookkeeping_and_a_restart_finishes_it() -> None:
    m = many(2)
    second_cut = m.grants.hold(2)
    first = m.revoker.revoke_soon(m.granted[0], c.REASON_EXPIRED, "the grant's TTL ran out")
    second = m.revoker.revoke_soon(m.granted[1], c.REASON_EXPIRED, "the grant's TTL ran out")
    await asyncio.sleep(1)
    await asyncio.wait_for(m.revoker.stop(), WITHIN)
    assert first.cancelled()
    assert second.cancelled()
    assert not m.revoker.in_progress("grant-1")
    assert not m.revoker.in_progress("grant-2")
    assert m.revoker.follow_ups.active == 0
    assert m.revoker.follow_ups.queued == 0
    assert m.told.ends == [], "nothing reported for a revocation that did not finish"
    # Stopped between the cut and the mark: the grant is still there, unmarked, its binding gone.
    stored = m.kube.stored(TASK_GRANTS, "deploy-1", NS)
    assert stored is not None
    assert "deletionTimestamp" not in stored["metadata"]
    assert m.kube.stored(ROLE_BINDINGS, OBJECT, NS) is None
    # What a restart does with it (overdue: revoked through the scheduler; the cut finds it gone).
    second_cut.set()
    restarted = Revoker(
        m.grants, StatusWriter(m.kube, ManualClock(T0)), m.told, ClusterView(), ManualClock(T0)
    )
    await asyncio.wait_for(restarted.revoke_soon(m.granted[0], c.REASON_EXPIRED, "expired"), WITHIN)
    assert m.of(1) == [CUT, CUT, MARK, *TEARDOWN, END, RELEASE]
    assert [end[0] for end in m.told.ends] == ["grant-1"]
    await restarted.stop()


@pytest.mark.parametrize("cuts_together", [True, False], ids=["cuts-queue", "bookkeeping-queues"])
async def test_the_drain_rate_counts_cuts_only_while_cuts_queue(cuts_together: bool) -> None:
    m = many(40, concurrency=4)
    rates: list[float] = []
    m.revoker.expiry.record_drain_rate = rates.append  # type: ignore[method-assign]
    tasks = []
    if cuts_together:
        cuts = asyncio.Event()
        for n in range(1, 41):
            m.grants.held[f"deploy-{n}"] = cuts
        tasks = [m.revoker.revoke_soon(grant, c.REASON_REVOKED, "deleted") for grant in m.granted]
        await asyncio.sleep(0.1)
        cuts.set()
    else:
        # One cut at a time while many revocations wait to do their bookkeeping: no queue of cuts.
        marking = m.kube.hold(*MARK)
        for grant in m.granted:
            tasks.append(m.revoker.revoke_soon(grant, c.REASON_REVOKED, "deleted"))
            await asyncio.sleep(0.01)
        marking.opened.set()
    await asyncio.wait_for(asyncio.gather(*tasks), WITHIN)
    assert len(m.told.ends) == 40
    assert bool(rates) is cuts_together
    assert all(rate > 0 for rate in rates)
    await m.revoker.stop()


# -- the admission itself ----------------------------------------------------------------------


class Admission:
    def __init__(self, limit: int) -> None:
        self.pending = False
        self.gate = FollowUps(limit, lambda: self.pending)
        self.inside: list[str] = []
        self.most = 0
        self.release = asyncio.Event()

    async def work(self, name: str) -> None:
        async with self.gate.slot():
            self.inside.append(name)
            self.most = max(self.most, self.gate.active)
            await self.release.wait()


async def test_follow_ups_are_admitted_in_order_a_bounded_number_at_a_time() -> None:
    a = Admission(limit=2)
    tasks = [asyncio.create_task(a.work(str(k))) for k in range(5)]
    await asyncio.sleep(1)
    assert a.inside == ["0", "1"]
    assert a.gate.queued == 3
    a.release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), WITHIN)
    assert a.inside == ["0", "1", "2", "3", "4"]
    assert a.most == 2
    assert a.gate.active == 0


async def test_no_follow_up_starts_while_cuts_are_pending_even_unannounced() -> None:
    a = Admission(limit=2)
    a.pending = True
    a.release.set()
    task = asyncio.create_task(a.work("x"))
    await asyncio.sleep(1)
    assert a.inside == []
    assert a.gate.queued == 1
    a.pending = False  # no poke: the recheck finds it
    await asyncio.wait_for(task, 1)
    assert a.inside == ["x"]
    a.gate.close()


async def test_a_cancelled_follow_up_gives_its_place_and_its_slot_back() -> None:
    a = Admission(limit=1)
    a.pending = True
    queued = asyncio.create_task(a.work("queued"))
    admitted = asyncio.create_task(a.work("admitted"))
    await asyncio.sleep(0)
    queued.cancel()
    await asyncio.gather(queued, return_exceptions=True)
    assert a.gate.queued == 1
    a.pending = False
    a.gate.poke()  # admits "admitted", which is cancelled before it resumes
    admitted.cancel()
    await asyncio.gather(admitted, return_exceptions=True)
    assert a.gate.active == 0
    assert a.gate.queued == 0
    assert a.inside == []
    a.release.set()
    await asyncio.wait_for(a.work("later"), 1)
    assert a.inside == ["later"]
    a.gate.close()
