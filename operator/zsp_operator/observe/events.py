"""Kubernetes Events about our objects (core/v1), posted best-effort."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any, Literal

from zsp_operator.core import constants as c
from zsp_operator.core.models import format_time
from zsp_operator.kube import Kube, KubeError
from zsp_operator.kube.resources import EVENTS

log = logging.getLogger(__name__)
EventType = Literal["Normal", "Warning"]
_MAX_MESSAGE = 1024  # the API server truncates longer messages anyway


def event_body(
    involved: dict[str, Any], type_: EventType, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    meta = involved.get("metadata", {})
    namespace = meta.get("namespace") or "default"
    stamp = format_time(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta.get('name', 'zsp')}.{secrets.token_hex(8)}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message[:_MAX_MESSAGE],
        "type": type_,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": None,
        "count": 1,
        "source": {"component": c.OPERATOR_NAME},
        "reportingComponent": c.OPERATOR_NAME,
        "reportingInstance": c.OPERATOR_NAME,
    }


async def post_event(
    kube: Kube, involved: dict[str, Any], type_: EventType, reason: str, message: str, now: datetime
) -> None:
    """Post an Event; a failure is logged, never raised: events are not the record."""
    body = event_body(involved, type_, reason, message, now)
    try:
        await kube.create(EVENTS, body)
    except KubeError as err:
        log.warning(
            "could not post event %s on %s: %s", reason, involved.get("metadata", {}).get("name"), err
        )
