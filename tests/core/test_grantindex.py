"""The grant index limits are counted from, kept current grant by grant.

Covered, as tables: what counts at a given moment (live, expired at or before `now`, revoked,
being deleted, the request's own grant, a grant without identity or requester); a put that
replaces a grant under the same key (moving it to another identity, requester, policy, or out of
the counts by a deletionTimestamp or a revocation, and back); a drop; the order held grants are
listed in. As properties (hypothesis): after any sequence of puts, drops and clears, the index
equals one built from scratch from what it holds, and answers every query exactly as a scan over
the live grants does (the way decide counted before the index); decide gives the same Decision
from the index as from such a scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from core_factories import LABELS, NOW, PIPELINE, REQUEST_UID, grant
from hypothesis import given, settings
from hypothesis import strategies as st
from test_policy_properties import scenarios

from zsp_operator.core.grantindex import GrantIndex, Identity, counts_against_limits
from zsp_operator.core.models import TaskGrant
from zsp_operator.core.policy import decide

DEPLOYER = ("ci", "deployer")
POLICY = "ci-deployers"


def keyed(name: str, *args: Any, **kwargs: Any) -> TaskGrant:
    """A grant with uid `uid-<name>`, as the API server would give it."""
    g = grant(name, *args, **kwargs)
    g.metadata.uid = f"uid-{name}"
    return g


def deleting(g: TaskGrant) -> TaskGrant:
    return g.model_copy(update={"metadata": g.metadata.model_copy(update={"deletion_timestamp": NOW})})


def index_of(*grants: TaskGrant) -> GrantIndex:
    index = GrantIndex()
    for g in grants:
        index.put(g.metadata.uid, g)
    return index


def counts(index: GrantIndex, now: datetime = NOW, request_uid: str = REQUEST_UID) -> tuple[int, int, int]:
    """(held by ci/deployer, filed by the pipeline, issued under ci-deployers)."""
    return (
        len(index.held_by(DEPLOYER, now, request_uid)),
        index.count_by_requester(PIPELINE, now, request_uid),
        index.count_by_policy(POLICY, now, request_uid),
    )


# --- what counts at a given moment ------------------------------------------------------------

COUNTING: list[Any] = [
    pytest.param([], (0, 0, 0), id="empty"),
    pytest.param([keyed("a")], (1, 1, 1), id="live"),
    pytest.param([keyed("a", expires_in=timedelta(seconds=1))], (1, 1, 1), id="expires-after-now"),
    pytest.param([keyed("a", expires_in=timedelta(0))], (0, 0, 0), id="expires-at-now"),
    pytest.param([keyed("a", expires_in=-timedelta(minutes=1))], (0, 0, 0), id="expired-not-revoked"),
    pytest.param([keyed("a", revoked=True)], (0, 0, 0), id="revoked"),
    pytest.param([deleting(keyed("a"))], (0, 0, 0), id="being-deleted"),
    pytest.param([keyed("a", request_uid=REQUEST_UID)], (0, 0, 0), id="own-grant"),
    pytest.param(
        [keyed("a", request_uid=REQUEST_UID, expires_in=-timedelta(minutes=1)), keyed("b")],
        (1, 1, 1),
        id="own-grant-expired",
    ),
    pytest.param([keyed("a", identity=None)], (0, 1, 1), id="ephemeral-no-identity"),
    pytest.param([keyed("a", identity=("ci", "other"))], (0, 1, 1), id="other-identity"),
    pytest.param([keyed("a", requested_by="alice")], (1, 0, 1), id="other-requester"),
    pytest.param([keyed("a", policy_name="other")], (1, 1, 0), id="other-policy"),
    pytest.param(
        [keyed("a"), keyed("b", expires_in=timedelta(hours=1)), keyed("c", expires_in=-timedelta(seconds=1))],
        (2, 2, 2),
        id="mixed",
    ),
]


@pytest.mark.parametrize(("grants", "expected"), COUNTING)
def test_what_counts(grants: list[TaskGrant], expected: tuple[int, int, int]) -> None:
    assert counts(index_of(*grants)) == expected


def test_an_empty_request_uid_excludes_nothing() -> None:
    index = index_of(keyed("a", request_uid=""))
    assert counts(index, request_uid="") == (1, 1, 1)


def test_the_same_grants_count_differently_as_time_passes() -> None:
    index = index_of(keyed("a", expires_in=timedelta(minutes=1)), keyed("b", expires_in=timedelta(minutes=2)))
    assert [counts(index, NOW + timedelta(minutes=m))[2] for m in (0, 1, 2)] == [2, 1, 0]


# --- keeping it current -----------------------------------------------------------------------

# (grants put in order, keys dropped afterwards, expected counts)
UPDATES: list[Any] = [
    pytest.param([keyed("a"), keyed("a")], [], (1, 1, 1), id="same-grant-twice"),
    pytest.param([keyed("a"), keyed("a", identity=("ci", "other"))], [], (0, 1, 1), id="moves-identity"),
    pytest.param([keyed("a"), keyed("a", requested_by="alice")], [], (1, 0, 1), id="moves-requester"),
    pytest.param([keyed("a"), keyed("a", policy_name="other")], [], (1, 1, 0), id="moves-policy"),
    pytest.param([keyed("a"), keyed("a", expires_in=-timedelta(1))], [], (0, 0, 0), id="new-expiry"),
    pytest.param([keyed("a"), deleting(keyed("a"))], [], (0, 0, 0), id="gets-deletion-timestamp"),
    pytest.param([keyed("a"), keyed("a", revoked=True)], [], (0, 0, 0), id="gets-revoked"),
    pytest.param([deleting(keyed("a")), keyed("a")], [], (1, 1, 1), id="deletion-timestamp-gone"),
    pytest.param([keyed("a"), keyed("b")], ["a"], (1, 1, 1), id="drop-one"),
    pytest.param([keyed("a")], ["a", "a"], (0, 0, 0), id="drop-twice"),
    pytest.param([keyed("a")], ["nothing"], (1, 1, 1), id="drop-unknown"),
    pytest.param([deleting(keyed("a"))], ["a"], (0, 0, 0), id="drop-not-counted"),
]


@pytest.mark.parametrize(("grants", "dropped", "expected"), UPDATES)
def test_puts_and_drops(grants: list[TaskGrant], dropped: list[str], expected: tuple[int, int, int]) -> None:
    index = index_of(*grants)
    for name in dropped:
        index.drop(f"uid-{name}")
    assert counts(index) == expected
    assert index == _rebuilt(index)


def test_clear_forgets_everything() -> None:
    index = index_of(keyed("a"), keyed("b"))
    index.clear()
    assert (len(index), counts(index)) == (0, (0, 0, 0))
    assert index == GrantIndex()


def test_held_grants_are_listed_in_the_order_first_put() -> None:
    a, b, c = keyed("a"), keyed("b"), keyed("c")
    index = index_of(a, b, c, deleting(a), keyed("b", namespace="payments-prod"), a)
    assert [g.name for g in index.held_by(DEPLOYER, NOW)] == ["a", "b", "c"]
    assert index.held_by(DEPLOYER, NOW)[1].namespace == "payments-prod"
    index.drop("uid-a")
    index.put("uid-a", a)
    assert [g.name for g in index.held_by(DEPLOYER, NOW)] == ["b", "c", "a"]
    assert list(index.by_key) == ["uid-b", "uid-c", "uid-a"]


def test_of_keeps_grants_without_uid_apart() -> None:
    index = GrantIndex.of([grant("a"), grant("b")])
    assert counts(index) == (2, 2, 2)


# --- properties -------------------------------------------------------------------------------

ACCOUNTS: list[Identity | None] = [DEPLOYER, ("ci", "other"), None]
UIDS = [f"uid-{i}" for i in range(6)]
MINUTES = st.integers(-3, 3).map(lambda m: timedelta(minutes=m))


@st.composite
def grants(draw: st.DrawFn) -> TaskGrant:
    g = keyed(
        draw(st.sampled_from(["a", "b", "c"])),
        draw(st.sampled_from(list(LABELS))),
        identity=draw(st.sampled_from(ACCOUNTS)),
        policy_name=draw(st.sampled_from([POLICY, "other"])),
        requested_by=draw(st.sampled_from([PIPELINE, "alice"])),
        expires_in=draw(MINUTES),
        request_uid=draw(st.sampled_from([REQUEST_UID, "uid-request-1", ""])),
        revoked=draw(st.booleans()),
    )
    g.metadata.uid = draw(st.sampled_from(UIDS))
    if draw(st.integers(0, 4)) == 0:
        g = deleting(g)
    if draw(st.booleans()):
        g.spec.requester = None
    return g


operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), grants()),
        st.tuples(st.just("drop"), st.sampled_from(UIDS)),
        st.tuples(st.just("replace_all"), st.lists(grants(), max_size=4)),
    ),
    max_size=25,
)


def _apply(operations: Sequence[tuple[str, Any]]) -> tuple[GrantIndex, dict[str, TaskGrant]]:
    """The index after these operations, and a plain dict kept the same way (what a view holds)."""
    index, held = GrantIndex(), {}
    for op, arg in operations:
        if op == "put":
            index.put(arg.metadata.uid, arg)
            held[arg.metadata.uid] = arg
        elif op == "drop":
            assert index.drop(arg) is held.pop(arg, None)
        else:
            index.clear()
            held.clear()
            for g in arg:
                index.put(g.metadata.uid, g)
                held[g.metadata.uid] = g
    return index, held


def _rebuilt(index: GrantIndex) -> GrantIndex:
    return index_of(*index)


def _scan(
    live: Sequence[TaskGrant], now: datetime, request_uid: str
) -> tuple[dict[Identity, list[TaskGrant]], dict[str, int], dict[str, int]]:
    """What decide counted before the index: a pass over the grants not being deleted."""
    counted = [
        g
        for g in live
        if not (request_uid and g.spec.request.uid == request_uid)
        and g.spec.expires_at > now
        and g.status.revoked_at is None
    ]
    held: dict[Identity, list[TaskGrant]] = {}
    by_requester: dict[str, int] = {}
    by_policy: dict[str, int] = {}
    for g in counted:
        if g.spec.identity is not None:
            held.setdefault((g.spec.identity.namespace, g.spec.identity.name), []).append(g)
        if g.spec.requester is not None:
            by_requester[g.spec.requester.username] = by_requester.get(g.spec.requester.username, 0) + 1
        by_policy[g.spec.policy] = by_policy.get(g.spec.policy, 0) + 1
    return held, by_requester, by_policy


@settings(max_examples=300, deadline=None)
@given(operations, MINUTES, st.sampled_from([REQUEST_UID, "uid-request-1", ""]))
def test_kept_current_equals_built_from_scratch_and_a_scan(
    ops: list[tuple[str, Any]], offset: timedelta, request_uid: str
) -> None:
    index, held = _apply(ops)
    assert list(index.by_key.items()) == list(held.items())
    assert index == _rebuilt(index)
    now = NOW + offset
    live = [g for g in held.values() if g.metadata.deletion_timestamp is None]
    by_identity, by_requester, by_policy = _scan(live, now, request_uid)
    for identity in ACCOUNTS:
        if identity is not None:
            assert index.held_by(identity, now, request_uid) == by_identity.get(identity, [])
    for username in (PIPELINE, "alice"):
        assert index.count_by_requester(username, now, request_uid) == by_requester.get(username, 0)
    for policy in (POLICY, "other"):
        assert index.count_by_policy(policy, now, request_uid) == by_policy.get(policy, 0)
    assert [g for g in index if counts_against_limits(g)] == [g for g in live if g.status.revoked_at is None]


class _Scanned(GrantIndex):
    """Answers by scanning a list of grants, as decide did before it took an index."""

    def __init__(self, grants: Sequence[TaskGrant]) -> None:
        super().__init__()
        self.grants = list(grants)

    def held_by(self, identity: Identity, now: datetime, request_uid: str = "") -> list[TaskGrant]:
        return _scan(self.grants, now, request_uid)[0].get(identity, [])

    def count_by_requester(self, username: str, now: datetime, request_uid: str = "") -> int:
        return _scan(self.grants, now, request_uid)[1].get(username, 0)

    def count_by_policy(self, policy: str, now: datetime, request_uid: str = "") -> int:
        return _scan(self.grants, now, request_uid)[2].get(policy, 0)


@settings(max_examples=150, deadline=None)
@given(scenarios, st.lists(grants(), max_size=5), MINUTES)
def test_decide_from_the_index_equals_decide_from_a_scan(
    scenario: tuple[Any, ...], more: list[TaskGrant], offset: timedelta
) -> None:
    req, pols, live, catalog, cap = scenario
    live = [*live, *more]
    now = NOW + offset
    from_index = decide(req, pols, GrantIndex.of(live), LABELS, now, catalog=catalog, break_glass_max_ttl=cap)
    live = [g for g in live if g.metadata.deletion_timestamp is None]  # what the view passed
    from_scan = decide(req, pols, _Scanned(live), LABELS, now, catalog=catalog, break_glass_max_ttl=cap)
    assert from_index == from_scan


def test_holding_lists_every_counted_grant_of_an_identity_expired_or_not() -> None:
    live = grant("live", expires_in=timedelta(minutes=5))
    expired = grant("expired", expires_in=timedelta(minutes=-1))
    revoked = grant("revoked", revoked=True)
    other = grant("other", identity=("ci", "someone-else"))
    index = GrantIndex.of([live, expired, revoked, other])
    assert [g.name for g in index.holding(("ci", "deployer"))] == ["live", "expired"]
    assert [g.name for g in index.held_by(("ci", "deployer"), NOW)] == ["live"]
    assert index.holding(("ci", "nobody")) == []
