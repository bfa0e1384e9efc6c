"""Audit records: one JSON line per transition, on stdout and optionally a file.

The schema is versioned (`schema`) and documented in docs/audit.md. Records never carry
token or secret material: the token is identified by its credential id (jti) alone, and
`write` refuses a record with a forbidden key or a JWT-shaped value at any depth.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final

from zsp_operator.core.credentials import looks_like_credential
from zsp_operator.core.models import format_time

SCHEMA: Final = "zsp.dev/audit/v1"

# The vocabulary of `event`, in the order a request meets them; docs/audit.md defines each.
REQUESTED: Final = "requested"
DECIDED: Final = "decided"
APPROVED: Final = "approved"
DENIED: Final = "denied"
ISSUED: Final = "issued"
REVOKED: Final = "revoked"
USED: Final = "used"
FAILED: Final = "failed"
STANDING_FOUND: Final = "standing-binding-found"
STANDING_REMOVED: Final = "standing-binding-removed"
EVENTS: Final = (
    REQUESTED,
    DECIDED,
    APPROVED,
    DENIED,
    ISSUED,
    REVOKED,
    USED,
    FAILED,
    STANDING_FOUND,
    STANDING_REMOVED,
)

# Keys a record may never contain, at any depth, whatever a caller passes.
FORBIDDEN_KEYS: Final = frozenset(
    {"token", "kubeconfig", "secret", "stringData", "data", "password", "clientKeyData", "privateKey"}
)


class SecretMaterialError(ValueError):
    """A record would have carried secret material; nothing was written."""


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _walk(child, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, child in enumerate(value):
            yield from _walk(child, f"{path}[{index}]")


def check_no_secrets(event: str, fields: dict[str, Any]) -> None:
    """Raise SecretMaterialError if any key is forbidden or any string looks like a credential."""
    for path, value in _walk(fields, event):
        if isinstance(value, dict) and (FORBIDDEN_KEYS & value.keys()):
            leaked = sorted(FORBIDDEN_KEYS & value.keys())
            raise SecretMaterialError(f"audit record {path} must not carry {leaked}")
        if isinstance(value, str) and looks_like_credential(value):
            raise SecretMaterialError(f"audit record {path} holds something shaped like a credential")


class AuditLog:
    """Writes records as JSON lines; keeps the last few in memory for tests and in-process readers."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        stream: IO[str] | None = None,
        path: str | None = None,
    ) -> None:
        self._clock = clock
        self._stream = stream if stream is not None else sys.stdout
        self._path = Path(path) if path else None
        self.records: list[dict[str, Any]] = []
        self._keep = 1000

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one record; fields that are None are left out.

        Raises:
            ValueError: `event` is not in the vocabulary.
            SecretMaterialError: a field would leak token or secret material.
        """
        if event not in EVENTS:
            raise ValueError(f"audit event {event!r} is not one of {', '.join(EVENTS)}")
        present = {k: v for k, v in fields.items() if v is not None}
        check_no_secrets(event, present)
        record = {"schema": SCHEMA, "ts": format_time(self._clock()), "event": event, **present}
        line = json.dumps(record, default=str)
        self._stream.write(line + "\n")
        self._stream.flush()
        if self._path is not None:
            with self._path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        self.records.append(record)
        del self.records[: -self._keep]
        return record
