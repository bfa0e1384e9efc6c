"""`backoff(attempt, retryable=...)`: how long a retry loop waits, by attempt.

Covered, as bounds that hold with or without jitter: never negative; never above the step,
0.1 s doubling per attempt (5 s when the failure is permanent) up to 30 s; the step is
reached (a wait is not just bounded but spread up to it); a negative attempt counts as the
first; attempts far beyond the cap neither overflow nor exceed it, since the revoker's
attempt count grows for as long as the API server keeps failing.
"""

from __future__ import annotations

import pytest

from zsp_operator.kube.retry import backoff

DRAWS = 200  # with full jitter, all of them below half the step has odds 2**-200


@pytest.mark.parametrize(
    ("attempt", "retryable", "step"),
    [
        (0, True, 0.1),
        (1, True, 0.2),
        (2, True, 0.4),
        (8, True, 25.6),
        (9, True, 30.0),
        (64, True, 30.0),
        (10_000, True, 30.0),  # 2.0 ** 10_000 does not fit a float
        (-3, True, 0.1),
        (0, False, 5.0),
        (1, False, 10.0),
        (2, False, 20.0),
        (3, False, 30.0),
        (10_000, False, 30.0),
    ],
)
def test_a_wait_stays_within_its_step_and_reaches_it(attempt: int, retryable: bool, step: float) -> None:
    waits = [backoff(attempt, retryable=retryable) for _ in range(DRAWS)]
    assert all(isinstance(wait, float) for wait in waits)
    assert all(0.0 <= wait <= step + 1e-9 for wait in waits), (min(waits), max(waits))
    assert max(waits) >= step / 2
