"""Audit records: one JSON line per transition, on stdout and optionally a file.

The schema is versioned (`schema`) and documented in docs/audit.md. Records never carry
token or secret material: the token is identified by its credential id (jti) alone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from zsp_operator.core.models import format_time

SCHEMA = "zsp.dev/audit/v1"

# Keys a record may never contain, whatever a caller passes.
_FORBIDDEN = frozenset({"token", "kubeconfig", "secret", "stringData", "data"})


class AuditLog:
    def __init__(
        self,
        clock: Callable[[], datetime],
        stream: IO[str] | None = None,
        path: str | None = None,
    ) -> None:
        self._clock = clock
        self._stream = stream if stream is not None else sys.stdout
        self._path = Path(path) if path else None
        self.records: list[dict[str, Any]] = []  # the last few, for `describe` in-process and tests
        self._keep = 1000

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        leaked = _FORBIDDEN & fields.keys()
        if leaked:
            raise ValueError(f"audit record {event!r} must not carry {sorted(leaked)}")
        record = {"schema": SCHEMA, "ts": format_time(self._clock()), "event": event}
        record.update({k: v for k, v in fields.items() if v is not None})
        line = json.dumps(record, sort_keys=False, default=str)
        self._stream.write(line + "\n")
        self._stream.flush()
        if self._path is not None:
            with self._path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        self.records.append(record)
        del self.records[: -self._keep]
        return record
