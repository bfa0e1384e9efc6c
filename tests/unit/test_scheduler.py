"""The deadline scheduler: exact firing times under a fast-forwarded loop clock.

Covered: fires at the deadline; several keys in deadline order; re-arming moves a
deadline (earlier and later); disarming cancels; the measured lead fires early but is
capped; a failing callback does not stop the scheduler; already-past deadlines fire at once.
Under the concurrency bound: due keys start earliest first, never more than the bound at once;
a key disarmed or re-armed while it waits for a slot is not fired; a burst starts backlog ÷
measured throughput early (the default throughput before any measurement) and is done by its
deadline; a later burst pulls earlier deadlines forward; the lead stays within its caps; a
failing callback frees its slot; stop waits for running callbacks and keeps waiting keys armed;
released keys not started yet are held back again when the measured throughput turns out higher;
a callback that says it had nothing to do is not measured; the lead covers the latency's
spread, and grows when the event loop wakes the scheduler late (that one in real time).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from zsp_operator.engine.scheduler import BURST_MARGIN, MAX_LEAD, DeadlineScheduler

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


class Worker:
    """A callback that holds its slot for `service` seconds; records starts, ends and peak concurrency."""

    def __init__(self, rec: Recorder, service: float, *, failing: frozenset[str] = frozenset()) -> None:
        self.rec = rec
        self.service = service
        self.failing = failing
        self.starts: list[tuple[str, float]] = []
        self.ends: dict[str, float] = {}
        self.active = 0
        self.peak = 0

    def elapsed(self) -> float:
        return round(self.rec.loop.time() - self.rec.start, 6)

    async def on_due(self, key: str) -> None:
        self.starts.append((key, self.elapsed()))
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.service)
            if key in self.failing:
                raise RuntimeError("boom")
        finally:
            self.active -= 1
            self.ends[key] = self.elapsed()


async def warm_up(sched: DeadlineScheduler, rec: Recorder, work: Worker) -> None:
    """Fire one key per slot at once, so that the scheduler has measured the service time."""
    for i in range(sched.concurrency):
        sched.arm(f"warm-{i}", rec.at(-1))
    await asyncio.sleep(work.service + 0.01)
    assert sched.running == 0


async def test_due_keys_start_earliest_first_never_more_than_the_bound() -> None:
    rec = Recorder()
    work = Worker(rec, service=1)
    sched = DeadlineScheduler(work.on_due, rec.now, concurrency=2)
    sched.start()
    for key, at in [("d", -3), ("a", -6), ("f", -1), ("c", -4), ("b", -5), ("e", -2)]:
        sched.arm(key, rec.at(at))
    await asyncio.sleep(0.5)
    assert (sched.running, sched.waiting, len(sched)) == (2, 4, 4)
    await asyncio.sleep(5)
    await sched.stop()
    assert [key for key, _ in work.starts] == ["a", "b", "c", "d", "e", "f"]
    assert [at for _, at in work.starts] == [0, 0, 1, 1, 2, 2]
    assert work.peak == 2
    assert sched.throughput == 2  # two slots, one second each


async def test_a_key_disarmed_or_rearmed_while_waiting_for_a_slot_is_not_fired() -> None:
    rec = Recorder()
    work = Worker(rec, service=1)
    sched = DeadlineScheduler(work.on_due, rec.now, concurrency=1)
    sched.start()
    for key in ("a", "b", "c", "d"):
        sched.arm(key, rec.at(0))
    await asyncio.sleep(0.5)
    assert sched.waiting == 3
    sched.disarm("b")
    sched.arm("c", rec.at(10))  # no longer due: back to waiting for its deadline
    assert (sched.waiting, sched.deadline("b"), sched.deadline("c")) == (1, None, rec.at(10))
    await asyncio.sleep(20)
    await sched.stop()
    assert work.starts == [("a", 0), ("d", 1), ("c", 10)]


async def test_a_key_armed_before_a_waiting_one_goes_first() -> None:
    rec = Recorder()
    work = Worker(rec, service=1)
    sched = DeadlineScheduler(work.on_due, rec.now, concurrency=1)
    sched.start()
    sched.arm("a", rec.at(0))
    sched.arm("c", rec.at(0.2))
    await asyncio.sleep(0.5)
    sched.arm("b", rec.at(0.1))
    await asyncio.sleep(5)
    await sched.stop()
    assert work.starts == [("a", 0), ("b", 1), ("c", 2)]


async def test_the_lead_covers_the_latencys_spread_not_only_its_average() -> None:
    rec = Recorder()
    steady = DeadlineScheduler(rec.on_due, rec.now)
    for _ in range(20):
        steady.record_latency(0.004)
    assert steady.lead == timedelta(seconds=0.004), "no spread: the latency itself"
    varying = DeadlineScheduler(rec.on_due, rec.now)
    samples = [0.002, 0.006] * 20
    for seconds in samples:
        varying.record_latency(seconds)
    average = sum(samples) / len(samples)
    assert varying.lead > timedelta(seconds=max(samples)), "started early enough for the slow ones too"
    assert varying.lead < timedelta(seconds=average * 4), "but by a few spreads, not without bound"


async def test_a_burst_starts_backlog_over_throughput_early_and_is_done_by_its_deadline() -> None:
    rec = Recorder()
    service, slots, n = 0.5, 4, 40
    work = Worker(rec, service=service)
    sched = DeadlineScheduler(work.on_due, rec.now, concurrency=slots, smoothing=1.0)
    sched.start()
    await warm_up(sched, rec, work)
    sched.record_latency(service)  # what the callback reports: one takes `service` to take effect
    assert sched.throughput == slots / service
    deadline = 100
    keys = [f"k{i:02d}" for i in range(n)]
    for key in keys:
        sched.arm(key, rec.at(deadline))
    assert sched.backlog(keys[0]) == n - 1
    drain = n / sched.throughput  # 40 / 8: how long the burst takes once started
    expected_lead = service + BURST_MARGIN * (n - 1) / sched.throughput  # 0.5 + 1.5 * 39 / 8
    assert sched.lead_for(keys[0]) == timedelta(seconds=expected_lead)
    await asyncio.sleep(deadline + 5)
    await sched.stop()
    burst = [(key, at) for key, at in work.starts if key in keys]
    assert [key for key, _ in burst] == keys
    assert burst[0][1] == pytest.approx(deadline - expected_lead)
    # About margin * N ÷ throughput early: every one done by the deadline, and no sooner than
    # the margin over the measured rate makes it.
    assert deadline - burst[0][1] == pytest.approx(BURST_MARGIN * drain, abs=service)
    assert max(work.ends[key] for key in keys) <= deadline
    slack = (BURST_MARGIN - 1) * drain
    assert max(work.ends[key] for key in keys) >= deadline - slack - 2 * service
    assert work.peak == slots


async def test_a_margin_below_one_is_refused_since_it_plans_to_finish_late() -> None:
    rec = Recorder()
    with pytest.raises(ValueError, match="burst_margin"):
        DeadlineScheduler(Worker(rec, service=0).on_due, rec.now, burst_margin=0.9)


async def test_a_burst_leads_by_the_drain_rate_measured_under_load_when_slower() -> None:
    rec = Recorder()
    service, slots, n = 0.5, 4, 40
    work = Worker(rec, service=service)
    sched = DeadlineScheduler(work.on_due, rec.now, concurrency=slots, smoothing=1.0)
    sched.start()
    await warm_up(sched, rec, work)
    assert sched.throughput == slots / service  # what the slots say: 8 a second
    sched.record_drain_rate(2.0)  # what the caller got through, saturated
    assert sched.throughput == 2.0
    sched.record_drain_rate(100.0)  # faster than the slots: the slots still bound it
    assert sched.throughput == slots / service
    sched.record_drain_rate(2.0)
    keys = [f"k{i:02d}" for i in range(n)]
    for key in keys:
        sched.arm(key, rec.at(100))
    assert sched.lead_for(keys[0]) == timedelta(seconds=sched.lead.total_seconds() + BURST_MARGIN * (n - 1) / 2.0)
    await sched.stop()


async def test_without_measurements_the_default_throughput_is_assumed() -> None:
    # Here and in the two tests below no burst margin: the figures are the plan's own arithmetic.
    rec = Recorder()
    work = Worker(rec, service=0.1)
    sched = DeadlineScheduler(work.on_due, rec.now, concurrency=2, default_throughput=5, burst_margin=1.0)
    sched.start()
    for i in range(10):
        sched.arm(f"k{i}", rec.at(50))
    await asyncio.sleep(60)
    await sched.stop()
    assert work.starts[0][1] == pytest.approx(50 - 9 / 5)
    assert sched.throughput == pytest.approx(2 / 0.1)  # measured once they ran


async def test_a_callback_with_nothing_to_do_is_not_measured() -> None:
    rec = Recorder()

    async def already_done(key: str) -> bool:
        rec.fired.append((key, rec.loop.time()))
        return False  # e.g. a grant whose binding start-up had cut already

    sched = DeadlineScheduler(already_done, rec.now, concurrency=2, default_throughput=5)
    sched.start()
    for i in range(10):
        sched.arm(f"k{i}", rec.at(1))
    await asyncio.sleep(5)
    await sched.stop()
    assert len(rec.fired) == 10
    assert sched.throughput == 5, "instant no-ops would have made the next burst start far too late"


async def test_a_later_burst_pulls_earlier_deadlines_forward_so_all_stay_in_order() -> None:
    rec = Recorder()
    work = Worker(rec, service=0.5)
    sched = DeadlineScheduler(work.on_due, rec.now, concurrency=4, smoothing=1.0, burst_margin=1.0)
    sched.start()
    await warm_up(sched, rec, work)
    sched.record_latency(0.5)
    sched.arm("lone", rec.at(100))
    for i in range(40):
        sched.arm(f"k{i:02d}", rec.at(101))
    sched.arm("after", rec.at(200))
    await asyncio.sleep(210)
    await sched.stop()
    started = dict(work.starts)
    # The burst needs 0.5 s + 40 / 8 s before 101; the lone deadline goes first, so it starts then.
    assert started["lone"] == pytest.approx(101 - 0.5 - 40 / 8)
    assert all(work.ends[f"k{i:02d}"] <= 101 for i in range(40))
    assert started["after"] == 200 - 0.5, "a burst that is over does not move later deadlines"


async def test_the_lead_never_exceeds_the_caps() -> None:
    rec = Recorder()
    work = Worker(rec, service=1)
    cap = timedelta(seconds=10)
    sched = DeadlineScheduler(work.on_due, rec.now, concurrency=2, smoothing=1.0, max_burst_lead=cap)
    sched.start()
    await warm_up(sched, rec, work)
    sched.record_latency(30)
    assert sched.lead == MAX_LEAD
    # 300 deadlines a millisecond apart need 150 s of lead at 2 per second: far over the cap.
    deadlines = {f"k{i:03d}": 100 + i / 1000 for i in range(300)}
    for key, at in deadlines.items():
        sched.arm(key, rec.at(at))
    assert sched.lead_for("k299") == MAX_LEAD + cap
    await asyncio.sleep(300)
    await sched.stop()
    limit = (MAX_LEAD + cap).total_seconds()
    burst = [(key, at) for key, at in work.starts if key in deadlines]
    assert len(burst) == 300
    assert all(deadlines[key] - at <= limit + 1e-6 for key, at in burst)
    # Exactly, the 21st deadline (100.020, 20 ahead of it) would set the start: 100.020 - 11 s.
    # Deadlines closer than a step (10 s / 128) are planned together, within the caps.
    assert 100.020 - limit <= burst[0][1] <= 100.020 - limit + 10 / 128


async def test_a_failing_callback_frees_its_slot() -> None:
    rec = Recorder()
    work = Worker(rec, service=1, failing=frozenset({"bad"}))
    sched = DeadlineScheduler(work.on_due, rec.now, concurrency=1)
    sched.start()
    sched.arm("bad", rec.at(1))
    sched.arm("good", rec.at(1.5))  # due while "bad" holds the only slot
    sched.arm("later", rec.at(5))
    await asyncio.sleep(10)
    await sched.stop()
    assert work.starts == [("bad", 1), ("good", 2), ("later", 5)]
    assert sched.running == 0


async def test_stop_waits_for_running_callbacks_and_keeps_waiting_keys_armed() -> None:
    rec = Recorder()
    work = Worker(rec, service=3)
    sched = DeadlineScheduler(work.on_due, rec.now, concurrency=1)
    sched.start()
    sched.arm("a", rec.at(0))
    sched.arm("b", rec.at(0))
    await asyncio.sleep(1)
    await sched.stop()
    assert work.ends == {"a": 3}
    assert (len(sched), sched.deadline("b"), sched.running) == (1, rec.at(0), 0)
    sched.start()
    await asyncio.sleep(5)
    await sched.stop()
    assert work.starts == [("a", 0), ("b", 3)]


def test_the_concurrency_bound_is_checked() -> None:
    async def nothing(key: str) -> None:
        return None

    with pytest.raises(ValueError, match="concurrency"):
        DeadlineScheduler(nothing, lambda: T0, concurrency=0)


async def test_released_keys_are_held_back_again_when_the_measured_throughput_is_higher() -> None:
    rec = Recorder()
    work = Worker(rec, service=0.1)
    sched = DeadlineScheduler(work.on_due, rec.now, concurrency=2, default_throughput=1, burst_margin=1.0)
    sched.start()
    for i in range(10):
        sched.arm(f"k{i}", rec.at(100))
    await asyncio.sleep(120)
    await sched.stop()
    starts = [at for _, at in work.starts]
    # Assumed 1 per second: 9 s early. Measured 20 per second after the first two: the other
    # eight wait until 7 ahead of the last of them take 7 / 20 s.
    assert starts[:2] == [91, 91]
    assert starts[2] == pytest.approx(100 - 7 / 20)
    assert max(starts) <= 100  # no latency reported: started by the deadline


@pytest.mark.looptime(False)
async def test_a_loop_that_wakes_it_late_makes_the_lead_longer() -> None:
    # Real time here: the event loop is blocked while the scheduler's timer is due.
    sched = DeadlineScheduler(lambda _: asyncio.sleep(0), lambda: datetime.now(UTC))
    sched.start()
    sched.arm("a", datetime.now(UTC) + timedelta(seconds=1))
    await asyncio.sleep(0.01)  # the scheduler now waits for its timer
    assert sched.lead == timedelta(0)
    time.sleep(1.5)  # noqa: ASYNC251 - the point: a busy loop that cannot wake it on time
    await asyncio.sleep(0.05)
    await sched.stop()
    # Woken at least 0.5 s late, weighted 0.3: the next deadlines start that much earlier.
    assert sched.lead >= timedelta(seconds=0.1)
