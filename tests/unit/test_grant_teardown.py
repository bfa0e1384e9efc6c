"""Grant objects at teardown: found by record and by label, deleted by uid, finalizer released safely.

Covered, at the `Kube` interface: teardown deletes in the revocation order (RoleBinding,
ServiceAccount, Role, Secret) whatever order the grant recorded them in, each with its uid
as precondition, including objects only the watch cache knows by the grant's label (a crash
before the grant recorded them); a delivery Secret the grant never recorded is deleted only
after a JSON patch whose `test` proves it is the grant's, by the uid that answer gives, and
left alone when the test fails. Releasing the finalizer is a test-and-remove at its index;
when the list moved, one read and the patch again at the new index; a grant gone costs
nothing more; a same-named replacement keeps its finalizer (the patch tests the uid too).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from recording_kube import ManualClock, RecordingKube

from zsp_operator.core import constants as c
from zsp_operator.core.models import TaskGrant, format_time
from zsp_operator.engine.cache import ObjectCache
from zsp_operator.engine.grant_objects import GrantService
from zsp_operator.kube.resources import ROLE_BINDINGS, ROLES, SECRETS, SERVICE_ACCOUNTS, TASK_GRANTS, Resource
from zsp_operator.settings import Settings

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NS, GRANT_UID, OTHER_FINALIZER = "payments", "grant-1", "example.com/keep"
LABELS = {c.LABEL_GRANT_UID: GRANT_UID, c.LABEL_MANAGED_BY: c.OPERATOR_NAME}


def grant(
    recorded: list[tuple[Resource, str, str, str]],
    *,
    delivery: bool = False,
    finalizers: list[str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "request": {"name": "deploy-1", "uid": "req-1"},
        "policy": "ci-deployers",
        "mode": "ephemeral",
        "identity": {"namespace": NS, "name": "zsp-deploy-1"},
        "expiresAt": format_time(T0 + timedelta(minutes=10)),
    }
    if delivery:
        spec["delivery"] = {"namespace": "ci", "secretName": "deploy-kubeconfig"}
    return {
        "metadata": {
            "name": "deploy-1",
            "namespace": NS,
            "uid": GRANT_UID,
            "finalizers": [c.FINALIZER] if finalizers is None else finalizers,
        },
        "spec": spec,
        "status": {
            "objects": [
                {"apiVersion": res.api_version, "kind": res.kind, "name": name, "namespace": ns, "uid": uid}
                for res, ns, name, uid in recorded
            ]
        },
    }


def obj(name: str, uid: str, namespace: str = NS, labels: dict[str, str] | None = None) -> dict[str, Any]:
    # Annotated like the operator's own objects (the delivery Secret carries its expiry).
    annotations = {"zsp.dev/expires-at": format_time(T0 + timedelta(minutes=10))}
    meta = {"name": name, "namespace": namespace, "uid": uid, "labels": labels or LABELS}
    return {"metadata": {**meta, "annotations": annotations}}


def service(kube: RecordingKube, cache: ObjectCache | None = None) -> GrantService:
    return GrantService(kube, Settings(), ManualClock(T0), cache or ObjectCache())


def deletes(kube: RecordingKube) -> list[tuple[str, str, str | None]]:
    return [(call.kind, call.name, call.uid) for call in kube.writes() if call.verb == "delete"]


async def test_teardown_follows_the_revocation_order_by_record_and_by_label() -> None:
    kube, cache = RecordingKube(), ObjectCache()
    recorded = [
        (SECRETS, "ci", "deploy-kubeconfig", "secret-1"),
        (ROLES, NS, "zsp-deploy-1", "role-1"),
        (SERVICE_ACCOUNTS, NS, "zsp-deploy-1", "sa-1"),
    ]
    for res, ns, name, uid in recorded:
        kube.add(res, obj(name, uid, ns))
    # Created just before a crash: the grant never recorded it, the watch cache has its label.
    kube.add(ROLE_BINDINGS, obj("zsp-deploy-1", "rb-1"))
    cache.put(ROLE_BINDINGS, obj("zsp-deploy-1", "rb-1"))
    grants = service(kube, cache)
    await grants.teardown(TaskGrant.model_validate(grant(recorded)))
    assert deletes(kube) == [
        ("RoleBinding", "zsp-deploy-1", "rb-1"),
        ("ServiceAccount", "zsp-deploy-1", "sa-1"),
        ("Role", "zsp-deploy-1", "role-1"),
        ("Secret", "deploy-kubeconfig", "secret-1"),
    ]
    assert set(kube.objects) == set()
    assert cache.of_grant(ROLE_BINDINGS, GRANT_UID) == []


@pytest.mark.parametrize(
    ("secret_labels", "deleted"),
    [(LABELS, True), ({c.LABEL_GRANT_UID: "someone-else"}, False), (None, False)],
    ids=["the grant's", "not the grant's", "never created"],
)
async def test_an_unrecorded_delivery_secret_is_deleted_only_once_proven_the_grants(
    secret_labels: dict[str, str] | None, deleted: bool
) -> None:
    kube = RecordingKube()
    if secret_labels is not None:
        kube.add(SECRETS, obj("deploy-kubeconfig", "secret-1", "ci", secret_labels))
    await service(kube).teardown(TaskGrant.model_validate(grant([], delivery=True)))
    proof = next(call for call in kube.calls if call.kind == "Secret")
    assert proof.verb == "patch"
    assert proof.patch[0] == {
        "op": "test",
        "path": "/metadata/labels/zsp.dev~1grant-uid",
        "value": GRANT_UID,
    }
    assert deletes(kube) == ([("Secret", "deploy-kubeconfig", "secret-1")] if deleted else [])
    assert (kube.stored(SECRETS, "deploy-kubeconfig", "ci") is None) == (deleted or secret_labels is None)


def finalizer_ops(at: int) -> list[dict[str, Any]]:
    path = f"/metadata/finalizers/{at}"
    return [
        {"op": "test", "path": "/metadata/uid", "value": GRANT_UID},
        {"op": "test", "path": path, "value": c.FINALIZER},
        {"op": "remove", "path": path},
    ]


@pytest.mark.parametrize(
    ("stored", "calls", "finalizers_left"),
    [
        # As the grant last saw it: one patch at index 0.
        ([c.FINALIZER, OTHER_FINALIZER], [("patch", finalizer_ops(0), False)], [OTHER_FINALIZER]),
        # Another finalizer came first meanwhile: the test fails (422), one read, index 1.
        (
            [OTHER_FINALIZER, c.FINALIZER],
            [("patch", finalizer_ops(0), True), ("get", None, False), ("patch", finalizer_ops(1), False)],
            [OTHER_FINALIZER],
        ),
        # Released already by someone: read once, nothing to do.
        ([OTHER_FINALIZER], [("patch", finalizer_ops(0), True), ("get", None, False)], [OTHER_FINALIZER]),
    ],
    ids=["in place", "moved", "gone"],
)
async def test_the_finalizer_is_released_where_it_is(
    stored: list[str], calls: list[tuple[str, Any, bool]], finalizers_left: list[str]
) -> None:
    kube = RecordingKube()
    kube.add(TASK_GRANTS, grant([], finalizers=stored))
    seen = TaskGrant.model_validate(grant([], finalizers=[c.FINALIZER, OTHER_FINALIZER]))
    await service(kube).release(seen)
    assert [(call.verb, call.patch, call.error is not None) for call in kube.calls] == calls
    body = kube.stored(TASK_GRANTS, "deploy-1", NS)
    assert body is not None
    assert body["metadata"]["finalizers"] == finalizers_left


async def test_a_grant_already_gone_is_released_without_a_read() -> None:
    kube = RecordingKube()
    await service(kube).release(TaskGrant.model_validate(grant([])))
    assert [(call.verb, call.error is not None) for call in kube.calls] == [("patch", True)]  # 404


async def test_a_same_named_replacement_keeps_its_finalizer() -> None:
    kube = RecordingKube()
    kube.add(TASK_GRANTS, {**grant([]), "metadata": {**grant([])["metadata"], "uid": "grant-2"}})
    await service(kube).release(TaskGrant.model_validate(grant([])))
    body = kube.stored(TASK_GRANTS, "deploy-1", NS)
    assert body is not None
    assert body["metadata"]["finalizers"] == [c.FINALIZER]
