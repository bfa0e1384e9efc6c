"""A grant's expiry is armed by whoever finished issuing it: never mid-issuance by its own watch event.

Armed from the TaskGrant's first watch event (the reservation, before any RBAC object
exists), a grant whose TTL is shorter than a burst's lead was revoked while still being
issued, and its request ended Failed instead of Expired.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

from recording_kube import RecordingKube

from zsp_operator.core.models import format_time
from zsp_operator.engine.controller import Controller
from zsp_operator.settings import Settings

EXPIRES = datetime(2026, 3, 1, 12, 10, tzinfo=UTC)


def reserved(uid: str, request_uid: str) -> dict[str, Any]:
    """A TaskGrant as the reservation writes it: no issuedAt yet."""
    return {
        "metadata": {"name": f"g-{uid}", "namespace": "pay", "uid": uid, "resourceVersion": "1"},
        "spec": {
            "request": {"name": f"g-{uid}", "uid": request_uid},
            "policy": "readers",
            "mode": "bind",
            "identity": {"namespace": "ci", "name": "deployer"},
            "expiresAt": format_time(EXPIRES),
        },
        "status": {},
    }


def issued(body: dict[str, Any]) -> dict[str, Any]:
    return {
        **body,
        "metadata": {**body["metadata"], "resourceVersion": "2"},
        "status": {"issuedAt": format_time(EXPIRES - timedelta(minutes=10))},
    }


async def test_a_grant_being_issued_here_is_armed_once_issued_not_by_its_first_event() -> None:
    controller = Controller.build(RecordingKube(), Settings(), audit_stream=io.StringIO())
    tracker, expiry = controller.grant_tracker, controller.expiry
    controller.requests._issuing.add("req-1")  # the reconciler is between decision and status write

    tracker.grant_event("ADDED", reserved("g1", "req-1"))
    assert expiry.deadline("g1") is None, "not armed while the issuance is under way"
    assert controller.view.grants.get("g1") is not None, "but counted by the next decision"

    tracker.grant_event("MODIFIED", issued(reserved("g1", "req-1")))
    assert expiry.deadline("g1") == EXPIRES, "armed once the grant is issued"


async def test_a_grant_nobody_here_is_issuing_is_armed_from_its_event() -> None:
    controller = Controller.build(RecordingKube(), Settings(), audit_stream=io.StringIO())
    controller.grant_tracker.grant_event("ADDED", reserved("g2", "req-2"))  # left by a previous leader
    assert controller.expiry.deadline("g2") == EXPIRES
