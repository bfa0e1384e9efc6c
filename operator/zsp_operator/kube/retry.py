"""The operator's one retry policy: exponential backoff from 0.1 s, capped at 30 s.

Revocations, rollbacks and requests whose handling hit API trouble all wait by it; a
failure the API server calls permanent (4xx other than conflicts and throttling) starts
at a longer step, since the next try only helps once something else has changed.
"""

from __future__ import annotations

FIRST = 0.1
PERMANENT_FIRST = 5.0
CAP = 30.0


def backoff(attempt: int, *, retryable: bool = True) -> float:
    """Seconds to wait before retry number `attempt + 1` (attempt 0 is the first failure)."""
    first = FIRST if retryable else PERMANENT_FIRST
    return float(min(first * 2.0 ** max(attempt, 0), CAP))
