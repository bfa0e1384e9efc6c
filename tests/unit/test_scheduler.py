"""The deadline scheduler: exact firing times under a fast-forwarded loop clock.

Covered: fires at the deadline; several keys in deadline order; re-arming moves a
deadline (earlier and later); disarming cancels; the measured lead fires early but is
capped; a failing callback does not stop the scheduler; already-past deadlines fire at once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from zsp_operator.scheduler import MAX_LEAD, DeadlineScheduler

T0 = datetime(2026, 1, 1, tzinfo=UTC)
pytestmark = pytest.mark.looptime


class Recorder:
    """Collects (key, loop time) of each firing; the clock is the loop's fake time."""

    def __init__(self) -> None:
        self.fired: list[tuple[str, float]] = []
        self.loop = asyncio.get_running_loop()
        self.start = self.loop.time()

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.loop.time() - self.start)

    async def on_due(self, key: str) -> None:
        self.fired.append((key, round(self.loop.time() - self.start, 3)))

    def at(self, seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds)


async def scheduler_for(rec: Recorder) -> DeadlineScheduler:
    sched = DeadlineScheduler(rec.on_due, rec.now)
    sched.start()
    return sched


async def test_fires_each_key_at_its_deadline_in_order() -> None:
    rec = Recorder()
    sched = await scheduler_for(rec)
    sched.arm("b", rec.at(20))
    sched.arm("a", rec.at(10))
    sched.arm("c", rec.at(30.5))
    await asyncio.sleep(40)
    await sched.stop()
    assert rec.fired == [("a", 10), ("b", 20), ("c", 30.5)]
    assert len(sched) == 0


async def test_rearming_moves_the_deadline_both_ways() -> None:
    rec = Recorder()
    sched = await scheduler_for(rec)
    sched.arm("x", rec.at(100))
    sched.arm("y", rec.at(5))
    await asyncio.sleep(1)
    sched.arm("x", rec.at(3))
    sched.arm("y", rec.at(50))
    await asyncio.sleep(60)
    await sched.stop()
    assert rec.fired == [("x", 3), ("y", 50)]


async def test_disarm_cancels() -> None:
    rec = Recorder()
    sched = await scheduler_for(rec)
    sched.arm("gone", rec.at(10))
    sched.arm("kept", rec.at(20))
    sched.disarm("gone")
    await asyncio.sleep(30)
    await sched.stop()
    assert rec.fired == [("kept", 20)]


async def test_past_deadline_fires_at_once() -> None:
    rec = Recorder()
    sched = await scheduler_for(rec)
    sched.arm("late", rec.at(-100))
    await asyncio.sleep(0.01)
    await sched.stop()
    assert rec.fired == [("late", 0)]


async def test_measured_latency_makes_it_fire_early_but_capped() -> None:
    rec = Recorder()
    sched = DeadlineScheduler(rec.on_due, rec.now, smoothing=1.0)
    sched.start()
    sched.record_latency(0.25)
    assert sched.lead == timedelta(seconds=0.25)
    sched.arm("a", rec.at(10))
    await asyncio.sleep(11)
    sched.record_latency(30)
    assert sched.lead == MAX_LEAD
    sched.arm("b", rec.at(20))
    await asyncio.sleep(11)
    await sched.stop()
    assert rec.fired == [("a", 9.75), ("b", 20 - MAX_LEAD.total_seconds())]


async def test_a_failing_callback_does_not_stop_the_scheduler() -> None:
    rec = Recorder()

    async def flaky(key: str) -> None:
        if key == "bad":
            raise RuntimeError("boom")
        await rec.on_due(key)

    sched = DeadlineScheduler(flaky, rec.now)
    sched.start()
    sched.arm("bad", rec.at(1))
    sched.arm("good", rec.at(2))
    await asyncio.sleep(3)
    await sched.stop()
    assert rec.fired == [("good", 2)]
