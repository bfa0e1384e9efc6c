"""The status writer: one status write per transition, never over someone else's newer write.

Covered, at the `Kube` interface: a transition is one status patch carrying the
resourceVersion of the newest body known (the cache, else one read), and the answer becomes
that body, so the next transition needs no read either; several events make one write;
an event the phase does not accept writes nothing. A conflict costs exactly one fresh read,
and the event is applied again to what that read shows: kept alongside the other write,
dropped when the request already ended, nothing when a same-named request replaced it.
A request deleted before the write (404) is forgotten without a read; conflicts that never stop
give up with a retryable 409 rather than loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from recording_kube import ManualClock, RecordingKube

from zsp_operator.core import constants as c
from zsp_operator.core import lifecycle
from zsp_operator.core.lifecycle import ApprovalsChanged, Decided, Ended, Event, Issued
from zsp_operator.core.models import AccessRequestStatus, ApprovalRecord, NamespacedName, ObjectRef, Phase
from zsp_operator.engine.cache import RequestCache
from zsp_operator.engine.status_writer import RequestRef, StatusWriter
from zsp_operator.kube import Conflict, KubeError
from zsp_operator.kube.resources import ACCESS_REQUESTS

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REF = RequestRef("deploy-1", "payments", "req-1")

DECIDED = Decided("allowed", "policy ci-deployers allows deploy", "ci-deployers", None)
PENDING = Decided("pending", "needs one approval", "ci-deployers", None)
ISSUED = Issued(
    ObjectRef(name="deploy-1", uid="grant-1"),
    NamespacedName(namespace="ci", name="deployer"),
    T0,
    T0 + timedelta(minutes=10),
)
REVOKED = Ended("Revoked", "the TaskGrant was deleted", T0 + timedelta(minutes=1), None)
COMPLETED = Ended("Completed", "spec.done was set: the task is finished", T0, None)
APPROVAL = ApprovalRecord(username="alice", decision="approve", at=T0)


def status_after(*events: Event) -> AccessRequestStatus:
    status = AccessRequestStatus()
    for event in events:
        status = lifecycle.apply(status, event, T0, 1)
    return status


def request(status: AccessRequestStatus, uid: str = REF.uid) -> dict[str, Any]:
    return {
        "metadata": {"name": REF.name, "namespace": REF.namespace, "uid": uid, "generation": 1},
        "spec": {"reason": "deploy build 4711"},
        "status": status.to_wire(),
    }


def ready(status: AccessRequestStatus | None) -> tuple[str, str] | None:
    cond = lifecycle.condition(status.conditions, c.COND_READY) if status is not None else None
    return (cond.status, cond.reason) if cond is not None else None


@dataclass
class Rig:
    kube: RecordingKube
    cache: RequestCache
    writer: StatusWriter

    def stored_status(self) -> AccessRequestStatus:
        body = self.kube.stored(ACCESS_REQUESTS, REF.name, REF.namespace)
        assert body is not None
        return AccessRequestStatus.model_validate(body["status"])

    def calls(self) -> list[tuple[str, str | None, bool]]:
        """(verb, resourceVersion sent, refused) of each call, all on the request."""
        assert {(call.kind, call.name) for call in self.kube.calls} <= {("AccessRequest", REF.name)}
        return [(call.verb, call.resource_version, call.error is not None) for call in self.kube.calls]


def rig(status: AccessRequestStatus, *, cached: bool) -> Rig:
    kube = RecordingKube()
    stored = kube.add(ACCESS_REQUESTS, request(status))
    cache = RequestCache()
    if cached:
        cache.put(stored)
    return Rig(kube, cache, StatusWriter(kube, ManualClock(T0 + timedelta(minutes=1)), cache))


@pytest.mark.parametrize(
    ("cached", "first_calls"),
    [(True, []), (False, [("get", None, False)])],
    ids=["from the cache", "read once"],
)
async def test_each_transition_is_one_write_with_the_newest_resource_version(
    cached: bool, first_calls: list[tuple[str, str | None, bool]]
) -> None:
    r = rig(status_after(PENDING), cached=cached)
    approved = await r.writer.transition(REF, ApprovalsChanged((APPROVAL,), True, None, "approved by alice"))
    live = await r.writer.transition(REF, ISSUED)
    # The second write carries the version the first one's answer had: no read in between.
    assert r.calls() == [*first_calls, ("patch/status", "101", False), ("patch/status", "102", False)]
    assert approved is not None
    assert approved.phase == Phase.APPROVED
    assert live == r.stored_status()
    assert ready(live) == ("True", c.REASON_ISSUED)
    assert live.approvals == [APPROVAL]


async def test_several_events_are_written_once_in_order() -> None:
    r = rig(AccessRequestStatus(), cached=True)
    written = await r.writer.transitions(REF, (DECIDED, ISSUED))
    assert r.calls() == [("patch/status", "101", False)]
    assert written == r.stored_status()
    assert written.phase == Phase.ACTIVE
    approved = lifecycle.condition(written.conditions, c.COND_APPROVED)
    assert approved is not None
    assert approved.reason == c.REASON_POLICY_ALLOWS
    assert ready(written) == ("True", c.REASON_ISSUED)


async def test_an_event_the_phase_does_not_accept_writes_nothing() -> None:
    ended = status_after(DECIDED, ISSUED, COMPLETED)
    r = rig(status_after(DECIDED, ISSUED, COMPLETED), cached=False)
    assert await r.writer.transition(REF, REVOKED) == ended
    assert r.calls() == [("get", None, False)]


def other_write_adds_an_approval(body: dict[str, Any]) -> dict[str, Any]:
    body["status"]["approvals"] = [APPROVAL.to_wire()]
    return body


def other_write_ends_it(body: dict[str, Any]) -> dict[str, Any]:
    return request(status_after(DECIDED, ISSUED, COMPLETED))


def replaced_by_a_same_named_request(body: dict[str, Any]) -> dict[str, Any]:
    return request(status_after(DECIDED, ISSUED), uid="req-2")


@pytest.mark.parametrize(
    ("other_write", "second_write", "expected"),
    [
        # The fresh body gets the event: the other write's approvals stay.
        (other_write_adds_an_approval, True, ("False", "Revoked")),
        # The request ended meanwhile: its end is not overwritten.
        (other_write_ends_it, False, ("False", "Completed")),
        (replaced_by_a_same_named_request, False, None),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
async def test_a_conflict_costs_one_read_and_the_event_is_applied_to_it(
    other_write: Callable[[dict[str, Any]], dict[str, Any]],
    second_write: bool,
    expected: tuple[str, str] | None,
) -> None:
    r = rig(status_after(DECIDED, ISSUED), cached=True)  # cached at resourceVersion 101
    now = r.kube.stored(ACCESS_REQUESTS, REF.name, REF.namespace)
    assert now is not None
    changed = other_write(now)
    r.kube.add(ACCESS_REQUESTS, changed)  # resourceVersion 102
    result = await r.writer.transition(REF, REVOKED)
    retry = [("patch/status", "102", False)] if second_write else []
    assert r.calls() == [("patch/status", "101", True), ("get", None, False), *retry]
    assert ready(result) == expected
    if changed["metadata"]["uid"] == REF.uid:
        assert r.stored_status() == result
        assert r.stored_status().approvals == ([APPROVAL] if second_write else [])


async def test_a_request_deleted_before_the_write_is_forgotten() -> None:
    r = rig(status_after(DECIDED, ISSUED), cached=True)
    r.kube.objects.clear()
    assert await r.writer.transition(REF, REVOKED) is None
    assert r.calls() == [("patch/status", "101", True)]  # 404: no read, no retry
    assert r.cache.get(REF.namespace, REF.name) is None


async def test_conflicts_that_never_stop_give_up_with_a_retryable_409() -> None:
    r = rig(status_after(DECIDED, ISSUED), cached=True)
    r.kube.fail("patch/status", "AccessRequest", *(Conflict(409, "Conflict", "modified") for _ in range(50)))
    with pytest.raises(KubeError) as raised:
        await r.writer.transition(REF, REVOKED)
    assert raised.value.status == 409
    assert raised.value.retryable
    calls = r.calls()
    writes = [call for call in calls if call[0] == "patch/status"]
    assert 2 <= len(writes) < 50
    # Every retry is sent on a fresh read, never on the body the conflict refused.
    assert calls == [("patch/status", "101", True)] + [
        ("get", None, False),
        ("patch/status", "101", True),
    ] * (len(writes) - 1)
