"""The retry policy beyond `backoff` itself (tests/unit/test_backoff.py): a cap for loops that
run on a period, the server's Retry-After winning, kopf's request retries, the Lease's tries."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from zsp_operator.kube.retry import FIRST, Backoffs, backoff, pause, step
from zsp_operator.process.leader import LeaderElector


def test_a_cap_bounds_the_wait() -> None:
    assert all(backoff(50, retryable=False, cap=2.0) <= 2.0 for _ in range(200))


async def test_retry_after_wins_over_the_backoff() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await pause(30, retry_after=0.05) == 0.05
    assert loop.time() - started < 1.0


def test_kopf_gets_fresh_waits_each_time_it_iterates() -> None:
    backoffs = Backoffs(8)
    first, second = list(backoffs), list(backoffs)
    assert len(backoffs) == len(first) == len(second) == 8
    assert all(0.0 <= wait <= step(attempt) for attempt, wait in enumerate(first))
    assert first != second


def test_the_lease_is_tried_every_period_and_sooner_after_an_error() -> None:
    period = timedelta(seconds=2)
    elector = LeaderElector(
        None,  # type: ignore[arg-type]  # no call is made
        "ns",
        "lease",
        "me",
        duration=timedelta(seconds=15),
        renew_deadline=timedelta(seconds=10),
        retry_period=period,
    )
    assert elector._next_try(0) == 2.0
    assert all(0.0 <= elector._next_try(1) <= FIRST for _ in range(100))
    assert all(elector._next_try(30) <= 2.0 for _ in range(100)), "never later than the period"
