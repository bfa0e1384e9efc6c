"""Leader election over a coordination.k8s.io/v1 Lease: who holds it, and may we take it.

The rules follow Kubernetes' own leader election: a holder renews the Lease well
inside its duration; a candidate takes it over only after it has watched the
record stay unchanged for a whole duration on its *own* clock, so skew between
the machines' wall clocks never hands the Lease to two replicas at once. An
empty holder means the last leader let go on its way out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from zsp_operator.core.models import format_time, parse_time


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of a Lease's spec that leader election reads and writes."""

    holder: str | None
    duration_seconds: int
    acquired: datetime | None = None
    renewed: datetime | None = None
    transitions: int = 0

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None) -> LeaseRecord:
        spec = spec or {}
        return cls(
            holder=spec.get("holderIdentity") or None,
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquired=parse_time(spec.get("acquireTime")),
            renewed=parse_time(spec.get("renewTime")),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration_seconds,
            "acquireTime": _micro_time(self.acquired),
            "renewTime": _micro_time(self.renewed),
            "leaseTransitions": self.transitions,
        }


def _micro_time(at: datetime | None) -> str | None:
    """A Lease's times are MicroTime: RFC 3339 with microseconds."""
    return format_time(at) if at is not None else None


def may_take(record: LeaseRecord, me: str, unchanged_for: timedelta) -> bool:
    """May `me` write itself into the Lease, having seen `record` unchanged for `unchanged_for`?"""
    if record.holder is None or record.holder == me:
        return True
    return unchanged_for >= timedelta(seconds=record.duration_seconds)


def claim(record: LeaseRecord | None, me: str, now: datetime, duration: timedelta) -> LeaseRecord:
    """The record that makes (or keeps) `me` the holder: a renewal, or a new term."""
    seconds = max(1, int(duration.total_seconds()))
    if record is not None and record.holder == me:
        return replace(record, duration_seconds=seconds, renewed=now)
    # Every change of holder counts, a takeover after a clean release included.
    transitions = record.transitions + 1 if record is not None else 0
    return LeaseRecord(me, seconds, acquired=now, renewed=now, transitions=transitions)


def release(record: LeaseRecord, now: datetime) -> LeaseRecord:
    """The record a leader leaves behind on a clean exit: no holder, so a standby needn't wait."""
    return replace(record, holder=None, duration_seconds=1, renewed=now)
