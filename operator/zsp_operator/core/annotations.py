"""The webhook-written annotations (`zsp.dev/requester`, `zsp.dev/approvals`): one reader and
one writer each, so every layer agrees on what they say. Unreadable content reads as absent."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from pydantic import ValidationError

from zsp_operator.core import constants as c
from zsp_operator.core.models import ApprovalRecord, UserInfo


def requester_of(annotations: Mapping[str, str]) -> UserInfo | None:
    """The authenticated creator the admission webhook recorded, or None."""
    raw = annotations.get(c.ANNOTATION_REQUESTER)
    if not raw:
        return None
    try:
        return UserInfo.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return None


def approvals_of(annotations: Mapping[str, str]) -> list[ApprovalRecord]:
    """Every approve/deny the admission webhook recorded, in the order given."""
    raw = annotations.get(c.ANNOTATION_APPROVALS)
    if not raw:
        return []
    try:
        return [ApprovalRecord.model_validate(item) for item in json.loads(raw)]
    except (ValueError, TypeError, ValidationError):
        return []


def encode_requester(user: UserInfo) -> str:
    return json.dumps(user.to_wire(), sort_keys=True)


def encode_approvals(records: Iterable[ApprovalRecord]) -> str:
    return json.dumps([record.to_wire() for record in records])
