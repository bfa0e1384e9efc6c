"""The view keeps its grant index current through put_grant, drop_grant and replace_all.

Covered: a grant put, replaced under the same uid (by a newer version, by one with a
deletionTimestamp, which stops it counting, by a revoked one), dropped, and a re-listing; an
unreadable grant changes nothing; `grants` is read-only. As a property (hypothesis): after any
sequence of those, the view's index equals one built from scratch from the view's grants.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zsp_operator.core.grantindex import GrantIndex
from zsp_operator.engine.view import ClusterView

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UIDS = ["uid-a", "uid-b", "uid-c"]


def body(
    uid: str = "uid-a",
    *,
    policy: str = "ci-deployers",
    identity: str = "deployer",
    deleting: bool = False,
    revoked: bool = False,
    expires_in: timedelta = timedelta(minutes=5),
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": uid.removeprefix("uid-"), "namespace": "payments-staging", "uid": uid}
    if deleting:
        metadata["deletionTimestamp"] = NOW.isoformat()
    return {
        "metadata": metadata,
        "spec": {
            "request": {"name": "r", "uid": f"req-{uid}"},
            "policy": policy,
            "mode": "bind",
            "identity": {"namespace": "ci", "name": identity},
            "requester": {"username": "system:serviceaccount:ci:pipeline"},
            "expiresAt": (NOW + expires_in).isoformat(),
        },
        "status": {"revokedAt": NOW.isoformat()} if revoked else {},
    }


def counted(view: ClusterView) -> tuple[int, int]:
    """(live grants held by ci/deployer, issued under ci-deployers) at NOW."""
    index = view.grant_index
    return len(index.held_by(("ci", "deployer"), NOW)), index.count_by_policy("ci-deployers", NOW)


def scratch(view: ClusterView) -> GrantIndex:
    index = GrantIndex()
    for uid, grant in view.grants.items():
        index.put(uid, grant)
    return index


STEPS: list[Any] = [
    pytest.param([body()], (1, 1), id="put"),
    pytest.param([body(), body(policy="other")], (1, 0), id="replaced-same-uid"),
    pytest.param([body(), body(identity="other")], (0, 1), id="replaced-other-identity"),
    pytest.param([body(), body(deleting=True)], (0, 0), id="gets-deletion-timestamp"),
    pytest.param([body(), body(revoked=True)], (0, 0), id="gets-revoked"),
    pytest.param([body(), body("uid-b")], (2, 2), id="two-grants"),
    pytest.param([body(), {"metadata": {"uid": "uid-a"}, "spec": {}}], (1, 1), id="unreadable-ignored"),
]


@pytest.mark.parametrize(("bodies", "expected"), STEPS)
def test_put_grant_keeps_counts(bodies: list[dict[str, Any]], expected: tuple[int, int]) -> None:
    view = ClusterView()
    for b in bodies:
        view.put_grant(b)
    assert counted(view) == expected
    assert view.grant_index == scratch(view)


def test_drop_and_replace_all() -> None:
    view = ClusterView()
    view.put_grant(body())
    view.put_grant(body("uid-b"))
    assert view.drop_grant("uid-a") is not None
    assert counted(view) == (1, 1)
    view.replace_all([], [], [body("uid-c"), body("uid-d", deleting=True)])
    assert list(view.grants) == ["uid-c", "uid-d"]
    assert [g.name for g in view.live_grants()] == ["c"]
    assert counted(view) == (1, 1)


def test_grants_is_read_only() -> None:
    view = ClusterView()
    view.put_grant(body())
    with pytest.raises(TypeError):
        view.grants["uid-b"] = view.grants["uid-a"]  # type: ignore[index]


bodies = st.builds(
    body,
    st.sampled_from(UIDS),
    policy=st.sampled_from(["ci-deployers", "other"]),
    identity=st.sampled_from(["deployer", "other"]),
    deleting=st.booleans(),
    revoked=st.booleans(),
    expires_in=st.integers(-2, 2).map(lambda m: timedelta(minutes=m)),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), bodies),
        st.tuples(st.just("drop"), st.sampled_from(UIDS)),
        st.tuples(st.just("replace_all"), st.lists(bodies, max_size=3)),
    ),
    max_size=20,
)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_index_kept_by_the_view_equals_one_built_from_scratch(ops: list[tuple[str, Any]]) -> None:
    view = ClusterView()
    for op, arg in ops:
        if op == "put":
            view.put_grant(arg)
        elif op == "drop":
            view.drop_grant(arg)
        else:
            view.replace_all([], [], arg)
    assert view.grant_index == scratch(view)
