"""The timeline `zsp describe` shows: the request's audit chain, and what lies ahead; no I/O.

The chain itself comes from `observe.chain.chain_from` (status first, Events for what
status cannot say), so each step carries the name of the audit record of the same
transition. A live grant adds its expiry, the one step still to come.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from zsp_operator.cli.summary import phase, status_of
from zsp_operator.core.models import Phase, parse_time
from zsp_operator.observe.chain import NOTE, chain_from

Body = Mapping[str, Any]
EXPIRES = "expires"


@dataclass(frozen=True)
class Entry:
    at: datetime | None
    step: str  # the audit event name (`requested`, `decided`, ...), `event <Reason>`, or `expires`
    detail: str
    warning: bool = False
    future: bool = False  # a deadline still ahead


def event_time(event: Body) -> datetime | None:
    """When an Event last happened: core/v1 Events carry it in one of several fields."""
    for raw in (
        event.get("lastTimestamp"),
        event.get("eventTime"),
        event.get("firstTimestamp"),
        (event.get("metadata") or {}).get("creationTimestamp"),
    ):
        at = parse_time(raw)
        if at is not None:
            return at
    return None


def timeline(body: Body, events: Sequence[Body]) -> list[Entry]:
    """Every step so far, oldest first, then a live grant's expiry."""
    entries = [
        Entry(
            step.at,
            f"event {step.reason}" if step.event == NOTE else step.event,
            step.summary,
            warning=step.warning,
        )
        for step in chain_from(body, events)
    ]
    expires_at = status_of(body).expires_at
    if phase(body) is Phase.ACTIVE and expires_at is not None:
        entries.append(Entry(expires_at, EXPIRES, "the grant is revoked by then", future=True))
    return entries
