"""The watch cache: what it keeps, how it indexes the operator's objects, what it refuses to forget."""

from __future__ import annotations

from typing import Any

import pytest

from zsp_operator.core import constants as c
from zsp_operator.engine.cache import ObjectCache, RequestCache
from zsp_operator.kube.resources import ROLE_BINDINGS, ROLES, SERVICE_ACCOUNTS


def obj(name: str, namespace: str = "pay", *, grant: str | None = None, rv: str = "1", **fields: Any) -> dict:
    labels = {c.LABEL_MANAGED_BY: c.OPERATOR_NAME, c.LABEL_GRANT_UID: grant} if grant else {}
    meta = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}",
        "resourceVersion": rv,
        "labels": labels,
    }
    return {"metadata": {**meta, "managedFields": [{"manager": "x"}]}, **fields}


def test_keeps_only_what_decisions_need_and_fills_in_the_kind() -> None:
    cache = ObjectCache()
    cache.put(ROLE_BINDINGS, obj("rb", roleRef={"kind": "Role", "name": "r"}, subjects=[], status={"x": 1}))
    kept = cache.get(ROLE_BINDINGS, "pay", "rb")
    assert kept is not None
    assert kept["kind"] == "RoleBinding"
    assert kept["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert "managedFields" not in kept["metadata"]
    assert "status" not in kept
    assert kept["roleRef"] == {"kind": "Role", "name": "r"}


def test_indexes_the_operators_objects_by_grant_and_forgets_them_on_delete() -> None:
    cache = ObjectCache()
    cache.put(ROLE_BINDINGS, obj("a", grant="g1"))
    cache.put(ROLES, obj("a", grant="g1"))
    cache.put(ROLE_BINDINGS, obj("b", grant="g2"))
    cache.put(ROLE_BINDINGS, obj("hand-made"))
    assert [b["metadata"]["name"] for b in cache.of_grant(ROLE_BINDINGS, "g1")] == ["a"]
    assert cache.grant_uids() == {"g1", "g2"}
    assert sorted(b["metadata"]["name"] for b in cache.in_namespace(ROLE_BINDINGS, "pay")) == [
        "a",
        "b",
        "hand-made",
    ]
    cache.event(ROLE_BINDINGS, "DELETED", obj("a", grant="g1"))
    assert cache.of_grant(ROLE_BINDINGS, "g1") == []
    assert cache.grant_uids() == {"g1", "g2"}  # its Role is still there
    cache.drop(ROLES, "pay", "a")
    assert cache.grant_uids() == {"g2"}


def test_bindings_are_found_by_the_role_they_name() -> None:
    cache = ObjectCache()
    cache.put(ROLE_BINDINGS, obj("a", roleRef={"kind": "Role", "name": "r1"}))
    cache.put(ROLE_BINDINGS, obj("b", roleRef={"kind": "Role", "name": "r2"}))
    cache.put(ROLE_BINDINGS, obj("c", roleRef={"kind": "ClusterRole", "name": "r1"}))
    assert [b["metadata"]["name"] for b in cache.bound_to_role("pay", "r1")] == ["a"]
    cache.put(ROLE_BINDINGS, obj("a", rv="2", roleRef={"kind": "Role", "name": "r2"}))
    assert cache.bound_to_role("pay", "r1") == []
    assert sorted(b["metadata"]["name"] for b in cache.bound_to_role("pay", "r2")) == ["a", "b"]


def test_relabelling_moves_an_object_between_grants() -> None:
    cache = ObjectCache()
    cache.put(ROLE_BINDINGS, obj("a", grant="g1"))
    cache.put(ROLE_BINDINGS, obj("a", grant="g2", rv="2"))
    assert cache.of_grant(ROLE_BINDINGS, "g1") == []
    assert len(cache.of_grant(ROLE_BINDINGS, "g2")) == 1


def test_a_delete_of_a_replaced_object_does_not_drop_the_replacement() -> None:
    cache = ObjectCache()
    cache.put(ROLE_BINDINGS, {**obj("a"), "metadata": {**obj("a")["metadata"], "uid": "new"}})
    cache.drop(ROLE_BINDINGS, "pay", "a", uid="old")
    assert cache.get(ROLE_BINDINGS, "pay", "a") is not None


def test_only_the_service_accounts_the_operator_minted_are_kept() -> None:
    cache = ObjectCache()
    cache.put(SERVICE_ACCOUNTS, obj("default"))
    cache.put(SERVICE_ACCOUNTS, obj("zsp-x", grant="g1"))
    assert cache.get(SERVICE_ACCOUNTS, "pay", "default") is None
    assert cache.get(SERVICE_ACCOUNTS, "pay", "zsp-x") is not None


def request(rv: str, phase_reason: str | None = None, *, uid: str = "r1") -> dict[str, Any]:
    conditions = []
    if phase_reason == "Issued":
        conditions = [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Issued",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ]
    elif phase_reason is not None:
        conditions = [
            {
                "type": "Ready",
                "status": "False",
                "reason": phase_reason,
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ]
    return {
        "metadata": {"name": "req", "namespace": "pay", "uid": uid, "resourceVersion": rv},
        "status": {"conditions": conditions},
    }


@pytest.mark.parametrize(
    ("bodies", "kept_rv"),
    [
        pytest.param([request("5"), request("7")], "7", id="newer-replaces"),
        pytest.param([request("7"), request("5")], "7", id="a-trailing-event-does-not-go-back"),
        pytest.param([request("7"), request("5", uid="r2")], "5", id="a-new-object-of-that-name-replaces"),
        pytest.param([request("5", "Issued"), request("9", "Completed")], None, id="terminal-is-forgotten"),
        pytest.param(
            [request("9", "Completed"), request("5", "Issued")], None, id="a-terminal-request-stays-ended"
        ),
    ],
)
def test_request_cache_keeps_the_newest_in_flight_body(
    bodies: list[dict[str, Any]], kept_rv: str | None
) -> None:
    cache = RequestCache()
    for body in bodies:
        cache.put(body)
    uid = bodies[-1]["metadata"]["uid"]
    kept = cache.get("pay", "req", uid)
    assert (kept["metadata"]["resourceVersion"] if kept else None) == kept_rv


def test_a_request_seen_terminal_is_remembered_as_ended() -> None:
    cache = RequestCache()
    cache.put(request("9", "Expired"))
    assert cache.ended("r1")
    assert not cache.ended("r2")


def test_request_cache_gives_a_fresh_copy_each_time_without_managed_fields() -> None:
    cache = RequestCache()
    sent = request("5")
    sent["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    cache.put(sent)
    first = cache.get("pay", "req", "r1")
    assert first is not None
    assert "managedFields" not in first["metadata"]
    assert first == {**sent, "metadata": {k: v for k, v in sent["metadata"].items() if k != "managedFields"}}
    first["status"] = {"phase": "Changed"}
    assert cache.get("pay", "req", "r1") != first  # the change stayed with the caller
    assert cache.get("pay", "req", "other-uid") is None
