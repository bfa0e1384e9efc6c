"""The kube layer's own errors: callers never see kubernetes_asyncio's ApiException."""

from __future__ import annotations

import json
from typing import Any


class KubeError(Exception):
    """An API call failed; `status` is the HTTP code, `reason` the Status reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        """Worth trying again: server trouble, throttling, conflicts, timeouts."""
        return self.status in (0, 409, 429) or self.status >= 500


class NotFound(KubeError):
    pass


class AlreadyExists(KubeError):
    pass


class Conflict(KubeError):
    pass


class Forbidden(KubeError):
    pass


class Invalid(KubeError):
    pass


class Unauthorized(KubeError):
    pass


class Gone(KubeError):
    pass


def from_response(status: int, body: str | bytes | None) -> KubeError:
    """Map an HTTP status and a Status body to the matching error class."""
    reason, message = "Unknown", ""
    try:
        data: Any = json.loads(body or "{}")
        if isinstance(data, dict):
            reason = str(data.get("reason") or reason)
            message = str(data.get("message") or "")
    except ValueError:
        message = body.decode() if isinstance(body, bytes) else str(body or "")
    if status == 404:
        return NotFound(status, reason, message)
    if status == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
        return cls(status, reason, message)
    if status == 403:
        return Forbidden(status, reason, message)
    if status == 422:
        return Invalid(status, reason, message)
    if status == 401:
        return Unauthorized(status, reason, message)
    if status == 410:
        return Gone(status, reason, message)
    return KubeError(status, reason, message)
