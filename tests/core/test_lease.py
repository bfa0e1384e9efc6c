"""Leader election's rules: when a candidate may take the Lease, and what it writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from zsp_operator.core.lease import LeaseRecord, claim, may_take, release

T0 = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
HELD_BY_A = LeaseRecord("a", 15, acquired=T0, renewed=T0, transitions=3)


@pytest.mark.parametrize(
    ("record", "me", "unchanged_for", "expected"),
    [
        (LeaseRecord(None, 15), "b", timedelta(0), True),  # free: released or never held
        (HELD_BY_A, "a", timedelta(0), True),  # our own: renew at any time
        (HELD_BY_A, "b", timedelta(seconds=14.9), False),  # the holder may still be renewing
        (HELD_BY_A, "b", timedelta(seconds=15), True),  # silent for a whole duration
        (LeaseRecord("a", 0), "b", timedelta(0), True),  # a zero duration protects nothing
    ],
)
def test_a_candidate_takes_the_lease_only_when_free_ours_or_silent(
    record: LeaseRecord, me: str, unchanged_for: timedelta, expected: bool
) -> None:
    assert may_take(record, me, unchanged_for) is expected


@pytest.mark.parametrize(
    ("record", "me", "expected"),
    [
        # A renewal keeps the term's start and count, and moves only renewTime.
        (HELD_BY_A, "a", LeaseRecord("a", 15, acquired=T0, renewed=T0 + timedelta(seconds=2), transitions=3)),
        # A takeover starts a new term and counts it.
        (HELD_BY_A, "b", LeaseRecord("b", 15, T0 + timedelta(seconds=2), T0 + timedelta(seconds=2), 4)),
        # After a clean release the next holder is a transition too.
        (
            LeaseRecord(None, 1, T0, T0, 4),
            "b",
            LeaseRecord("b", 15, T0 + timedelta(seconds=2), T0 + timedelta(seconds=2), 5),
        ),
        # The very first holder of a new Lease.
        (None, "a", LeaseRecord("a", 15, T0 + timedelta(seconds=2), T0 + timedelta(seconds=2), 0)),
    ],
)
def test_claim_renews_our_term_or_starts_a_new_one(
    record: LeaseRecord | None, me: str, expected: LeaseRecord
) -> None:
    assert claim(record, me, T0 + timedelta(seconds=2), timedelta(seconds=15)) == expected


def test_release_leaves_no_holder_and_a_short_duration() -> None:
    released = release(HELD_BY_A, T0 + timedelta(seconds=5))
    assert (released.holder, released.duration_seconds, released.transitions) == (None, 1, 3)
    assert may_take(released, "b", timedelta(0)), "a standby needn't wait after a release"


def test_the_spec_round_trips_in_the_api_shape() -> None:
    spec = HELD_BY_A.to_spec()
    assert spec == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-11-23T12:00:00.123456Z",
        "renewTime": "2026-11-23T12:00:00.123456Z",
        "leaseTransitions": 3,
    }
    assert LeaseRecord.from_spec(spec) == HELD_BY_A


@pytest.mark.parametrize("spec", [None, {}, {"holderIdentity": ""}])
def test_an_empty_spec_reads_as_a_free_lease(spec: dict[str, str] | None) -> None:
    record = LeaseRecord.from_spec(spec)
    assert record.holder is None
    assert may_take(record, "anyone", timedelta(0))
