"""One task over a heap of deadlines: woken for the earliest, never a polling timer per object.

Revocation must be done *by* `expiresAt`, so the scheduler fires early by the revoke
latency it measures (an exponentially weighted average of what callers report).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
DueCallback = Callable[[str], Awaitable[None]]

# Never start more than this early, whatever the measurements say: a slow outlier must not
# cut a grant visibly short.
MAX_LEAD = timedelta(seconds=1)


class DeadlineScheduler:
    """Calls `on_due(key)` once per armed key, at its deadline minus the measured lead."""

    def __init__(self, on_due: DueCallback, clock: Clock, *, smoothing: float = 0.3) -> None:
        self._on_due = on_due
        self._clock = clock
        self._smoothing = smoothing
        self._heap: list[tuple[datetime, int, str]] = []
        self._current: dict[str, tuple[datetime, int]] = {}
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.lead = timedelta(0)

    # -- arming ------------------------------------------------------------------------------

    def arm(self, key: str, deadline: datetime) -> None:
        """Fire for `key` at `deadline`, replacing any earlier arming of the same key."""
        seq = next(self._seq)
        self._current[key] = (deadline, seq)
        heapq.heappush(self._heap, (deadline, seq, key))
        self._wake.set()

    def disarm(self, key: str) -> None:
        self._current.pop(key, None)

    def deadline(self, key: str) -> datetime | None:
        entry = self._current.get(key)
        return entry[0] if entry else None

    def __len__(self) -> int:
        return len(self._current)

    def record_latency(self, seconds: float) -> None:
        """Report how long one revocation took to take effect; the lead follows it."""
        measured = timedelta(seconds=max(0.0, seconds))
        self.lead = min(MAX_LEAD, self.lead + (measured - self.lead) * self._smoothing)

    # -- running -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="zsp-deadline-scheduler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _next(self) -> tuple[datetime, int, str] | None:
        """The earliest live entry, dropping ones that were re-armed or disarmed."""
        while self._heap:
            deadline, seq, key = self._heap[0]
            if self._current.get(key) == (deadline, seq):
                return self._heap[0]
            heapq.heappop(self._heap)
        return None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            entry = self._next()
            if entry is None:
                await self._wake.wait()
                continue
            deadline, _, key = entry
            delay = (deadline - self.lead - self._clock()).total_seconds()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                continue  # re-read the heap: something may have been armed earlier
            heapq.heappop(self._heap)
            del self._current[key]
            task = asyncio.create_task(self._fire(key), name=f"zsp-due-{key}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _fire(self, key: str) -> None:
        try:
            await self._on_due(key)
        except Exception:
            # The callback owns its retries; a failure here must not stop the scheduler.
            log.exception("deadline callback for %s failed", key)
