"""The usage tracker: uses counted for the grants they were made under, one summary per ended grant.

It never stands in the way of a revocation: an ended grant takes late events for the settle
time, then its summary is written once (request status, audit record, metrics), retried
while the API server fails.
"""

from __future__ import annotations

import asyncio
import io
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zsp_operator.core.lifecycle import UsageObserved
from zsp_operator.core.models import AccessRequestStatus, TaskGrant, format_time
from zsp_operator.core.usage import Use
from zsp_operator.engine.status_writer import RequestRef
from zsp_operator.engine.usage import UsageTracker
from zsp_operator.engine.view import ClusterView
from zsp_operator.kube import KubeError
from zsp_operator.observe.auditlog import AuditLog
from zsp_operator.observe.metrics import Metrics
from zsp_operator.observe.observer import Observer

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
]


class FakeStatus:
    """Records each status transition; fails the first `failures` writes."""

    def __init__(self, failures: int = 0) -> None:
        self.written: list[tuple[RequestRef, Any]] = []
        self.failures = failures

    async def transition(self, ref: RequestRef, event: Any) -> AccessRequestStatus:
        if self.failures:
            self.failures -= 1
            raise KubeError(503, "ServiceUnavailable", "try again")
        self.written.append((ref, event))
        return AccessRequestStatus(revoked_at=NOW)


def grant(uid: str = "g1", sa: str = "zsp-read-1", jti: str | None = "jti-1") -> TaskGrant:
    status: dict[str, Any] = {"issuedAt": format_time(NOW)}
    if jti:
        status["tokenCredentialId"] = jti
    return TaskGrant.model_validate(
        {
            "metadata": {"name": f"read-{uid}", "namespace": "pay", "uid": uid},
            "spec": {
                "request": {"name": f"read-{uid}", "uid": f"req-{uid}"},
                "policy": "readers",
                "mode": "ephemeral" if jti else "bind",
                "identity": {"namespace": "pay", "name": sa},
                "rules": RULES,
                "expiresAt": format_time(NOW + timedelta(minutes=10)),
            },
            "status": status,
        }
    )


def use(
    verb: str = "get",
    resource: str = "pods",
    *,
    sa: str = "zsp-read-1",
    jti: str | None = "jti-1",
    group: str = "",
    seconds: float = 5,
    allowed: bool = True,
    audit_id: str = "",
) -> Use:
    return Use(
        audit_id=audit_id or f"{verb}-{resource}-{sa}-{seconds}",
        namespace_of_user="pay",
        name_of_user=sa,
        credential_id=jti,
        at=NOW + timedelta(seconds=seconds),
        verb=verb,
        group=group,
        resource=resource,
        subresource="",
        namespace="pay",
        name="",
        code=200 if allowed else 403,
        allowed=allowed,
    )


def tracker(status: FakeStatus, settle: float = 0.0) -> tuple[UsageTracker, ClusterView, Observer]:
    started = time.monotonic()

    def clock() -> datetime:  # NOW, then running as time does
        return NOW + timedelta(seconds=time.monotonic() - started)

    view = ClusterView()
    observer = Observer(None, AuditLog(clock, io.StringIO()), Metrics(), clock)
    return UsageTracker(view, status, observer, clock, timedelta(seconds=settle)), view, observer  # type: ignore[arg-type]


async def settled(status: FakeStatus, count: int = 1) -> None:
    for _ in range(200):
        if len(status.written) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} summaries expected, {len(status.written)} written")


def outcomes(observer: Observer) -> dict[str, float]:
    family = observer.metrics.audit_events
    return {o: family.labels(o)._value.get() for o in ("used", "denied", "unrelated", "repeated", "no-grant")}


async def test_a_grant_summary_counts_its_own_uses_and_lists_what_it_never_did() -> None:
    status = FakeStatus()
    usage, view, observer = tracker(status)
    live = grant()
    view.put_grant(live)
    usage.receive(
        [
            use("get"),
            use("get", seconds=6),
            use("list"),
            use("delete", allowed=False),
            use("create", "selfsubjectaccessreviews", group="authorization.k8s.io"),
            use("get", sa="someone-else", jti=None),
            use("get", jti="another-token"),
        ]
    )
    assert outcomes(observer) == {"used": 3, "denied": 1, "unrelated": 1, "repeated": 0, "no-grant": 2}
    view.drop_grant("g1")
    usage.grant_ended(live, AccessRequestStatus(revoked_at=NOW + timedelta(minutes=1)))
    usage.grant_ended(live, None)  # told twice: still one summary
    await settled(status)
    await asyncio.sleep(0.05)
    ((ref, event),) = status.written
    assert ref == RequestRef("read-g1", "pay", "req-g1")
    assert isinstance(event, UsageObserved)
    summary = event.summary
    assert [(u.verb, u.resource, u.count) for u in summary.used] == [("get", "pods", 2), ("list", "pods", 1)]
    assert [(d.verb, d.count) for d in summary.denied] == [("delete", 1)]
    assert [r.resources for r in summary.unused] == [["deployments"]]
    (record,) = [r for r in observer.audit.records if r["event"] == "used"]
    assert record["usage"] == summary.to_wire()
    assert observer.metrics.grants_with_unused_rules.labels("readers")._value.get() == 1
    assert observer.metrics.denied_during_grants.labels("readers")._value.get() == 1
    await usage.stop()


async def test_late_events_count_until_the_grant_settles_and_not_after() -> None:
    status = FakeStatus()
    usage, view, observer = tracker(status, settle=0.3)
    live = grant(jti=None)  # bound: its window is what decides
    view.put_grant(live)
    view.drop_grant("g1")
    usage.grant_ended(live, AccessRequestStatus(revoked_at=NOW + timedelta(seconds=30)))
    usage.receive(
        [use("get", jti=None, seconds=10), use("list", jti=None, seconds=40)]
    )  # in, then after the end
    assert outcomes(observer)["used"] == 1
    assert outcomes(observer)["no-grant"] == 1
    await settled(status)
    usage.receive([use("get", jti=None, seconds=11)])  # too late: summarized already
    assert outcomes(observer)["no-grant"] == 2
    assert [(u.verb, u.count) for u in status.written[0][1].summary.used] == [("get", 1)]
    await usage.stop()


async def test_an_unused_grant_records_every_rule_unused() -> None:
    status = FakeStatus()
    usage, _, _ = tracker(status)
    usage.grant_ended(grant(), None)
    await settled(status)
    summary = status.written[0][1].summary
    assert summary.used == [] and summary.events == 0  # noqa: PT018
    assert [r.resources for r in summary.unused] == [["pods"], ["deployments"]]  # core group first
    await usage.stop()


async def test_a_failing_status_write_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("zsp_operator.engine.usage.backoff", lambda attempt: 0.0)
    status = FakeStatus(failures=2)
    usage, _, _ = tracker(status)
    usage.grant_ended(grant(), None)
    await settled(status)
    assert len(status.written) == 1
    await usage.stop()
