"""The operator's one retry policy: exponential backoff with full jitter, 0.1 s doubling to 30 s.

Every retry waits a random time up to the current step (full jitter), so replicas and loops
that failed together do not come back together. A failure the API server calls permanent
(4xx other than conflicts and throttling) starts at a longer step, since the next try only
helps once something else has changed. A server's Retry-After, where given, wins.

Loops that run on a period (a resync, the Lease's retry period, a certificate refresh) keep
their period; only their failure path waits by this policy, capped at the period.

Our own few lines rather than a library such as tenacity or backoff: the loops that retry
differ in shape (a watch that lists again after 410 Gone, a throttled call that honours
Retry-After, a Lease renewed against a deadline, kopf's own request retries), so what they
share is the number of seconds to wait, not a decorator that owns the loop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

FIRST = 0.1
PERMANENT_FIRST = 5.0
CAP = 30.0


def step(attempt: int, *, retryable: bool = True, cap: float = CAP) -> float:
    """The longest wait before retry number `attempt + 1` (attempt 0 is the first failure)."""
    first = FIRST if retryable else PERMANENT_FIRST
    return float(min(first * 2.0 ** min(max(attempt, 0), 64), cap))


def backoff(attempt: int, *, retryable: bool = True, cap: float = CAP) -> float:
    """Seconds to wait before retry number `attempt + 1`: a random time up to its step."""
    return random.uniform(0.0, step(attempt, retryable=retryable, cap=cap))  # noqa: S311 - not security


async def pause(
    attempt: int, *, retryable: bool = True, cap: float = CAP, retry_after: float | None = None
) -> float:
    """Sleep before retry number `attempt + 1`, as long as the server said if it did; the seconds slept."""
    seconds = retry_after if retry_after is not None else backoff(attempt, retryable=retryable, cap=cap)
    await asyncio.sleep(seconds)
    return seconds


class Backoffs:
    """`tries` waits by the policy, drawn afresh each time it is iterated (kopf's `error_backoffs`)."""

    def __init__(self, tries: int) -> None:
        self.tries = tries

    def __len__(self) -> int:
        return self.tries

    def __iter__(self) -> Iterator[float]:
        return (backoff(attempt) for attempt in range(self.tries))
