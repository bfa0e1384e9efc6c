"""Revocation: at expiry and on every other end, one task per grant, retried until done.

Order (docs/architecture.md): the RoleBinding goes first (authorisation stops within milliseconds),
then the TaskGrant is marked for deletion (its finalizer holds it, so a restart finds the
grant ending), then the ServiceAccount, the Role, the delivery Secret; the request records
the end, and the finalizer is released. The expiry scheduler fires early by the latency
measured here.

The cut runs as soon as a revocation starts; everything after it waits behind the cuts (see
`FollowUps`): while any RoleBinding delete is running, or a due expiry waits for a scheduler
slot, no bookkeeping starts, and the bookkeeping under way pauses before its next step. When
many grants end together, their privilege goes first and the bookkeeping drains afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from zsp_operator.core import constants as c
from zsp_operator.core.lifecycle import Ended, EndReason, end_of
from zsp_operator.core.models import AccessRequestStatus, TaskGrant
from zsp_operator.engine.grant_objects import GrantService
from zsp_operator.engine.scheduler import DeadlineScheduler
from zsp_operator.engine.status_writer import RequestRef, StatusWriter
from zsp_operator.engine.view import ClusterView
from zsp_operator.kube import KubeError
from zsp_operator.kube.retry import backoff
from zsp_operator.observe.observer import Observer

log = logging.getLogger(__name__)

# Cuts measured under saturation: at least this many between reports, at most the window.
_DRAIN_MIN, _DRAIN_WINDOW = 16, 256
# How many ended grants are remembered, so late watch events cannot bring one back.
_TOMBSTONES = 10_000
# Seconds between looks, while bookkeeping waits, at whether the cuts it waits for are over: the
# scheduler does not say when its queue empties without a cut (a grant gone from the view).
_RECHECK = 0.05


class FollowUps:
    """Admission for the work after a cut: none while cuts are pending, `limit` at a time.

    `slot()` admits in arrival order, and only while `cuts_pending()` is false; a holder calls
    `behind_cuts()` before each step, which waits while cuts are pending again. Call `poke()`
    when they may have ended; a timer looks again every `_RECHECK` seconds while anything waits.
    """

    def __init__(self, limit: int, cuts_pending: Callable[[], bool]) -> None:
        self.limit = limit
        self._cuts_pending = cuts_pending
        self._queue: deque[asyncio.Future[None]] = deque()  # waiting for a slot
        self._paused: list[asyncio.Future[None]] = []  # holding a slot, waiting for the cuts
        self.active = 0
        self._recheck: asyncio.TimerHandle | None = None

    @property
    def queued(self) -> int:
        return len(self._queue)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._queue or self.active >= self.limit or self._cuts_pending():
            admitted = asyncio.get_running_loop().create_future()
            self._queue.append(admitted)
            self._look_again()
            try:
                await admitted
            except asyncio.CancelledError:
                if not admitted.done() or admitted.cancelled():
                    with contextlib.suppress(ValueError):
                        self._queue.remove(admitted)
                else:  # admitted just as it was cancelled: the slot was taken for it
                    self._leave()
                raise
        else:
            self.active += 1
        try:
            yield
        finally:
            self._leave()

    async def behind_cuts(self) -> None:
        """Wait while cuts are pending (a slot holder, before its next step)."""
        while self._cuts_pending():
            resume = asyncio.get_running_loop().create_future()
            self._paused.append(resume)
            self._look_again()
            try:
                await resume
            finally:
                if not resume.done():
                    with contextlib.suppress(ValueError):
                        self._paused.remove(resume)

    def poke(self) -> None:
        """The cuts may be over: resume the paused holders and admit from the queue."""
        if self._cuts_pending():
            self._look_again()
            return
        paused, self._paused = self._paused, []
        for resume in paused:
            if not resume.done():
                resume.set_result(None)
        while self._queue and self.active < self.limit:
            admitted = self._queue.popleft()
            if not admitted.done():
                admitted.set_result(None)
                self.active += 1

    def close(self) -> None:
        """Stop looking again (the waiters are the revoker's tasks: it cancels those)."""
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None

    def _leave(self) -> None:
        self.active -= 1
        self.poke()

    def _look_again(self) -> None:
        if self._recheck is None and (self._queue or self._paused):
            self._recheck = asyncio.get_running_loop().call_later(_RECHECK, self._looked)

    def _looked(self) -> None:
        self._recheck = None
        self.poke()


class Revoker:
    def __init__(
        self,
        grants: GrantService,
        status: StatusWriter,
        observer: Observer,
        view: ClusterView,
        clock: Callable[[], datetime],
        *,
        concurrency: int = 16,
    ) -> None:
        self.grants = grants
        self.status = status
        self.observer = observer
        self.view = view
        self.clock = clock
        self.expiry = DeadlineScheduler(self._expire, clock, concurrency=concurrency)
        self._concurrency = concurrency
        # When the last cuts happened while revocations were queuing: the drain rate a burst
        # of deadlines can count on (the scheduler starts the next burst early by it).
        self._saturated_cuts: deque[float] = deque(maxlen=_DRAIN_WINDOW)
        self._unreported_cuts = 0
        # Revocations whose RoleBinding cut is running or about to (not those waiting to retry it).
        self._cutting: set[str] = set()
        # Everything after a cut waits behind the cuts, `concurrency` revocations at a time.
        self.follow_ups = FollowUps(concurrency, self._cuts_pending)
        self._running: dict[str, asyncio.Task[None]] = {}
        self.started_at: datetime | None = None  # when this operator took over (set at start)
        self._cut: dict[str, asyncio.Event] = {}  # set once a revocation removed the privilege
        self._ended: OrderedDict[str, None] = OrderedDict()

    def mark_cut(self, grant_uid: str) -> None:
        """The grant's bindings are gone already (cut at start): its revocation skips that step."""
        self._cut.setdefault(grant_uid, asyncio.Event()).set()

    def in_progress(self, grant_uid: str) -> bool:
        return grant_uid in self._running

    def has_ended(self, grant_uid: str) -> bool:
        return grant_uid in self._ended

    def never_live(self, grant_uid: str) -> None:
        """A grant rolled back at issuance: its deletion is not a revocation to report."""
        self._remember_end(grant_uid)

    async def stop(self) -> None:
        await self.expiry.stop()
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self.follow_ups.close()

    def revoke_soon(self, grant: TaskGrant, reason: str, message: str) -> asyncio.Task[None]:
        """Start (or join) the revocation of one grant; it retries until it succeeds."""
        uid = grant.metadata.uid
        self.expiry.disarm(uid)
        if uid not in self._running and not self._is_cut(uid):
            self._cutting.add(uid)  # from now: the bookkeeping of others waits for this cut

        async def once() -> None:
            await self._once(grant, reason, message, self.clock())

        return self._start(grant, "revoking", once)

    def discard_soon(self, grant: TaskGrant) -> asyncio.Task[None]:
        """Keep removing a grant that never went live until nothing of it is left; report nothing."""
        # One attempt per round: this loop already backs off, so the rollback's own brief retries
        # would only nest inside it.
        return self._start(grant, "rolling back", lambda: self.grants.remove(grant))

    def finish_soon(self, body: dict[str, Any], request_done: bool) -> asyncio.Task[None]:
        """Finish a TaskGrant found marked for deletion (see `finish_marked_for_deletion`), until done."""
        grant = TaskGrant.model_validate(body)
        return self._start(grant, "finishing", lambda: self.finish_marked_for_deletion(body, request_done))

    async def revoke(self, grant: TaskGrant, reason: str, message: str) -> None:
        await asyncio.shield(self.revoke_soon(grant, reason, message))

    def _start(
        self, grant: TaskGrant, doing: str, attempt: Callable[[], Awaitable[None]]
    ) -> asyncio.Task[None]:
        uid = grant.metadata.uid
        task = self._running.get(uid)
        if task is None or task.done():
            task = asyncio.create_task(self._until_done(grant, doing, attempt), name=f"zsp-revoke-{uid}")
            self._running[uid] = task
            task.add_done_callback(lambda _t: self._task_done(uid))
        return task

    def _task_done(self, uid: str) -> None:
        self._running.pop(uid, None)
        self._not_cutting(uid)  # cancelled, perhaps before it began

    async def _until_done(self, grant: TaskGrant, doing: str, attempt: Callable[[], Awaitable[None]]) -> None:
        failures = 0
        while True:
            try:
                await attempt()
                return
            except KubeError as err:
                self.observer.error("revoke")
                delay = backoff(failures)  # never the permanent step: privilege may be at stake
                failures += 1
                log.error(
                    "%s %s/%s failed, retrying in %.1fs: %s", doing, grant.namespace, grant.name, delay, err
                )
                await asyncio.sleep(delay)

    async def _once(self, grant: TaskGrant, reason: str, message: str, started: datetime) -> None:
        # The binding goes first. Then the TaskGrant is marked for deletion, which is what a
        # restart finds to finish the rest: the bookkeeping follows the privilege, never leads it.
        # Until it is marked, a restart finds the grant live and ends it again (overdue, `done`,
        # re-decided or followed task), its binding already gone.
        cut = self._cut.setdefault(grant.metadata.uid, asyncio.Event())
        if cut.is_set():
            binding_gone = started  # cut already, at start
        else:
            binding_gone = await self._cut_bindings(grant)
            cut.set()
            self.expiry.record_latency((binding_gone - started).total_seconds())
        lag = (binding_gone - grant.spec.expires_at).total_seconds() if reason == c.REASON_EXPIRED else None
        async with self.follow_ups.slot():
            await self.grants.end_grant(grant)
            await self.follow_ups.behind_cuts()
            await self.grants.teardown(grant, bindings_cut=True)
            await self.follow_ups.behind_cuts()
            status = await self._end_request(grant, reason, message, binding_gone, lag)  # type: ignore[arg-type]
            await self.follow_ups.behind_cuts()
            await self.grants.release(grant)
        await self._forget(grant, reason, message, lag, status)

    async def _cut_bindings(self, grant: TaskGrant) -> datetime:
        uid = grant.metadata.uid
        self._cutting.add(uid)  # again, on a retry
        try:
            binding_gone = await self.grants.cut_bindings(grant)
            self._count_cut()
            return binding_gone
        finally:
            self._not_cutting(uid)

    def _not_cutting(self, uid: str) -> None:
        if uid in self._cutting:
            self._cutting.discard(uid)
            if not self._cutting:
                self.follow_ups.poke()

    def _is_cut(self, uid: str) -> bool:
        cut = self._cut.get(uid)
        return cut is not None and cut.is_set()

    def _cuts_pending(self) -> bool:
        """A RoleBinding cut is running or about to, or a due expiry waits for a slot to start one."""
        return bool(self._cutting) or self.expiry.waiting > 0

    def _count_cut(self) -> None:
        """Measure cuts per second while cuts queue: due expiries wait for a scheduler slot, or
        at least as many cuts run (this one included) as the scheduler has slots.

        The bookkeeping waits behind the cuts, so this is the rate privilege can be removed at
        while many grants end together: the rate the scheduler leads a burst of deadlines by.
        Revocations waiting to do their bookkeeping are not a queue of cuts.
        """
        if self.expiry.waiting == 0 and len(self._cutting) < self._concurrency:
            self._saturated_cuts.clear()  # not saturated: the window starts again
            return
        cuts = self._saturated_cuts
        cuts.append(time.monotonic())
        self._unreported_cuts += 1
        if len(cuts) >= _DRAIN_MIN and self._unreported_cuts >= _DRAIN_MIN and cuts[-1] > cuts[0]:
            self._unreported_cuts = 0
            self.expiry.record_drain_rate((len(cuts) - 1) / (cuts[-1] - cuts[0]))

    async def _expire(self, grant_uid: str) -> bool:
        """Start the revocation; hold the scheduler's slot only until the privilege is gone.

        The bookkeeping that follows (and its retries, if the API server is failing) runs on
        its own, behind the cuts, so the scheduler's measured throughput is that of removing
        privilege.
        """
        grant = self.view.grants.get(grant_uid)
        if grant is None:
            return False
        if self.started_at is not None and grant.spec.expires_at <= self.started_at:
            message = "expired while the operator was not running"
        else:
            message = "the grant's TTL ran out"
        already_cut = self._is_cut(grant_uid)
        task = self.revoke_soon(grant, c.REASON_EXPIRED, message)
        cut = self._cut.setdefault(grant_uid, asyncio.Event())
        waiting = asyncio.ensure_future(cut.wait())
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        # Cut at start-up already: no work for a slot, so no measure of how fast cuts go.
        return not already_cut

    async def finish_marked_for_deletion(self, body: dict[str, Any], request_done: bool) -> None:
        """A TaskGrant marked for deletion that no revocation of ours is finishing.

        Someone deleted it, or a revocation was cut off by a restart: tear down whatever is
        left, record the end on the request, and let the TaskGrant go.
        """
        grant = TaskGrant.model_validate(body)
        if grant.metadata.uid in self._ended:
            await self.grants.release(grant)  # torn down already; only the finalizer was left
            return
        await self.grants.teardown(grant)
        reason, message = end_of(grant, request_done, self.clock())
        status = await self._end_request(grant, reason, message, self.clock(), None)
        await self.grants.release(grant)
        await self._forget(grant, reason, message, None, status)

    async def _end_request(
        self, grant: TaskGrant, reason: EndReason, message: str, at: datetime, lag: float | None
    ) -> AccessRequestStatus | None:
        ref = RequestRef(grant.spec.request.name, grant.namespace, grant.spec.request.uid)
        return await self.status.transition(ref, Ended(reason, message, at, lag))

    async def _forget(
        self,
        grant: TaskGrant,
        reason: str,
        message: str,
        lag: float | None,
        request_status: AccessRequestStatus | None,
    ) -> None:
        """Drop an ended grant from the view and report it, exactly once."""
        uid = grant.metadata.uid
        self.view.drop_grant(uid)
        self.expiry.disarm(uid)
        self._cut.pop(uid, None)
        if uid in self._ended:
            return
        self._remember_end(uid)
        await self.observer.revoked(
            grant, reason, message, lag, grant.status.token_credential_id, request_status
        )

    def _remember_end(self, grant_uid: str) -> None:
        self._ended[grant_uid] = None
        while len(self._ended) > _TOMBSTONES:
            self._ended.popitem(last=False)
