"""One task over the armed deadlines: woken for the next one due, never a polling timer per object.

Revocation must be done *by* `expiresAt`, so a deadline is started early by a lead:

    lead = single latency + backlog ÷ throughput

- *single latency* is what callers report through `record_latency`: how long one callback takes
  to take effect, as a deadline needs it, its tail rather than its mean: the weighted average
  plus four times the weighted mean deviation (the estimator of TCP's retransmission timeout,
  RFC 6298), plus how late the event loop has been waking the scheduler, capped at `MAX_LEAD`;
- *backlog* is the number of armed deadlines at or before this one that have not started yet:
  the callbacks that go first, since deadlines run earliest-first;
- *throughput* is measured here: `concurrency` slots ÷ the weighted average time a callback
  holds one, or the slower rate a saturated caller reports (`record_drain_rate`). Until a
  callback has finished, `default_throughput` stands in for it.

The backlog part is multiplied by `burst_margin` (1.5 by default): a rate measured in an earlier
burst is an estimate, and a burst that drains slower than it leaves privilege past `expiresAt`,
while one that drains faster only ends its grants a fraction of the lead early.

The backlog part is capped at `max_burst_lead`, so a burst of N equal deadlines starts about
N ÷ throughput early, and never more than the caps. At most `concurrency` callbacks run at
once; deadlines that are due wait for a slot, earliest first.

When a deadline is due, so is every deadline before it: they are *released* together (the
front of the sorted list) and started as slots free up. Working out when the next release is
due looks only at deadlines within reach of the caps, in steps of at least 1/128 of that reach
(deadlines closer than a step are taken together, which can start them up to a step earlier,
within the caps). It is worked out again when something may have changed it: an arming, or a
measurement that moved by more than 10 % since (when one fell, the released deadlines that have
not started are weighed again, so a passing slow spell does not start a crowd early).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from operator import itemgetter

from zsp_operator.engine.clock import Clock

log = logging.getLogger(__name__)


# A callback may return False to say it had nothing to do: its time then tells nothing of the
# throughput, and is not measured (a grant whose binding start-up had cut already).
DueCallback = Callable[[str], Awaitable[bool | None]]
Entry = tuple[datetime, int, str]

# Never start more than this early for one callback's own latency, whatever the measurements
# say: a slow outlier must not cut a grant visibly short.
MAX_LEAD = timedelta(seconds=1)
# The single-latency lead: the average plus this many mean deviations (RFC 6298's K).
_DEVIATIONS = 4
# How far the backlog may move a deadline's start forward, by default.
MAX_BURST_LEAD = timedelta(seconds=30)
# The backlog part of a lead, times this: on the real tier, 1 000 grants expiring in one second
# drained about a third slower than the rate measured in the burst before them.
BURST_MARGIN = 1.5
# Throughput assumed before any callback has finished (callbacks per second): low on purpose.
DEFAULT_THROUGHPUT = 50.0
# Re-plan when a measurement moved by more than this fraction since the last plan.
_REPLAN_CHANGE = 0.1
# Weight of one callback's service time in the throughput's moving average: there is one sample
# per callback, many of them at once in a burst, so one slow callback must not swing it.
_SERVICE_SMOOTHING = 0.05
# A plan looks at no more than about this many steps of deadlines.
_PLAN_STEPS = 128
# A wake-up later than this is late; below it, timer noise.
_RESOLUTION_OF_TIMERS = 1e-4
# Due within this many seconds counts as due: the clock's resolution, below float rounding noise.
_RESOLUTION = 1e-6

_deadline_of: Callable[[Entry], datetime] = itemgetter(0)


class DeadlineScheduler:
    """Calls `on_due(key)` once per armed key, earliest deadline first, `concurrency` at a time,
    starting early enough that the callback is done by its deadline."""

    def __init__(
        self,
        on_due: DueCallback,
        clock: Clock,
        *,
        smoothing: float = 0.3,
        concurrency: int = 16,
        max_burst_lead: timedelta = MAX_BURST_LEAD,
        default_throughput: float = DEFAULT_THROUGHPUT,
        burst_margin: float = BURST_MARGIN,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if burst_margin < 1:
            raise ValueError("burst_margin must be at least 1: less would plan to finish late")
        if default_throughput <= 0:
            raise ValueError("default_throughput must be positive")
        self._on_due = on_due
        self._clock = clock
        self._smoothing = smoothing
        self.concurrency = concurrency
        self.max_burst_lead = max(timedelta(0), max_burst_lead)
        self.burst_margin = burst_margin
        # Armed keys not started yet, sorted by (deadline, arming order); the first `_released`
        # of them are due and wait for a slot.
        self._armed: list[Entry] = []
        self._released = 0
        self._current: dict[str, tuple[datetime, int]] = {}
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.lead = timedelta(0)  # the single-latency part, from `record_latency`
        self._latency: float | None = None  # its weighted average, seconds
        self._deviation = 0.0  # the weighted mean deviation from that average
        self._wake_lateness = 0.0  # weighted average of how late the loop woke us for a release
        # Seconds of slot time per finished callback ÷ concurrency, i.e. 1 / throughput.
        self._per_callback = 1.0 / default_throughput
        self._measured = False
        # 1 / the rate at which a saturated operator actually got through its work (the
        # caller measures it, `record_drain_rate`): under load, slower than the slots say.
        self._drain_per_callback = 0.0
        # What the current plan was made with; a measurement above them asks for a new one.
        self._planned_lead = 0.0
        self._planned_per_callback = self._per_callback

    # -- arming ------------------------------------------------------------------------------

    def arm(self, key: str, deadline: datetime) -> None:
        """Fire for `key` at `deadline`, replacing any earlier arming of the same key."""
        self._remove(key)
        seq = next(self._seq)
        entry = (deadline, seq, key)
        self._current[key] = (deadline, seq)
        index = bisect.bisect_right(self._armed, entry)
        self._armed.insert(index, entry)
        if index < self._released:
            # Ahead of a released deadline, so it must go before it: released too.
            self._released += 1
            self._fill()
        self._wake.set()

    def disarm(self, key: str) -> None:
        """Forget `key`: not fired, even if it is due and waiting for a slot."""
        self._remove(key)

    def deadline(self, key: str) -> datetime | None:
        entry = self._current.get(key)
        return entry[0] if entry else None

    def __len__(self) -> int:
        """Armed keys not started yet (waiting for a slot included)."""
        return len(self._current)

    def _remove(self, key: str) -> None:
        current = self._current.pop(key, None)
        if current is None:
            return
        entry = (current[0], current[1], key)
        index = bisect.bisect_left(self._armed, entry)
        del self._armed[index]
        if index < self._released:
            self._released -= 1

    # -- measuring ---------------------------------------------------------------------------

    def record_latency(self, seconds: float) -> None:
        """Report how long one callback took to take effect; the single-latency lead follows it.

        The lead is the weighted average plus four weighted mean deviations: with the average
        alone, half of the deadlines would be met late by the latency's spread.
        """
        measured = max(0.0, seconds)
        if self._latency is None:
            self._latency = measured  # no spread seen yet: none assumed
        else:
            error = measured - self._latency
            self._latency += error * self._smoothing
            self._deviation += (abs(error) - self._deviation) * self._smoothing
        self._update_lead()

    def _record_wake_lateness(self, seconds: float) -> None:
        """How late the event loop woke this scheduler for a release: a busy loop starts every
        deadline that much later, and the callbacks' own latency does not include it."""
        late = seconds if seconds > _RESOLUTION_OF_TIMERS else 0.0
        self._wake_lateness += (late - self._wake_lateness) * self._smoothing
        self._update_lead()

    def _update_lead(self) -> None:
        latency = self._latency or 0.0
        estimate = latency + _DEVIATIONS * self._deviation + self._wake_lateness
        self.lead = min(MAX_LEAD, timedelta(seconds=estimate))
        self._replan_if_changed()

    @property
    def throughput(self) -> float:
        """Callbacks finished per second with every slot busy (measured, or the default)."""
        per = self._effective_per_callback
        return math.inf if per == 0 else 1.0 / per

    @property
    def waiting(self) -> int:
        """Keys that are due and wait for a free slot."""
        return self._released

    @property
    def running(self) -> int:
        return len(self._running)

    def backlog(self, key: str) -> int | None:
        """How many armed keys not started yet have a deadline at or before `key`'s, itself left out."""
        current = self._current.get(key)
        if current is None:
            return None
        return bisect.bisect_right(self._armed, current[0], key=_deadline_of) - 1

    def lead_for(self, key: str) -> timedelta | None:
        """How early `key` is due to start, as things stand: single latency + backlog ÷ throughput."""
        backlog = self.backlog(key)
        if backlog is None:
            return None
        return self.lead + timedelta(seconds=self._burst_lead(backlog))

    def _burst_lead(self, backlog: int) -> float:
        return min(
            self.max_burst_lead.total_seconds(), backlog * self._effective_per_callback * self.burst_margin
        )

    @property
    def _effective_per_callback(self) -> float:
        return max(self._per_callback, self._drain_per_callback)

    def record_drain_rate(self, per_second: float) -> None:
        """Report how many callbacks' work a saturated caller completed per second.

        A burst is by definition saturated: its lead must come from the rate the work drains
        at then, not from how long one callback holds a slot while everything else is idle.
        """
        if per_second <= 0:
            return
        measured = 1.0 / per_second
        if self._drain_per_callback == 0:
            self._drain_per_callback = measured
        else:
            self._drain_per_callback += (measured - self._drain_per_callback) * self._smoothing
        self._replan_if_changed()

    def _measure(self, seconds: float) -> None:
        """One callback held a slot for `seconds`."""
        per_callback = max(0.0, seconds) / self.concurrency
        if self._measured:
            self._per_callback += (per_callback - self._per_callback) * _SERVICE_SMOOTHING
        else:
            self._per_callback, self._measured = per_callback, True
        self._replan_if_changed()

    def _replan_if_changed(self) -> None:
        """Plan again when a measurement moved: a longer lead can make a deadline due sooner than
        planned, a shorter one can make released deadlines that have not started not due yet."""
        lead, per = self.lead.total_seconds(), self._effective_per_callback
        high = 1 + _REPLAN_CHANGE
        if lead * high < self._planned_lead or per * high < self._planned_per_callback:
            self._released = 0  # each is released again if it is still due
            self._wake.set()
        if lead > self._planned_lead * high or per > self._planned_per_callback * high:
            self._wake.set()

    # -- running -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="zsp-deadline-scheduler")

    async def stop(self) -> None:
        """Stop planning and starting; wait for the callbacks already running. Keys stay armed."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self._fill()
            delay = self._release_due()
            if delay is None:
                await self._wake.wait()
                continue
            loop = asyncio.get_running_loop()
            due = loop.time() + delay
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                self._record_wake_lateness(loop.time() - due)

    def _release_due(self) -> float | None:
        """Release every deadline that is due; the seconds until the next one is, if any."""
        while self._released < len(self._armed):
            now = self._clock()
            at, upto = self._plan(now)
            if at > _RESOLUTION:
                return at
            self._released = upto
            self._fill()
        return None

    def _plan(self, now: datetime) -> tuple[float, int]:
        """When (seconds from now) the next release is due, and up to which index it goes.

        A deadline at index k must start by `deadline - single lead - min(cap, k / throughput)`;
        the next release is due at the earliest of those over the unreleased deadlines, and
        takes every deadline up to that one (or, when some are due already, up to the last due
        one). Deadlines more than the largest possible lead after that cannot matter, so the
        search stops there.
        """
        armed, first = self._armed, self._released
        single = self.lead.total_seconds()
        per = self._effective_per_callback
        cap = self.max_burst_lead.total_seconds()
        self._planned_lead, self._planned_per_callback = single, per
        reach = min(cap, (len(armed) - 1) * per * self.burst_margin)
        step = timedelta(seconds=reach / _PLAN_STEPS)
        best, upto = math.inf, first + 1
        due = first  # everything before this index is due already
        index = first
        while index < len(armed):
            group_first = armed[index][0]
            until = (group_first - now).total_seconds() - single
            if until - reach >= max(best, _RESOLUTION):
                break
            # The deadlines within one step go together, as if all were at the first of them
            # with the backlog of the last; none of them starts more than the caps early.
            end = bisect.bisect_right(armed, group_first + step, lo=index + 1, key=_deadline_of)
            group_last = armed[end - 1][0]
            at = max(
                until - self._burst_lead(end - 1),
                (group_last - now).total_seconds() - single - cap,
            )
            if at <= _RESOLUTION:
                due = end
            if at <= best:
                best, upto = at, end
            index = end
        return (best, due) if due > first else (best, upto)

    def _fill(self) -> None:
        """Start released deadlines, earliest first, while a slot is free."""
        while self._task is not None and self._released and len(self._running) < self.concurrency:
            key = self._armed.pop(0)[2]
            self._released -= 1
            del self._current[key]
            task = asyncio.create_task(self._fire(key), name=f"zsp-due-{key}")
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._fill()

    async def _fire(self, key: str) -> None:
        started = self._clock()
        worked: bool | None = None
        try:
            worked = await self._on_due(key)
        except Exception:
            # The callback owns its retries; a failure here must not stop the scheduler.
            log.exception("deadline callback for %s failed", key)
        if worked is not False:
            self._measure((self._clock() - started).total_seconds())
