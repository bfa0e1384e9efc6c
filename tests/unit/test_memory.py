"""Giving memory back: the view's compact grants, and when a trim is asked for.

Covered: a compacted grant is equal to the one parsed, dumps the same, shares its strings and
its models' field sets with other grants, and can still be changed; the GrantCountWatch trims
once after a large fall has settled (and once more later), not after a small one; the TLS read
buffer of new connections is lowered, never raised.
"""

from __future__ import annotations

import asyncio
from asyncio import sslproto
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zsp_operator.core.models import TaskGrant
from zsp_operator.engine import memory
from zsp_operator.engine.view import ClusterView, compact

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def body(uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "zsp.dev/v1alpha1",
        "kind": "TaskGrant",
        "metadata": {
            "name": f"g-{uid}",
            "namespace": "payments-staging",
            "uid": uid,
            "resourceVersion": "7",
            "labels": {"app.kubernetes.io/managed-by": "zsp-operator", "zsp.dev/request-uid": f"req-{uid}"},
            "finalizers": ["zsp.dev/revoke"],
        },
        "spec": {
            "request": {"name": f"r-{uid}", "uid": f"req-{uid}"},
            "policy": "ci-deployers",
            "mode": "bind",
            "identity": {"namespace": "ci", "name": "deployer"},
            "rules": [{"verbs": ["get", "list"], "apiGroups": ["apps"], "resources": ["deployments"]}],
            "requester": {
                "username": "system:serviceaccount:ci:pipeline",
                "groups": ["system:authenticated"],
            },
            "expiresAt": (NOW + timedelta(minutes=5)).isoformat(),
        },
        "status": {
            "objects": [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "Role",
                    "name": f"zsp-{uid}",
                    "uid": "x",
                }
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Issued",
                    "message": "privilege is live",
                    "lastTransitionTime": NOW.isoformat(),
                }
            ],
        },
    }


def test_a_compacted_grant_is_the_same_grant() -> None:
    parsed = TaskGrant.model_validate(body("a"))
    kept = compact(TaskGrant.model_validate(body("a")))
    assert kept == parsed
    assert kept.to_wire() == parsed.to_wire()
    assert kept.model_dump() == parsed.model_dump()


def test_compacted_grants_share_strings_and_field_sets() -> None:
    a = compact(TaskGrant.model_validate(body("a")))
    b = compact(TaskGrant.model_validate(body("b")))
    assert a.spec.policy is b.spec.policy
    assert a.spec.rules[0].verbs[0] is b.spec.rules[0].verbs[0]
    assert a.status.conditions[0].reason is b.status.conditions[0].reason
    assert a.spec.__pydantic_fields_set__ is b.spec.__pydantic_fields_set__


def test_a_compacted_grant_can_still_be_changed_and_copied() -> None:
    a = compact(TaskGrant.model_validate(body("a")))
    b = compact(TaskGrant.model_validate(body("b")))
    a.spec.policy = "other"
    assert b.spec.policy == "ci-deployers"
    copied = b.model_copy(update={"status": b.status.model_copy(update={"end_reason": "Expired"})})
    assert copied.status.end_reason == "Expired"
    assert b.status.end_reason is None


def test_the_view_keeps_grants_compact() -> None:
    view = ClusterView()
    view.put_grant(body("a"))
    view.put_grant(body("b"))
    assert view.grants["a"].spec.policy is view.grants["b"].spec.policy
    assert view.grants["a"] == TaskGrant.model_validate(body("a"))


@pytest.fixture
def releases(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(memory, "release", calls.append)
    monkeypatch.setattr(memory, "_QUIET", 0.01)
    monkeypatch.setattr(memory, "_AGAIN", 0.02)
    monkeypatch.setattr(memory, "_AFTER_START", 0.01)
    monkeypatch.setattr(memory, "_MIN_FALL", 10)
    return calls


async def test_memory_is_released_after_start_up_and_after_a_large_fall(releases: list[str]) -> None:
    live = [100]
    watch = memory.GrantCountWatch(lambda: live[0])
    watch.started()
    assert releases == ["start-up"]
    await asyncio.sleep(0.05)
    assert releases == ["start-up", "settled"]  # once the watches' first listings are handled
    live[0] = 95
    watch.changed()
    await asyncio.sleep(0.05)
    assert len(releases) == 2  # a small fall: nothing
    live[0] = 40
    watch.changed()
    await asyncio.sleep(0.1)
    assert releases == ["start-up", "settled", "settled", "settled"]  # settled, then once more later
    watch.stop()


async def test_a_fall_still_going_on_waits(releases: list[str]) -> None:
    live = [100]
    watch = memory.GrantCountWatch(lambda: live[0])
    watch.grew()
    for n in (40, 30, 20):
        live[0] = n
        watch.changed()
    await asyncio.sleep(0.015)
    assert releases == ["settled"]  # one trim for the whole fall
    watch.stop()


def test_tls_read_buffers_are_lowered_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", 256 * 1024)
    memory.limit_tls_buffers()
    assert sslproto.SSLProtocol.max_size == memory.TLS_READ_BUFFER
    memory.limit_tls_buffers(1024 * 1024)
    assert sslproto.SSLProtocol.max_size == memory.TLS_READ_BUFFER


def test_release_runs_anywhere() -> None:
    memory.release("test")  # glibc or not, it neither fails nor needs a loop
